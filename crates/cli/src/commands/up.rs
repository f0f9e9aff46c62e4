//! `pwt up`

use std::path::Path;

use anyhow::Result;
use pwt::{AdoptRequest, SetUpOutcome};

use crate::output::{Format, Terminal, note, printable};
use pwt::exit_code;

/// Adopt an existing worktree and set up its environment (idempotent).
///
/// What `pwt new` does, minus `git worktree add`; default: the worktree you are in.
///
/// For worktrees made by `git worktree add`, Worktrunk, gtr or an agent tool. Idempotent:
/// running it again keeps the ports, keeps the database, vhost and Redis slot (creating any
/// that went missing), and re-renders the env files. Post-create hooks run the first time
/// only (and again after they failed under --keep-on-failure). If a step fails the first
/// time, what this run made is rolled back (the worktree itself always stays).
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Branch, slug or path of the worktree (default: the one you are in).
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Overwrite env files even if they were edited or not written by pwt.
    #[arg(long)]
    pub force: bool,
    /// Do not run the post-create hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Run the repository's hooks without asking for their approval (automation, CI; see
    /// `pwt trust`).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// When a post-create hook fails, keep what was set up; the next `pwt up` runs the hooks
    /// again.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: UpArgs) -> Result<i32> {
    let json = args.format == Format::Json;
    let project = super::open_interruptible(cwd, args.yes)?;
    let req = AdoptRequest {
        target: args.target.clone(),
        force: args.force,
        hooks: !args.no_hooks,
        keep_on_failure: args.keep_on_failure,
    };
    let mut reporter = Terminal { quiet: json };
    let done = project.adopt(&req, &mut reporter)?;
    if let Some(from) = &done.moved_from {
        note(&format!(
            "{} moved to {}",
            printable(&from.display().to_string()),
            printable(&done.lease.path.display().to_string())
        ));
    }
    let verb = match done.outcome {
        SetUpOutcome::UpToDate => "up to date",
        _ => "adopted",
    };
    crate::render::print_worktree(&project, &done.lease, json, cwd, verb)?;
    Ok(exit_code::OK)
}
