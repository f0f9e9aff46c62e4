//! `pwt new`

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use pwt::{BranchName, CreateRequest};

use crate::output::{Format, Style, Terminal, display_path, printable};
use pwt::exit_code;

/// Create a worktree with its own ports, env files and services
///
/// In order: the branch (if missing), `git worktree add`, ports, the database / vhost /
/// Redis slot (when configured, all at once and alongside the checkout), env files,
/// post-create hooks.
///
/// The branch is created from --base (default: the current HEAD) unless it exists. The
/// worktree goes to `worktree.path` (default `../<repo>.<slug>`) unless --path is given. If
/// any step fails, or a hook fails, or you press Ctrl-C, everything this run made is rolled
/// back (the worktree, the branch if it was new, the data, the lease). With -x, PROGRAM then
/// runs inside the worktree with its environment, replacing pwt:
///
///   pwt new feature-notifications -x claude -- "Add a notification bell"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct NewArgs {
    /// The branch to check out in the new worktree (created if it does not exist).
    pub branch: String,
    /// Start the new branch from this commit, branch or tag.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Put the worktree here instead of `worktree.path`.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Then run PROGRAM in the worktree with its environment (arguments after `--`).
    #[arg(short = 'x', long = "exec", value_name = "PROGRAM")]
    pub exec: Option<String>,
    /// Arguments for PROGRAM.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
    /// Do not run the post-create hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Run the repository's hooks without asking for their approval (automation, CI; see
    /// `pwt trust`).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// When a post-create hook fails, keep what was set up instead of rolling it all back;
    /// `pwt up` then runs the hooks again.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: NewArgs) -> Result<i32> {
    let branch = BranchName::parse(&args.branch).map_err(pwt::Error::from)?;
    if !args.args.is_empty() && args.exec.is_none() {
        bail!("arguments after `--` need a program: pwt new BRANCH -x PROGRAM -- ARGS");
    }
    let json = args.format == Format::Json;
    let project = super::open_interruptible(cwd, args.yes)?;
    let req = CreateRequest {
        branch,
        base: args.base.clone(),
        path: args.path.clone(),
        hooks: !args.no_hooks,
        keep_on_failure: args.keep_on_failure,
    };
    let done = project.create(&req, &mut Terminal { quiet: json })?;
    let lease = &done.lease;
    crate::render::print_worktree(&project, lease, json, cwd, "created")?;
    if !json && args.exec.is_none() {
        let next = format!(
            "next: cd {} · or `pwt run {b} -- <command>` · `pwt rm {b}` when done",
            pwt::shell_word(&display_path(&lease.path, cwd)),
            // The branch as one shell word: what people paste names this worktree (a slug
            // may be another branch's name) and never runs `$(…)`.
            b = pwt::shell_word(lease.branch.as_str())
        );
        println!("  {}", Style::stdout().dim(&next));
    }
    if let Some(program) = args.exec {
        if std::io::stdout().is_terminal() {
            // Terminal title: the branch, as the seed workflow's post-switch hook does.
            print!("\x1b]0;{}\x07", printable(lease.branch.as_str()));
        }
        return exec(&program, &args.args, &lease.path, &done.env);
    }
    Ok(exit_code::OK)
}

/// Replaces pwt with `program` in `dir` with `env` added.
pub fn exec(program: &str, args: &[String], dir: &Path, env: &pwt::Environment) -> Result<i32> {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    let _ = std::io::stdout().flush();
    let err = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter())
        .exec();
    bail!("cannot run {program:?}: {err}\n  hint: is it installed and on PATH?")
}
