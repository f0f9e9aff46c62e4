//! `pwt rm`

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use pwt_provision::{Outcome, ProvisionError};
use serde_json::json;

use crate::exit_codes::{self, refused};
use crate::git::{changes, git};
use crate::hooks::run_hooks;
use crate::output::{Format, Style, print_json, printable, sh, warn};
use crate::services::{Services, leftover_name, runtime, teardown, with_progress};
use crate::session::{Session, Target};

/// Tear a worktree down: hooks, data, worktree, lease; never losing uncommitted work.
///
/// In this order: pre-remove hooks; its database, vhost and Redis data (each only if it
/// carries this worktree's marker); the worktree itself; then the lease. Refuses (exit 3,
/// nothing touched) when the worktree has uncommitted or untracked changes, unless --force.
///
/// When a service cannot be reached, what can go goes and the lease stays `removing`,
/// listing the rest: run `pwt rm` again to finish. Never removes the main worktree. Deletes
/// the branch only with --delete-branch, and an unmerged one only with --delete-branch
/// --force. With nothing left to remove, it says so and succeeds.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Branch, slug or path of the worktree.
    pub target: String,
    /// Remove even with uncommitted or untracked changes (they are lost).
    #[arg(long, short)]
    pub force: bool,
    /// Keep the database, vhost and Redis data (like `docker compose down` without -v):
    /// `pwt new` of the same branch finds them again.
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
    let services = Services::new(session.config(), &session.project())?;

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

    let mut planned = Vec::new();
    if services.any() && !args.keep_data {
        planned.push("data".to_owned());
    }
    if exists && !args.keep_worktree {
        planned.push("worktree".to_owned());
    }
    session.mark_removing(&branch, planned)?;

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

    // The data, all services at once.
    let mut removed: Vec<String> = Vec::new();
    let mut leftover: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    if services.any() && !args.keep_data {
        let rt = runtime();
        let steps = rt.block_on(with_progress(
            vec!["removing data".into()],
            json,
            teardown(&services, &lease, None),
        ));
        for s in steps {
            match s.result {
                Ok(Outcome::Removed) => removed.push(s.what),
                Ok(_) => {}
                Err(e @ ProvisionError::NotOurs { .. }) => warn(&format!("left in place: {e}")),
                Err(e) => {
                    leftover.push(leftover_name(s.service).to_owned());
                    problems.push(format!("{}: {e}", s.what));
                }
            }
        }
    }

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
        match session.git_worktree(&git_dir, &git_args) {
            Ok(()) => removed.push("the worktree".into()),
            Err(e) => {
                leftover.push("worktree".into());
                problems.push(format!("worktree {}: {e:#}", root.display()));
            }
        }
    } else {
        // The directory went away outside pwt; drop git's record of it too.
        let _ = session.git_worktree(&git_dir, &[OsStr::new("worktree"), OsStr::new("prune")]);
    }

    if !leftover.is_empty() {
        session.mark_removing(&branch, leftover.clone())?;
        let done = if removed.is_empty() {
            String::new()
        } else {
            format!("\n  removed: {}", removed.join(", "))
        };
        return Err(anyhow!(
            "could not remove everything of {branch:?}; the lease stays `removing` ({}):\n  {}{done}\n  hint: fix the cause and run `pwt rm {q}` again to finish",
            leftover.join(", "),
            problems.join("\n  "),
            q = sh(&branch)
        ));
    }
    session.release_with(&lease.repo, &branch, args.keep_data)?;

    let mut branch_deleted = false;
    if args.delete_branch {
        let flag = if args.force { "-D" } else { "-d" };
        match git(
            &git_dir,
            &[OsStr::new("branch"), OsStr::new(flag), OsStr::new(&branch)],
        ) {
            Ok(()) => branch_deleted = true,
            Err(_) => warn(&format!(
                "branch {branch:?} was kept: git refused to delete it (not fully merged?)\n  hint: `pwt rm` is done; `git branch -D {q}` deletes it anyway",
                q = sh(&branch)
            )),
        }
    }

    if json {
        print_json(&json!({
            "target": args.target,
            "branch": branch,
            "removed": true,
            "what": removed,
            "data_kept": args.keep_data && services.any(),
            "branch_deleted": branch_deleted,
        }));
    } else {
        let style = Style::stdout();
        let what = if removed.is_empty() {
            "its lease".to_owned()
        } else {
            removed.join(", ")
        };
        println!(
            "{} removed {} {}",
            style.green("✓"),
            style.bold(&printable(&branch)),
            style.dim(&format!("({what})"))
        );
        if args.keep_data && services.any() {
            println!("  {}", style.dim("data kept: `pwt new` of this branch finds it again; `pwt gc --kept --yes` drops it"));
        }
    }
    Ok(exit_codes::OK)
}
