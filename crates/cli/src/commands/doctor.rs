//! `pwt doctor`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use pwt_alloc::{Lease, LeaseState, now, process_alive};
use pwt_core::{Slug, parse_assignments};
use serde_json::json;

use crate::env_files::content_hash;
use crate::exit_codes;
use crate::lease_ops::MAIN_SLUG;
use crate::output::{Format, Style, print_json, printable};
use crate::services::{Services, runtime};
use crate::session::Session;

/// Diagnose configuration, registry, worktrees and services
///
/// Checks git, configuration, the registry, leases and worktrees, port conflicts, each
/// configured service (reachable, privileges, Redis DB count) and orphaned data. Exits 1
/// when something is broken.
///
/// With --rebuild, rebuilds this repository's leases from the env files pwt wrote in its
/// worktrees: for a registry that was lost, or that is corrupt (it is moved aside to
/// registry.json.corrupt-<time> first, never deleted). Run it in each repository.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Rebuild this repository's leases from its worktrees' env files.
    #[arg(long)]
    pub rebuild: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Finding {
    level: Level,
    what: String,
    hint: Option<String>,
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        hint: None,
    }
}

fn warn(what: impl Into<String>, hint: impl Into<String>) -> Finding {
    Finding {
        level: Level::Warn,
        what: what.into(),
        hint: Some(hint.into()),
    }
}

fn fail(what: impl Into<String>, hint: impl Into<String>) -> Finding {
    Finding {
        level: Level::Fail,
        what: what.into(),
        hint: Some(hint.into()),
    }
}

pub fn run(cwd: &Path, args: DoctorArgs) -> Result<i32> {
    let session = Session::open(cwd)?;
    let mut findings = Vec::new();
    if args.rebuild {
        findings.extend(rebuild(&session)?);
    }
    findings.extend(diagnose(&session));
    findings.extend(check_services(&session)?);
    if args.format == Format::Json {
        let items: Vec<_> = findings
            .iter()
            .map(|f| {
                let level = match f.level {
                    Level::Ok => "ok",
                    Level::Warn => "warning",
                    Level::Fail => "error",
                };
                json!({ "level": level, "check": f.what, "hint": f.hint })
            })
            .collect();
        print_json(&json!({ "checks": items }));
    } else {
        let style = Style::stdout();
        for f in &findings {
            let mark = match f.level {
                Level::Ok => style.green("✓"),
                Level::Warn => style.yellow("!"),
                Level::Fail => style.red("✗"),
            };
            println!("{mark} {}", printable(&f.what));
            if let Some(h) = &f.hint {
                println!("    {}", style.dim(&format!("hint: {h}")));
            }
        }
    }
    Ok(if findings.iter().any(|f| f.level == Level::Fail) {
        exit_codes::FAILURE
    } else {
        exit_codes::OK
    })
}

fn diagnose(session: &Session) -> Vec<Finding> {
    let mut out = Vec::new();
    match Command::new("git").arg("--version").output() {
        Ok(o) if o.status.success() => {
            out.push(ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()))
        }
        _ => out.push(fail(
            "git is not on PATH",
            "install git; pwt runs it to add and remove worktrees",
        )),
    }
    out.push(ok(match &session.settings.project_file {
        Some(p) => format!("configuration loads ({})", p.display()),
        None => "configuration loads (no pwt.toml: defaults, one port PORT)".to_owned(),
    }));
    let state = match session.registry.read() {
        Ok(s) => {
            out.push(ok(format!(
                "registry {} parses ({} lease(s) on this machine)",
                session.registry.file().display(),
                s.leases.len()
            )));
            s
        }
        Err(e) => {
            out.push(fail(
                format!("{e}"),
                "`pwt doctor --rebuild` moves it aside and rebuilds this repository's leases",
            ));
            return out;
        }
    };

    // Ports handed out twice would be the one unforgivable bug; look for it explicitly.
    let mut owners: HashMap<u16, Vec<&Lease>> = HashMap::new();
    for l in &state.leases {
        for p in l.ports.values() {
            owners.entry(*p).or_default().push(l);
        }
    }
    let mut dupes: Vec<_> = owners.iter().filter(|(_, v)| v.len() > 1).collect();
    dupes.sort_by_key(|(p, _)| **p);
    if dupes.is_empty() {
        out.push(ok("no port is leased twice"));
    }
    for (port, ls) in dupes {
        let names: Vec<_> = ls
            .iter()
            .map(|l| format!("{} ({})", l.branch, l.repo.display()))
            .collect();
        out.push(fail(
            format!("port {port} is leased to {}", names.join(" and ")),
            "`pwt rm` one of them and `pwt new` it again",
        ));
    }

    let gone = state.leases.iter().filter(|l| !l.repo.exists()).count();
    if gone > 0 {
        out.push(warn(
            format!("{gone} lease(s) belong to repositories that no longer exist; their ports stay reserved"),
            "`pwt gc --all-repos --yes` releases them",
        ));
    }
    let repo = &session.repo.common_dir;
    let worktrees = session.repo.worktrees().unwrap_or_default();
    let services: Vec<String> = session.services();
    let [lo, hi] = session.config().ports.range;
    for l in state.of_repo(repo) {
        let name = &l.branch;
        if !l.path.exists() {
            let moved = worktrees
                .iter()
                .find(|w| w.exists && w.branch.as_deref() == Some(name.as_str()));
            out.push(match moved {
                Some(w) => warn(
                    format!(
                        "{name}: worktree moved from {} to {}",
                        l.path.display(),
                        w.root.display()
                    ),
                    format!("`pwt up {}` follows it", crate::output::sh(name)),
                ),
                None => warn(
                    format!("{name}: worktree {} is gone", l.path.display()),
                    "`pwt gc --yes` removes its data and lease",
                ),
            });
            continue;
        }
        if l.state != LeaseState::Ready && !l.pid.is_some_and(process_alive) {
            out.push(warn(
                format!("{name}: left `{}` by a pwt that stopped", l.state.as_str()),
                "`pwt gc --yes` finishes it",
            ));
        }
        if !worktrees.iter().any(|w| w.root == l.path) {
            out.push(warn(
                format!(
                    "{name}: {} is not a git worktree any more",
                    l.path.display()
                ),
                "`pwt rm --keep-worktree` releases it",
            ));
        }
        let keys: Vec<&String> = l.ports.keys().collect();
        if keys != services.iter().collect::<Vec<_>>()
            || l.ports.values().any(|p| !(lo..=hi).contains(p))
        {
            out.push(warn(
                format!("{name}: ports no longer match [ports] in the configuration"),
                format!("`pwt up {}` re-leases them", crate::output::sh(name)),
            ));
        }
    }
    let unmanaged: Vec<_> = worktrees
        .iter()
        .filter(|w| !w.is_main && w.exists && !state.of_repo(repo).any(|l| l.path == w.root))
        .collect();
    for w in unmanaged {
        out.push(warn(
            format!("{} is a worktree pwt does not manage", w.root.display()),
            format!(
                "`pwt up {}` adopts it",
                crate::output::sh(&w.root.display().to_string())
            ),
        ));
    }
    if state.of_repo(repo).next().is_some() {
        let exclude = std::fs::read_to_string(repo.join("info/exclude")).unwrap_or_default();
        for (_, name) in session.env_files().unwrap_or_default() {
            if !exclude.lines().any(|l| l.trim() == format!("/{name}")) {
                out.push(warn(
                    format!("{name} is not in {}", repo.join("info/exclude").display()),
                    "`pwt up` in any worktree adds it",
                ));
            }
        }
    }
    out
}

/// Each configured service: reachable, privileges, capacity.
fn check_services(session: &Session) -> Result<Vec<Finding>> {
    let services = Services::new(session.config(), &session.project())?;
    if !services.any() {
        return Ok(vec![ok(
            "no services configured ([postgres], [rabbitmq], [redis] in pwt.toml turn them on)",
        )]);
    }
    let rt = runtime();
    let mut out = Vec::new();
    rt.block_on(async {
        if let Some((pg, template)) = &services.postgres {
            match pg.status().await {
                Ok(s) => {
                    let role = if s.superuser { "superuser" } else if s.createdb { "CREATEDB" } else { "no CREATEDB" };
                    if s.superuser || s.createdb {
                        out.push(ok(format!("PostgreSQL {} at {} as {} ({role})", s.version, pg.display_url(), s.user)));
                    } else {
                        out.push(fail(
                            format!("PostgreSQL at {}: role {} may not create databases", pg.display_url(), s.user),
                            format!("ALTER ROLE \"{}\" CREATEDB;", s.user),
                        ));
                    }
                    if let Some(t) = template {
                        out.push(ok(format!("new databases are cloned from {:?} (clone_from_main)", t.as_str())));
                    }
                }
                Err(e) => out.push(fail(e.to_string(), "start PostgreSQL (`pwt infra up`, or your system's service), or fix postgres.url")),
            }
        }
        if let Some(mq) = &services.rabbitmq {
            match mq.status().await {
                Ok(s) if s.can_manage_vhosts() => {
                    out.push(ok(format!("RabbitMQ {} at {} as {} (administrator)", s.version, mq.display_url(), s.user)));
                }
                Ok(s) => out.push(fail(
                    format!("RabbitMQ at {}: user {} may not manage vhosts (tags: {})", mq.display_url(), s.user, s.tags.join(", ")),
                    format!("rabbitmqctl set_user_tags {} administrator", s.user),
                )),
                Err(e) => out.push(fail(
                    e.to_string(),
                    "start RabbitMQ and its management plugin (`rabbitmq-plugins enable rabbitmq_management`), or fix rabbitmq.url / management_url",
                )),
            }
        }
        if let Some((redis, mode, fallback)) = &services.redis {
            match redis.status().await {
                Ok(s) => {
                    let dbs = s.databases.unwrap_or(*fallback);
                    let counted = if s.databases.is_some() { "" } else { " (CONFIG GET not allowed: using redis.databases)" };
                    if s.cluster && *mode == pwt_core::config::RedisMode::Db {
                        out.push(fail(format!("Redis at {} is a cluster: DB 0 only", redis.display_url()), "set `redis.mode = \"prefix\"`"));
                    } else {
                        out.push(ok(format!("Redis {} at {}: {dbs} DBs{counted}, {} mode", s.version, redis.display_url(), match mode {
                            pwt_core::config::RedisMode::Db => "db",
                            pwt_core::config::RedisMode::Prefix => "prefix",
                        })));
                    }
                }
                Err(e) => out.push(fail(e.to_string(), "start Redis, or fix redis.url")),
            }
        }
    });
    if out.iter().all(|f| f.level == Level::Ok) {
        let mut problems = Vec::new();
        let found = crate::commands::gc::orphans(session, &services, &rt, &mut problems);
        let orphans: Vec<_> = found
            .iter()
            .filter(|a| !matches!(a, crate::commands::gc::Action::Orphan { kept: true, .. }))
            .collect();
        if orphans.is_empty() {
            out.push(ok(
                "no orphaned databases, vhosts or Redis data of this repository",
            ));
        } else {
            let list: Vec<String> = orphans.iter().map(|a| a.describe()).collect();
            out.push(warn(
                format!("{} orphaned: {}", orphans.len(), list.join("; ")),
                "`pwt gc` lists them, `pwt gc --yes` removes them",
            ));
        }
    }
    Ok(out)
}

/// Rebuilds this repository's leases from env files that carry pwt's header.
fn rebuild(session: &Session) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    let (mut locked, moved) = session.registry.lock_for_repair()?;
    if let Some(aside) = &moved {
        out.push(warn(
            format!(
                "the registry did not parse; it was moved to {}",
                aside.display()
            ),
            "leases of other repositories were in it: run `pwt doctor --rebuild` in each of them",
        ));
    }
    let repo = session.repo.common_dir.clone();
    let services = session.config().services();
    let files = session.env_files()?;
    let mut slugs: HashSet<String> = locked
        .state
        .of_repo(&repo)
        .map(|l| l.slug.to_string())
        .collect();
    slugs.insert(MAIN_SLUG.into());
    for w in session.repo.worktrees()? {
        let Some(branch) = w.branch.clone() else {
            continue;
        };
        if w.is_main || !w.exists || locked.state.find(&repo, &branch).is_some() {
            continue;
        }
        let mut vars = BTreeMap::new();
        let mut hashes = BTreeMap::new();
        for (_, name) in &files {
            let Ok(bytes) = std::fs::read(w.root.join(name)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            if !text.starts_with("# Written by pwt") {
                continue;
            }
            hashes.insert(name.clone(), content_hash(&bytes));
            vars.extend(parse_assignments(&text));
        }
        let ports: Option<BTreeMap<String, u16>> = services
            .iter()
            .map(|(n, s)| {
                vars.get(&s.env)
                    .and_then(|v| v.parse().ok())
                    .map(|p| (n.clone(), p))
            })
            .collect();
        let Some(ports) = ports else { continue };
        let slug = vars
            .get("PWT_SLUG")
            .and_then(|s| Slug::parse(s).ok())
            .filter(|s| !slugs.contains(s.as_str()))
            .unwrap_or_else(|| Slug::derive(&branch, |s| slugs.contains(s)));
        slugs.insert(slug.to_string());
        let t = now();
        locked.state.leases.push(Lease {
            repo: repo.clone(),
            branch: branch.clone(),
            slug,
            path: w.root.clone(),
            project: session.project(),
            ports,
            redis_db: vars.get("REDIS_DB").and_then(|v| v.parse().ok()),
            state: LeaseState::Ready,
            pid: None,
            files: hashes,
            resources: BTreeMap::new(),
            leftover: Vec::new(),
            created_at: t,
            updated_at: t,
        });
        out.push(ok(format!(
            "rebuilt the lease of {branch} from its env files"
        )));
    }
    locked.commit()?;
    Ok(out)
}
