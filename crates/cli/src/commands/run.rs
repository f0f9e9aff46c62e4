//! `pwt run`

use std::path::Path;

use anyhow::Result;

use super::new::exec;

/// Run a command in a worktree with its environment
///
/// pwt replaces itself with the command, so signals reach it directly and its exit code is
/// pwt's.
///
///   pwt run -- npm run dev                 # in the current worktree
///   pwt run feature-a -- sh -c 'curl -s localhost:$BACKEND_PORT'
///
/// (A `$VAR` outside quotes expands in YOUR shell, before pwt runs: quote it as above.)
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Branch, slug or path (default: the current worktree).
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(cwd: &Path, args: RunArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let (worktree, env) = project.worktree_environment(args.target.as_ref())?;
    // Stay in the same subdirectory when already inside that worktree.
    let dir = if cwd.starts_with(&worktree.root) {
        cwd.to_owned()
    } else {
        worktree.root
    };
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    exec(program, rest, &dir, &env)
}
