//! `pwt gc`

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Result, anyhow};
use pwt_alloc::{Lease, LeaseState, process_alive};
use pwt_core::{DbName, RedisPrefix, Vhost, owner_marker, repo_marker_prefix};
use pwt_provision::{Outcome, ProvisionError, Service};
use serde_json::json;

use crate::exit_codes;
use crate::git::changes;
use crate::output::{Format, Style, print_json, printable};
use crate::services::{Services, first_error, lease_marker, provision, runtime, teardown};
use crate::session::Session;

/// Clean up what was left behind: leases of deleted worktrees, interrupted runs, orphans.
///
/// In this repository: leases whose worktree was deleted outside pwt (their data goes too),
/// set-ups and teardowns a crashed pwt did not finish, and databases, vhosts and Redis data
/// carrying this repository's pwt marker that no lease owns any more. Every removal is
/// marker-checked.
///
/// Lists what it would do; --yes does it (on a terminal it asks instead). Data kept on
/// purpose by `pwt rm --keep-data` is listed but left alone unless --kept.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only list; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do it without asking.
    #[arg(long, short)]
    pub yes: bool,
    /// Also remove data kept by `pwt rm --keep-data`.
    #[arg(long)]
    pub kept: bool,
    /// Also release the leases of repositories that no longer exist anywhere on this machine
    /// (their ports stay reserved otherwise). Their data is removed where this repository's
    /// services reach it, marker-checked.
    #[arg(long)]
    pub all_repos: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub(crate) enum Action {
    /// The worktree is gone: remove its data, release the lease.
    Release(Lease),
    /// Set-up was interrupted: finish it (provision, env files, ready).
    Finish(Lease),
    /// Teardown was interrupted: finish it.
    Remove(Lease),
    /// The worktree was moved: record its new path.
    Moved(Lease, std::path::PathBuf),
    /// The whole repository is gone: remove the data it can, release the lease.
    RepoGone(Lease),
    /// A resource with this repository's marker and no lease.
    Orphan {
        service: Service,
        name: String,
        marker: String,
        kept: bool,
    },
}

impl Action {
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Release(l) => format!(
                "{}: worktree gone ({}): remove its data and lease",
                l.branch,
                l.path.display()
            ),
            Self::Finish(l) => format!("{}: set-up interrupted: finish it", l.branch),
            Self::Remove(l) => format!("{}: teardown interrupted: finish it", l.branch),
            Self::Moved(l, to) => format!(
                "{}: worktree moved to {}: follow it",
                l.branch,
                to.display()
            ),
            Self::RepoGone(l) => format!(
                "{}: repository {} is gone: release its lease",
                l.branch,
                l.repo.display()
            ),
            Self::Orphan {
                service,
                name,
                kept,
                ..
            } => {
                let what = match service {
                    Service::Postgres => "database",
                    Service::RabbitMq => "vhost",
                    Service::Redis => "Redis",
                };
                if *kept {
                    format!("{what} {name:?}: kept by `pwt rm --keep-data`")
                } else {
                    format!("{what} {name:?}: pwt's, but no worktree owns it")
                }
            }
        }
    }

    fn branch(&self) -> Option<&str> {
        match self {
            Self::Release(l)
            | Self::Finish(l)
            | Self::Remove(l)
            | Self::Moved(l, _)
            | Self::RepoGone(l) => Some(&l.branch),
            Self::Orphan { .. } => None,
        }
    }
}

fn classify(lease: &Lease, worktrees: &[pwt_alloc::WorktreeEntry]) -> Option<Action> {
    if lease.state != LeaseState::Ready && lease.pid.is_some_and(process_alive) {
        return None; // another pwt is working on it right now
    }
    if !lease.path.exists() {
        // Moved with `git worktree move`, not deleted: follow it, never drop its data.
        if let Some(w) = worktrees
            .iter()
            .find(|w| w.exists && w.branch.as_deref() == Some(lease.branch.as_str()))
        {
            return Some(Action::Moved(lease.clone(), w.root.clone()));
        }
        return Some(Action::Release(lease.clone()));
    }
    match lease.state {
        LeaseState::Ready => None,
        LeaseState::Creating => Some(Action::Finish(lease.clone())),
        LeaseState::Removing => Some(Action::Remove(lease.clone())),
    }
}

/// Marked resources of this repository that no lease owns.
pub(crate) fn orphans(
    session: &Session,
    services: &Services,
    rt: &tokio::runtime::Runtime,
    problems: &mut Vec<String>,
) -> Vec<Action> {
    let state = match session.registry.read() {
        Ok(s) => s,
        Err(e) => {
            problems.push(e.to_string());
            return Vec::new();
        }
    };
    let repo_key = session.repo.key();
    let prefix = repo_marker_prefix(&repo_key);
    let owned: HashSet<String> = state.leases.iter().map(lease_marker).collect();
    let kept: HashSet<String> = state
        .recent
        .iter()
        .filter_map(|r| {
            r.kept
                .as_ref()
                .map(|k| owner_marker(&r.repo.to_string_lossy(), k.slug.as_str()))
        })
        .collect();
    let mut found = Vec::new();
    let mut push = |service, list: Result<Vec<pwt_provision::Marked>, ProvisionError>| match list {
        Ok(list) => {
            for m in list {
                if m.marker.starts_with(&prefix) && !owned.contains(&m.marker) {
                    let kept = kept.contains(&m.marker);
                    found.push(Action::Orphan {
                        service,
                        name: m.name,
                        marker: m.marker,
                        kept,
                    });
                }
            }
        }
        Err(e) => problems.push(format!("cannot look for orphans: {e}")),
    };
    rt.block_on(async {
        if let Some((pg, _)) = &services.postgres {
            push(Service::Postgres, pg.marked().await);
        }
        if let Some(mq) = &services.rabbitmq {
            push(Service::RabbitMq, mq.marked().await);
        }
        if let Some((redis, _, fallback)) = &services.redis {
            let dbs = redis
                .status()
                .await
                .map(|s| s.databases.unwrap_or(*fallback));
            match dbs {
                Ok(n) => push(Service::Redis, redis.marked(n).await),
                Err(e) => push(Service::Redis, Err(e)),
            }
        }
    });
    found
}

fn drop_orphan(
    services: &Services,
    rt: &tokio::runtime::Runtime,
    service: Service,
    name: &str,
    marker: &str,
) -> Result<()> {
    rt.block_on(async {
        match service {
            Service::Postgres => match &services.postgres {
                Some((pg, _)) => pg
                    .drop(&DbName::parse(name)?, marker)
                    .await
                    .map_err(anyhow::Error::from),
                None => Ok(Outcome::Absent),
            },
            Service::RabbitMq => match &services.rabbitmq {
                Some(mq) => mq
                    .delete(&Vhost::parse(name)?, marker)
                    .await
                    .map_err(anyhow::Error::from),
                None => Ok(Outcome::Absent),
            },
            Service::Redis => match &services.redis {
                Some((redis, _, _)) => {
                    match name.strip_prefix("db ").and_then(|n| n.parse::<u16>().ok()) {
                        Some(index) => redis
                            .flush_db(index, marker)
                            .await
                            .map_err(anyhow::Error::from),
                        None => redis
                            .clean_prefix(&RedisPrefix::parse(name)?, marker)
                            .await
                            .map_err(anyhow::Error::from),
                    }
                }
                None => Ok(Outcome::Absent),
            },
        }
    })?;
    Ok(())
}

fn remove_data(
    services: &Services,
    rt: Option<&tokio::runtime::Runtime>,
    lease: &Lease,
) -> Result<()> {
    let Some(rt) = rt else { return Ok(()) };
    let failed: Vec<String> = rt
        .block_on(teardown(services, lease, None))
        .into_iter()
        .filter_map(|s| match s.result {
            Err(
                e @ (ProvisionError::Unreachable { .. }
                | ProvisionError::Failed { .. }
                | ProvisionError::Config { .. }),
            ) => Some(format!("{}: {e}", s.what)),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(failed.join("; ")))
    }
}

pub fn run(cwd: &Path, args: GcArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let json = args.format == Format::Json;
    let state = session.registry.read()?;
    let services = Services::new(session.config(), &session.project())?;
    let rt = services.any().then(runtime);
    let mut problems = Vec::new();
    let worktrees = session.repo.worktrees()?;
    let mut found: Vec<Action> = state
        .of_repo(&session.repo.common_dir)
        .filter_map(|l| classify(l, &worktrees))
        .collect();
    if args.all_repos {
        found.extend(
            state
                .leases
                .iter()
                .filter(|l| l.repo != session.repo.common_dir && !l.repo.exists())
                .filter(|l| !l.pid.is_some_and(process_alive))
                .map(|l| Action::RepoGone(l.clone())),
        );
    }
    if let Some(rt) = &rt {
        found.extend(orphans(&session, &services, rt, &mut problems));
    }
    let actionable = |a: &Action| !matches!(a, Action::Orphan { kept: true, .. }) || args.kept;
    let style = Style::stdout();
    if !json {
        for p in &problems {
            println!("{} {p}", style.yellow("!"));
        }
        if found.is_empty() {
            println!("nothing to clean up");
        }
        for a in &found {
            let mark = if actionable(a) { "  " } else { "  (kept) " };
            println!("{mark}{}", printable(&a.describe()));
        }
    }
    let todo = found.iter().filter(|a| actionable(a)).count();
    let go = if todo == 0 || args.dry_run {
        false
    } else if args.yes {
        true
    } else if std::io::stdin().is_terminal() && !json {
        print!("clean up {todo} item(s)? [y/N] ");
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
    let mut done: Vec<String> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    if go {
        let git_dir = session
            .repo
            .main_root
            .clone()
            .unwrap_or_else(|| session.repo.common_dir.clone());
        let mut pruned = false;
        for a in found.iter().filter(|a| actionable(a)) {
            let result = match a {
                Action::Release(l) => remove_data(&services, rt.as_ref(), l).and_then(|()| {
                    if !pruned {
                        let _ = session
                            .git_worktree(&git_dir, &[OsStr::new("worktree"), OsStr::new("prune")]);
                        pruned = true;
                    }
                    session.release(&l.repo, &l.branch)
                }),
                Action::Finish(l) => (|| {
                    if let Some(rt) = &rt {
                        let steps = rt.block_on(provision(&services, l));
                        if let Some((s, e)) = first_error(&steps) {
                            return Err(anyhow!("{}: {e}", s.what));
                        }
                    }
                    let env = session.lease_env(l)?;
                    let hashes =
                        session.write_env_files(&l.path, l.slug.as_str(), &env, &l.files, false)?;
                    session.mark_ready(&l.branch, hashes).map(|_| ())
                })(),
                Action::Remove(l) => {
                    remove_data(&services, rt.as_ref(), l).and_then(|()| match changes(&l.path) {
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
                        Ok(_) => Err(anyhow!(
                            "it has uncommitted changes; `pwt rm --force {}` if they can go",
                            crate::output::sh(&l.branch)
                        )),
                        Err(e) => Err(e),
                    })
                }
                Action::RepoGone(l) => remove_data(&services, rt.as_ref(), l).and_then(|()| {
                    let mut locked = session.registry.lock()?;
                    if locked.state.release(&l.repo, &l.branch).is_some() {
                        locked.commit()?;
                    }
                    Ok(())
                }),
                Action::Moved(l, to) => {
                    let to = to.clone();
                    session
                        .update(&l.branch, |lease| lease.path = to)
                        .map(|_| ())
                }
                Action::Orphan {
                    service,
                    name,
                    marker,
                    ..
                } => match &rt {
                    Some(rt) => drop_orphan(&services, rt, *service, name, marker),
                    None => Ok(()),
                },
            };
            let label = a.describe();
            match result {
                Ok(()) => done.push(a.branch().map_or(label, str::to_owned)),
                Err(e) => failed.push((label, format!("{e:#}"))),
            }
        }
    }
    if json {
        let found: Vec<_> = found
            .iter()
            .map(
                |a| json!({ "branch": a.branch(), "action": a.describe(), "kept": !actionable(a) }),
            )
            .collect();
        let failed: Vec<_> = failed
            .iter()
            .map(|(b, e)| json!({ "item": b, "error": e }))
            .collect();
        print_json(
            &json!({ "found": found, "done": done, "failed": failed, "problems": problems }),
        );
    } else {
        for d in &done {
            println!("{} {}", style.green("✓"), printable(d));
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
