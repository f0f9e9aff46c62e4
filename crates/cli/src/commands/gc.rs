//! `pwt gc`

use std::ffi::OsStr;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::Result;
use pwt_alloc::{Lease, LeaseState, process_alive};
use serde_json::json;

use crate::exit_codes;
use crate::output::{Format, Style, print_json, printable};
use crate::session::{Session, changes};

/// Find and clean up what was left behind: leases whose worktree was deleted outside pwt,
/// and set-ups or teardowns a crashed pwt did not finish.
///
/// Lists what it would do; --yes does it (on a terminal it asks instead).
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only list; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do it without asking.
    #[arg(long, short)]
    pub yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The worktree is gone: release the lease.
    Release,
    /// Set-up was interrupted: finish it (write env files, mark ready).
    Finish,
    /// Teardown was interrupted: remove the worktree if clean, then the lease.
    Remove,
}

impl Action {
    fn describe(self) -> &'static str {
        match self {
            Self::Release => "worktree gone: release the lease",
            Self::Finish => "set-up interrupted: finish it",
            Self::Remove => "teardown interrupted: finish it",
        }
    }
}

fn classify(lease: &Lease) -> Option<Action> {
    if lease.state != LeaseState::Ready && lease.pid.is_some_and(process_alive) {
        return None; // another pwt is working on it right now
    }
    if !lease.path.exists() {
        return Some(Action::Release);
    }
    match lease.state {
        LeaseState::Ready => None,
        LeaseState::Creating => Some(Action::Finish),
        LeaseState::Removing => Some(Action::Remove),
    }
}

pub fn run(cwd: &Path, args: GcArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let json = args.format == Format::Json;
    let state = session.registry.read()?;
    let found: Vec<(Lease, Action)> = state
        .of_repo(&session.repo.common_dir)
        .filter_map(|l| classify(l).map(|a| (l.clone(), a)))
        .collect();
    let style = Style::stdout();
    if found.is_empty() {
        if json {
            print_json(&json!({ "found": [], "done": [] }));
        } else {
            println!("nothing to clean up");
        }
        return Ok(exit_codes::OK);
    }
    if !json {
        for (l, a) in &found {
            println!(
                "  {}  {}  {}",
                style.bold(&printable(&l.branch)),
                a.describe(),
                style.dim(&l.path.display().to_string())
            );
        }
    }
    let go = if args.dry_run {
        false
    } else if args.yes {
        true
    } else if std::io::stdin().is_terminal() && !json {
        print!("clean up {} item(s)? [y/N] ", found.len());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    } else {
        if !json {
            println!("dry run: pass --yes to clean up");
        }
        false
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    if go {
        let git_dir = session
            .repo
            .main_root
            .clone()
            .unwrap_or_else(|| session.repo.common_dir.clone());
        let mut pruned = false;
        for (l, a) in &found {
            let result = match a {
                Action::Release => {
                    if !pruned {
                        let _ = session
                            .git_worktree(&git_dir, &[OsStr::new("worktree"), OsStr::new("prune")]);
                        pruned = true;
                    }
                    session.release(&l.repo, &l.branch)
                }
                Action::Finish => session
                    .lease_env(l)
                    .and_then(|env| {
                        session.write_env_files(&l.path, l.slug.as_str(), &env, &l.files, false)
                    })
                    .and_then(|h| session.mark_ready(&l.branch, h).map(|_| ())),
                Action::Remove => match changes(&l.path) {
                    Ok(c) if c.is_empty() => session
                        .git_worktree(
                            &git_dir,
                            &[
                                OsStr::new("worktree"),
                                OsStr::new("remove"),
                                l.path.as_os_str(),
                            ],
                        )
                        .and_then(|()| session.release(&l.repo, &l.branch)),
                    Ok(_) => Err(anyhow::anyhow!(
                        "it has uncommitted changes; `pwt rm --force {}` if they can go",
                        l.branch
                    )),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => done.push(l.branch.clone()),
                Err(e) => failed.push((l.branch.clone(), format!("{e:#}"))),
            }
        }
    }
    if json {
        let found: Vec<_> = found
            .iter()
            .map(|(l, a)| json!({ "branch": l.branch, "path": l.path, "action": a.describe() }))
            .collect();
        let failed: Vec<_> = failed
            .iter()
            .map(|(b, e)| json!({ "branch": b, "error": e }))
            .collect();
        print_json(&json!({ "found": found, "done": done, "failed": failed }));
    } else {
        for b in &done {
            println!("{} {}", style.green("✓"), printable(b));
        }
        for (b, e) in &failed {
            println!("{} {}: {e}", style.red("✗"), printable(b));
        }
    }
    Ok(if failed.is_empty() {
        exit_codes::OK
    } else {
        exit_codes::FAILURE
    })
}
