//! `pwt rm`

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;

use crate::exit_codes::{self, refused};
use crate::output::{Format, Style, print_json, printable, warn};
use crate::session::{Session, Target, changes, git, run_hooks};

/// Tear a worktree down: pre-remove hooks, its env files, the worktree itself, then the
/// lease. Refuses (exit 3, nothing touched) when the worktree has uncommitted or untracked
/// changes, unless --force.
///
/// Never removes the main worktree. Deletes the branch only with --delete-branch, and an
/// unmerged one only with --delete-branch --force. Running it again after an interruption
/// finishes the job; running it when there is nothing left says so and succeeds.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Branch, slug or path of the worktree.
    pub target: String,
    /// Remove even with uncommitted or untracked changes (they are lost).
    #[arg(long, short)]
    pub force: bool,
    /// Keep the worktree's data (database, vhost, Redis keys) when services are configured.
    #[arg(long)]
    pub keep_data: bool,
    /// Keep the worktree directory: release only what pwt set up (for hooks of tools that
    /// remove the worktree themselves, such as Worktrunk's pre-remove).
    #[arg(long)]
    pub keep_worktree: bool,
    /// Also delete the branch (`git branch -d`; with --force, `-D`).
    #[arg(long)]
    pub delete_branch: bool,
    /// Do not run the pre-remove hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: RmArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let json = args.format == Format::Json;
    let nothing = |why: String| -> Result<i32> {
        if json {
            print_json(&json!({ "target": args.target, "removed": false, "reason": why }));
        } else {
            println!("nothing to do: {why}");
        }
        Ok(exit_codes::OK)
    };
    // A registry that cannot be read is an error, not "nothing to do".
    session.registry.read()?;
    let target = match session.resolve(Some(&args.target)) {
        Ok(t) => t,
        Err(_) => return nothing(format!("no worktree or lease for {:?}", args.target)),
    };
    let lease = match target {
        Target::Main(_) => bail!("refusing to remove the main worktree"),
        Target::Unmanaged(w) => bail!(
            "the worktree at {} is not managed by pwt, so pwt will not remove it\n  hint: `git worktree remove {}`",
            w.root.display(),
            w.root.display()
        ),
        Target::Leased(l) => l,
    };
    let branch = lease.branch.clone();
    let root = lease.path.clone();
    let exists = root.exists();
    let git_dir = session
        .repo
        .main_root
        .clone()
        .unwrap_or_else(|| session.repo.common_dir.clone());

    // Refuse before touching anything.
    if exists && !args.keep_worktree && !args.force {
        let dirty = changes(&root)?;
        if !dirty.is_empty() {
            let shown: Vec<String> = dirty
                .iter()
                .take(10)
                .map(|l| format!("    {}", printable(l)))
                .collect();
            let more = if dirty.len() > 10 {
                format!("\n    … and {} more", dirty.len() - 10)
            } else {
                String::new()
            };
            return Err(refused(format!(
                "{} has uncommitted or untracked changes; nothing was removed:\n{}{more}\n  hint: commit or stash them, or pass --force to discard them",
                root.display(),
                shown.join("\n")
            )));
        }
    }

    let mut leftover = Vec::new();
    if exists && !args.keep_worktree {
        leftover.push("worktree".to_owned());
    }
    session.mark_removing(&branch, leftover)?;

    if exists && !args.no_hooks {
        let env = session.lease_env(&lease)?;
        if let Err(e) = run_hooks(
            "pre-remove",
            &session.config().hooks.pre_remove,
            &root,
            &env,
            json,
        ) {
            if !args.force {
                session.update(&branch, |l| {
                    l.state = pwt_alloc::LeaseState::Ready;
                    l.pid = None;
                    l.leftover.clear();
                })?;
                return Err(e.context("teardown stopped before removing anything\n  hint: fix the hook, or pass --force to go on despite it"));
            }
            warn(&format!("{e:#}; going on because of --force"));
        }
    }

    let mut removed = Vec::new();
    if args.keep_worktree {
        let kept = session.remove_env_files(&root, &lease.files);
        for k in kept {
            warn(&format!(
                "kept {}: it was edited since pwt wrote it",
                k.display()
            ));
        }
    } else if exists {
        let mut git_args = vec![OsStr::new("worktree"), OsStr::new("remove")];
        if args.force {
            // Twice: also removes a locked worktree, as the user asked for force.
            git_args.extend([OsStr::new("--force"), OsStr::new("--force")]);
        }
        git_args.push(root.as_os_str());
        if let Err(e) = session.git_worktree(&git_dir, &git_args) {
            return Err(e.context(format!(
                "the worktree {} could not be removed; the lease stays `removing`\n  hint: fix the cause and run `pwt rm {}` again",
                root.display(),
                branch
            )));
        }
        removed.push("worktree");
    } else {
        // The directory went away outside pwt; drop git's record of it too.
        let _ = session.git_worktree(&git_dir, &[OsStr::new("worktree"), OsStr::new("prune")]);
    }
    session.release(&lease.repo, &branch)?;
    removed.push("lease");

    let mut branch_deleted = false;
    if args.delete_branch {
        let flag = if args.force { "-D" } else { "-d" };
        match git(
            &git_dir,
            &[OsStr::new("branch"), OsStr::new(flag), OsStr::new(&branch)],
        ) {
            Ok(()) => branch_deleted = true,
            Err(_) => warn(&format!(
                "branch {branch:?} was kept: git refused to delete it (not fully merged?)\n  hint: `pwt rm` is done; `git branch -D {branch}` deletes it anyway"
            )),
        }
    }

    if json {
        print_json(&json!({
            "target": args.target,
            "branch": branch,
            "removed": true,
            "what": removed,
            "branch_deleted": branch_deleted,
        }));
    } else {
        let style = Style::stdout();
        println!(
            "{} removed {} {}",
            style.green("✓"),
            style.bold(&printable(&branch)),
            style.dim(&format!("({})", removed.join(", ")))
        );
    }
    Ok(exit_codes::OK)
}
