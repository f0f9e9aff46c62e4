//! Running git for what changes a repository: `git worktree add/remove/prune`, branch
//! deletion, and `git status` before a removal. (Reading the repository is git2's, in
//! pwt-alloc.)

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use pwt_alloc::Registry;

use crate::hooks::child_stdout;
use crate::session::Session;

impl Session {
    /// Runs a git command that adds, removes or prunes worktrees, holding the repository's
    /// worktree lock (see [`pwt_alloc::Registry::repo_lock`]).
    pub fn git_worktree(&self, dir: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
        git_worktree(&self.registry, &self.repo.key(), dir, args)
    }
}

/// [`Session::git_worktree`] without the session, for a thread of its own.
pub fn git_worktree(
    registry: &Registry,
    repo_key: &str,
    dir: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<()> {
    let _guard = registry.repo_lock(repo_key)?;
    git(dir, args)
}

/// Runs `git` with `args` in `dir`; git's own messages go to stderr. Fails with git's exit
/// status named.
pub fn git(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(child_stdout(true))
        .status()
        .context("cannot run git: is it installed and on PATH?")?;
    if !status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        bail!("`git {}` failed ({status})", shown.join(" "));
    }
    Ok(())
}

/// Uncommitted or untracked changes of a worktree (`git status --porcelain`), ignoring
/// ignored files (pwt's env files among them).
pub fn changes(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "status",
            "--porcelain=v1",
            "--untracked-files=normal",
            "--ignore-submodules=none",
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run git status")?;
    if !out.status.success() {
        bail!(
            "`git status` failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}
