//! `pwt up`

use std::path::Path;

use anyhow::{Result, bail};

use crate::exit_codes;
use crate::hooks::run_hooks;
use crate::lease_ops::Mode;
use crate::output::{Format, Style, print_json};
use crate::services::{Services, first_error, provision, rollback, with_progress};
use crate::session::{Session, Target};

/// Adopt an existing worktree and set up its environment (idempotent).
///
/// What `pwt new` does, minus `git worktree add`; default: the worktree you are in.
///
/// For worktrees made by `git worktree add`, Worktrunk, gtr or an agent tool. Idempotent:
/// running it again keeps the ports, keeps the database, vhost and Redis slot (creating any
/// that went missing), and re-renders the env files. Post-create hooks run the
/// first time only.
#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Branch, slug or path of the worktree (default: the one you are in).
    pub target: Option<String>,
    /// Overwrite env files even if they were edited or not written by pwt.
    #[arg(long)]
    pub force: bool,
    /// Do not run the post-create hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: UpArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let json = args.format == Format::Json;
    let (root, branch) = match session.resolve(args.target.as_deref())? {
        Target::Main(_) => bail!(
            "this is the main worktree: it uses the defaults (`main` ports, main database) and needs no set-up\n  hint: `pwt env` prints them; `pwt new BRANCH` makes a worktree"
        ),
        Target::Leased(l) => {
            // Moved with `git worktree move`: git knows where the branch is now.
            let moved = (!l.path.exists())
                .then(|| session.repo.worktrees().ok())
                .flatten()
                .and_then(|ws| {
                    ws.into_iter()
                        .find(|w| w.exists && w.branch.as_deref() == Some(l.branch.as_str()))
                });
            if let Some(w) = moved {
                crate::output::note(&format!(
                    "{} moved to {}",
                    l.path.display(),
                    w.root.display()
                ));
                let root = w.root.clone();
                session.update(&l.branch, |lease| lease.path = root)?;
                (w.root, l.branch)
            } else if !l.path.exists() {
                bail!(
                    "the worktree of {:?} at {} is gone\n  hint: `pwt gc` cleans up after it; `pwt new {}` makes a new one",
                    l.branch,
                    l.path.display(),
                    crate::output::sh(&l.branch)
                );
            } else {
                (l.path, l.branch)
            }
        }
        Target::Unmanaged(w) => {
            let Some(branch) = w.branch else {
                bail!(
                    "the worktree at {} has a detached HEAD; pwt keys worktrees by branch\n  hint: `git -C {} switch -c NAME`, then `pwt up`",
                    w.root.display(),
                    w.root.display()
                );
            };
            (w.root, branch)
        }
    };
    let (services, rt, redis_plan) = Services::prepare(&session)?;
    let (lease, fresh) = session.lease(&branch, Mode::Adopt, redis_plan, |_| Ok(root.clone()))?;
    if let Some(rt) = &rt {
        // Idempotent: what exists with this worktree's marker is kept as it is.
        let steps = rt.block_on(with_progress(
            vec!["provisioning".into()],
            json,
            provision(&services, &lease),
        ));
        if let Some((_, e)) = first_error(&steps) {
            let e = e.to_string();
            let stuck = rt.block_on(rollback(&services, &lease, &steps));
            if fresh && stuck.is_empty() {
                session.release(&lease.repo, &branch)?;
            }
            let mut msg = format!("cannot set up {branch:?}: {e}");
            if !stuck.is_empty() {
                msg.push_str(&format!("\n  could not roll back: {}", stuck.join("; ")));
            }
            bail!(msg);
        }
    }
    let env = session.lease_env(&lease)?;
    let hashes =
        match session.write_env_files(&root, lease.slug.as_str(), &env, &lease.files, args.force) {
            Ok(h) => h,
            Err(e) => {
                if fresh {
                    session.release(&lease.repo, &branch)?;
                }
                return Err(e);
            }
        };
    let lease = session.mark_ready(&branch, hashes)?;
    if fresh && !args.no_hooks {
        run_hooks(
            "post-create",
            &session.config().hooks.post_create,
            &root,
            &env,
            json,
        )?;
    }
    let info = session.lease_info(&lease, false);
    if json {
        print_json(&info.to_json());
    } else {
        let files: Vec<String> = lease.files.keys().cloned().collect();
        info.print_summary(
            Style::stdout(),
            cwd,
            &files,
            if fresh { "adopted" } else { "up to date" },
        );
    }
    Ok(exit_codes::OK)
}
