//! `pwt trust`: the commands a committed pwt.toml would run (its hooks and processes) run only once their
//! user has approved that exact text on this machine; changed commands are asked about again.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::Opened;
use super::exit_codes;
use pwt::Approval;

use super::output::display_path;

/// Approve what this repository's pwt.toml runs: its hooks, processes and [env]
///
/// A pwt.toml comes with the repository: its `[hooks]` and `[processes]` are commands
/// someone else wrote, and its `[env]` is what they, and every shell direnv or mise loads
/// the env files into, run with. pwt runs them and writes that [env] only once you have
/// seen and approved that exact text for this repository on this machine (`pwt new` asks on
/// a terminal, and refuses elsewhere); when they change, it asks again. For automation and
/// CI, `--yes` on `pwt new` / `up` / `rm` / `dev`, or `PWT_TRUST_HOOKS=1`, goes ahead
/// without asking. Your own config file (~/.config/pwt/config.toml) needs no approval.
///
///   pwt trust            show them and approve them
///   pwt trust --show     only show them, and whether they are approved
///   pwt trust --revoke   withdraw the approval
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TrustArgs {
    /// Only show the commands and whether they are approved.
    #[arg(long, conflicts_with = "revoke")]
    pub show: bool,
    /// Withdraw the approval of these commands.
    #[arg(long)]
    pub revoke: bool,
}

pub use pwt::Gate;

/// What of the repository's pwt.toml `gate` needs approved, and the file; `None` when
/// nothing.
fn commands(opened: &Opened, gate: Gate) -> Result<Option<(PathBuf, Approval)>> {
    let Some(file) = &opened.settings.project_file else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let value: serde_json::Value = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(&text),
    )
    .extract()
    .with_context(|| format!("cannot parse {}", file.display()))?;
    Ok(opened
        .project
        .approval(&value, gate)
        .map(|a| (file.clone(), a)))
}

/// Before a command runs the repository's hooks: returns when they are approved, or `yes`
/// (or `PWT_TRUST_HOOKS`) says to run them anyway, or the user approves them now on a
/// terminal; else the refusal, showing the commands.
pub fn ensure(cwd: &Path, opened: &Opened, yes: bool, gate: Gate) -> Result<()> {
    let Some((file, c)) = commands(opened, gate)? else {
        return Ok(());
    };
    let project = &opened.project;
    if yes
        || project.is_approved(&c)
        || super::env_vars::get(super::env_vars::PWT_TRUST_HOOKS).is_some_and(|v| v != "0")
    {
        return Ok(());
    }
    let shown = display_path(&file, cwd);
    let what = match (c.commands, c.env) {
        (true, true) => {
            "would run commands, and set variables that every shell in the worktree loads (direnv, mise),"
        }
        (true, false) => "would run commands",
        _ => {
            "would set variables that every shell in the worktree loads (direnv, mise), and that can make a shell, git or a runtime run code,"
        }
    };
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!(
            "{shown} {what} which you have not approved for this repository on this machine:\n{}Go ahead, now and from now on? [y/N] ",
            c.shown
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            project.set_approved(&c, true)?;
            return Ok(());
        }
    }
    Err(pwt::Error::new(
        pwt::ErrorKind::Invalid,
        format!(
            "{shown} {what} which you have not approved for this repository on this machine; nothing was done:\n{}",
            c.shown.trim_end()
        ),
    )
    .hint("read them, then `pwt trust` approves them (asked again when they or their [env] change); `--yes` or PWT_TRUST_HOOKS=1 runs them without asking, for automation; --no-hooks skips the hooks")
    .into())
}

pub fn run(cwd: &Path, args: TrustArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    let all = Gate {
        commands: true,
        env: true,
    };
    let Some((file, c)) = commands(&opened, all)? else {
        println!("this repository's pwt.toml has no hooks, processes or [env]: nothing to approve");
        return Ok(exit_codes::OK);
    };
    let shown = display_path(&file, cwd);
    let project = &opened.project;
    let was = project.is_approved(&c);
    print!("{shown} runs:\n{}", c.shown);
    if args.show {
        println!(
            "{}",
            if was {
                "approved for this repository on this machine"
            } else {
                "not approved for this repository on this machine: `pwt trust` approves it"
            }
        );
    } else if args.revoke {
        project.set_approved(&c, false)?;
        println!("approval withdrawn: pwt asks again before running them");
    } else {
        project.set_approved(&c, true)?;
        println!(
            "approved: pwt runs these commands in this repository from now on, until they or their [env] change"
        );
    }
    Ok(exit_codes::OK)
}
