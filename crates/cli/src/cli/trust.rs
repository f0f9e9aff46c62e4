//! `pwt trust`: the commands a committed pwt.toml would run (its hooks and processes) run only once their
//! user has approved that exact text on this machine; changed commands are asked about again.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest as _, Sha256};

use super::Opened;
use super::exit_codes;
use super::output::{display_path, printable_lines};

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

/// The variable that approves every repository's hooks, for automation.
pub const PWT_TRUST_HOOKS: &str = "PWT_TRUST_HOOKS";

/// What a repository's pwt.toml would have pwt run: its hooks, its processes, and the
/// `[env]` they run with (a `GIT_CONFIG_*`, `PATH` or `NODE_OPTIONS` there decides what an
/// approved `git status` or `npm run dev` does).
struct Commands {
    file: PathBuf,
    /// As shown to the user.
    shown: String,
    /// What an approval is of: this repository and exactly these sections.
    key: String,
}

/// What a command is about to use of the repository's pwt.toml.
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    /// It runs its hooks or processes.
    pub commands: bool,
    /// It writes env files: an `[env]` counts even without commands, since direnv and mise
    /// load those files into every shell of the worktree, where `GIT_CONFIG_*` or `BASH_ENV`
    /// run code.
    pub env: bool,
}

/// What of the repository's pwt.toml `gate` needs approved; `None` when nothing.
fn commands(opened: &Opened, gate: Gate) -> Result<Option<Commands>> {
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
    let section = |name: &str| value.get(name).cloned().unwrap_or(serde_json::Value::Null);
    let table = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default()
    };
    let mut cmds = String::new();
    for (stage, list) in table("hooks") {
        for c in list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
        {
            cmds.push_str(&format!("  [hooks] {stage}: {c}\n"));
        }
    }
    for (name, cmd) in table("processes") {
        cmds.push_str(&format!(
            "  [processes] {name}: {}\n",
            cmd.as_str().unwrap_or_default()
        ));
    }
    let mut env = String::new();
    for (name, v) in table("env") {
        env.push_str(&format!(
            "  [env] {name} = {}\n",
            v.as_str().unwrap_or_default()
        ));
    }
    let needed = (gate.commands && !cmds.is_empty()) || (gate.env && !env.is_empty());
    if !needed {
        return Ok(None);
    }
    // The approval is of this repository and all three sections, whatever this command uses.
    let approved = serde_json::json!({
        "repository": opened.project.repo().common_dir,
        "hooks": section("hooks"),
        "processes": section("processes"),
        "env": section("env"),
    });
    Ok(Some(Commands {
        file: file.clone(),
        // Escape sequences shown as text, never played: what is approved is what was seen.
        shown: printable_lines(&(cmds + &env)),
        key: digest(&approved.to_string()),
    }))
}

fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The approvals of this user: one SHA-256 of approved text per line.
fn store() -> Result<PathBuf> {
    Ok(super::state_dir()?.join("trusted-commands"))
}

fn approved(key: &str) -> bool {
    let want = key;
    store()
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|s| s.lines().any(|l| l.trim() == want))
}

fn set_approved(key: &str, on: bool) -> Result<()> {
    let path = store()?;
    let want = key;
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    let mut lines: Vec<&str> = current.lines().filter(|l| l.trim() != want).collect();
    if on {
        lines.push(want);
    }
    let mut body = lines.join("\n");
    body.push('\n');
    pwt::write_atomic(&path, body.as_bytes())?;
    Ok(())
}

/// Before a command runs the repository's hooks: returns when they are approved, or `yes`
/// (or `PWT_TRUST_HOOKS`) says to run them anyway, or the user approves them now on a
/// terminal; else the refusal, showing the commands.
pub fn ensure(cwd: &Path, opened: &Opened, yes: bool, gate: Gate) -> Result<()> {
    let Some(c) = commands(opened, gate)? else {
        return Ok(());
    };
    if yes || approved(&c.key) || super::env_vars::get(PWT_TRUST_HOOKS).is_some_and(|v| v != "0") {
        return Ok(());
    }
    let shown = display_path(&c.file, cwd);
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!(
            "{shown} would run these commands, which you have not approved for this repository on this machine:\n{}Run them, now and from now on? [y/N] ",
            c.shown
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if matches!(answer.trim(), "y" | "Y" | "yes") {
            set_approved(&c.key, true)?;
            return Ok(());
        }
    }
    Err(pwt::Error::new(
        pwt::ErrorKind::Invalid,
        format!(
            "{shown} would run commands you have not approved for this repository on this machine; nothing was done:\n{}",
            c.shown.trim_end()
        ),
    )
    .hint("read them, then `pwt trust` approves them (asked again when they or their [env] change); `--yes` or PWT_TRUST_HOOKS=1 runs them without asking, for automation; --no-hooks skips the hooks")
    .into())
}

pub fn run(cwd: &Path, args: TrustArgs) -> Result<i32> {
    let opened = super::open(cwd, false)?;
    let all = Gate {
        commands: true,
        env: true,
    };
    let Some(c) = commands(&opened, all)? else {
        println!("this repository's pwt.toml has no hooks, processes or [env]: nothing to approve");
        return Ok(exit_codes::OK);
    };
    let shown = display_path(&c.file, cwd);
    let was = approved(&c.key);
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
        set_approved(&c.key, false)?;
        println!("approval withdrawn: pwt asks again before running them");
    } else {
        set_approved(&c.key, true)?;
        println!(
            "approved: pwt runs these commands in this repository from now on, until they or their [env] change"
        );
    }
    Ok(exit_codes::OK)
}
