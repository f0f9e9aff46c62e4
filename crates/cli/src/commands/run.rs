//! `pwt run`

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::commands::env::env_of;
use crate::session::Session;

/// Run a command in a worktree with its environment, and exit with its exit code.
///
///   pwt run -- npm run dev                 # in the current worktree
///   pwt run feature-a -- curl -s localhost:$BACKEND_PORT   # ($ expands in YOUR shell)
///   pwt run feature-a -- sh -c 'curl -s localhost:$BACKEND_PORT'
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn run(cwd: &Path, args: RunArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let (env, root, _) = env_of(&session, args.target.as_deref())?;
    // Stay in the same subdirectory when already inside that worktree.
    let dir = if cwd.starts_with(&root) {
        cwd.to_owned()
    } else {
        root
    };
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let status = Command::new(program)
        .args(rest)
        .current_dir(&dir)
        .envs(env.iter())
        .status()
        .with_context(|| format!("cannot run {program:?}: is it installed and on PATH?"))?;
    use std::os::unix::process::ExitStatusExt as _;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(1)))
}
