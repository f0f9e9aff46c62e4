//! Diagnose (`pwt doctor`): findings as data, for the caller to show; and the rebuild of
//! lost leases from the env files pwt wrote.

use std::collections::{BTreeMap, HashMap, HashSet};

use pwt_alloc::{Journal, Lease, LeaseState, State, now};
use pwt_core::config::RedisMode;
use pwt_core::{
    DbName, FILE_MARK, MAIN_SLUG, RedisPrefix, RedisSlot, Resources, Slug, Vhost, parse_assignments,
};
use pwt_provision::Presence;

use crate::env_files::content_hash;
use crate::error::Result;
use crate::paths::shell_word;
use crate::plan::Action;
use crate::project::Project;
use crate::reconcile::ReconcileRequest;
use crate::services::{Services, chain};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Worth a look; pwt works.
    Warning,
    /// Broken.
    Error,
}

/// One thing `pwt doctor` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What.
    pub what: String,
    /// What to do.
    pub hint: Option<String>,
}

impl Finding {
    /// A check that passed.
    pub fn ok(what: impl Into<String>) -> Self {
        Self {
            level: Level::Ok,
            what: what.into(),
            hint: None,
        }
    }

    /// A warning with its hint.
    pub fn warning(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            what: what.into(),
            hint: Some(hint.into()),
        }
    }

    /// An error with its hint.
    pub fn error(what: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            what: what.into(),
            hint: Some(hint.into()),
        }
    }
}

impl Project {
    /// Checks the configuration, git, the registry, the leases and worktrees of this
    /// repository, ports leased twice, each configured service (reachable, privileges,
    /// capacity), orphaned data and, for an HTTPS proxy, the browsers' trust in it.
    pub fn diagnose(&self) -> Vec<Finding> {
        let mut out = vec![self.configuration_finding(), git_version()];
        match self.state() {
            Ok(state) => {
                out.push(Finding::ok(format!(
                    "registry {} parses ({} lease(s) on this machine)",
                    self.registry.file().display(),
                    state.leases.len()
                )));
                out.extend(duplicate_ports(&state));
                out.extend(self.ports_claimed_by_others(&state));
                out.extend(self.lease_findings(&state));
            }
            Err(e) => out.push(Finding::error(
                e.to_string(),
                "`pwt doctor --rebuild` moves it aside and rebuilds this repository's leases",
            )),
        }
        let mut services = self.service_findings();
        services.extend(self.team_finding());
        let all_ok = services.iter().all(|f| f.level == Level::Ok);
        out.extend(services);
        if all_ok {
            out.extend(self.orphan_findings());
        }
        out.extend(self.https_findings());
        out
    }

    /// Whether the configuration loads and renders what `pwt new` renders (a worktree's
    /// path, its resource names, its `[env]`), tried on a sample branch.
    fn configuration_finding(&self) -> Finding {
        let file = match &self.project_file {
            Some(p) => p.display().to_string(),
            None => "no pwt.toml: defaults, one port PORT".to_owned(),
        };
        let (branch, slug) = ("pwt-doctor/sample", "pwt-doctor-sample");
        let ports = (20000..).zip(self.config.services().into_keys());
        let ports = ports.map(|(port, name)| (name, port)).collect();
        let ctx = self.context(branch, slug, &ports);
        let rendered = || -> Result<()> {
            self.env_files()?;
            self.worktree_path(None, branch, slug)?;
            let resources = pwt_core::resource_names(&self.config, &ctx, &self.templates)?;
            let vars = self.service_vars(pwt_core::Worktree::Leased(&resources))?;
            let facts = pwt_core::WorktreeFacts {
                ctx: ctx.clone(),
                is_main: false,
            };
            pwt_core::build_environment(&self.config, &facts, &vars, &self.templates)?;
            Ok(())
        };
        match rendered() {
            Ok(()) => Finding::ok(format!("configuration loads ({file})")),
            Err(e) => Finding::error(
                format!("configuration ({file}): `pwt new` would fail: {e}"),
                e.hint_text().unwrap_or(
                    "fix pwt.toml (`pwt config` shows each value and where it came from)",
                ),
            ),
        }
    }

    /// With `[proxy] https = true` and a home directory ([`crate::Options::home`]): whether
    /// the browsers there trust the proxy's authority.
    fn https_findings(&self) -> Vec<Finding> {
        let Some(home) = self
            .options
            .home
            .as_deref()
            .filter(|_| self.config.proxy.https)
        else {
            return Vec::new();
        };
        let dir = crate::https::ca_dir(&self.options.state_dir);
        if !dir.join(pwt_proxy::CA_CERT).exists() {
            return vec![Finding::ok(
                "HTTPS: no local certificate authority yet: the first `pwt proxy` makes one (`pwt proxy trust` then makes browsers trust it)",
            )];
        }
        let ca = match crate::https::local_ca(&self.options.state_dir) {
            Ok(ca) => ca,
            Err(e) => {
                return vec![Finding::error(
                    format!("the proxy's local certificate authority: {e}"),
                    format!(
                        "`pwt proxy` cannot serve HTTPS until it is fixed; to start afresh, remove {} (browsers must then trust the new one: `pwt proxy trust`)",
                        dir.display()
                    ),
                )];
            }
        };
        let shown = |s: &crate::https::TrustStore| {
            let what = format!(
                "HTTPS: the proxy's authority in the {} store {}",
                s.kind, s.location
            );
            match (s.trusted, s.kind.as_str()) {
                (true, _) => Finding::ok(format!("{what} is trusted")),
                (false, "system") => Finding::warning(
                    format!(
                        "{what} is not trusted: curl and other tools that read it show certificate errors"
                    ),
                    format!(
                        "`pwt proxy trust` as root adds it there; else give them --cacert {}",
                        ca.cert_file().display()
                    ),
                ),
                (false, _) => Finding::warning(
                    format!("{what} is not trusted: that browser shows certificate errors"),
                    "`pwt proxy trust` trusts it there",
                ),
            }
        };
        crate::https::trusted_where(&ca, home)
            .iter()
            .map(shown)
            .collect()
    }

    fn lease_findings(&self, state: &State) -> Vec<Finding> {
        let mut out = Vec::new();
        let gone = state.leases.iter().filter(|l| !l.repo.exists()).count();
        if gone > 0 {
            out.push(Finding::warning(
                format!("{gone} lease(s) belong to repositories that no longer exist; their ports stay reserved"),
                "`pwt gc --all-repos --yes` releases them",
            ));
        }
        let repo = &self.repo.common_dir;
        let worktrees = self.repo.worktrees().unwrap_or_default();
        let services = self.services();
        let [lo, hi] = self.config.ports.range;
        for l in state.of_repo(repo) {
            let name = l.branch.as_str();
            let moved = self.moved_to(l, &worktrees);
            if moved.is_some() || !l.path.exists() {
                out.push(match moved {
                    Some(w) => Finding::warning(
                        format!(
                            "{name}: worktree moved from {} to {}",
                            l.path.display(),
                            w.display()
                        ),
                        match w.to_str() {
                            Some(_) => format!("`pwt up {}` follows it", shell_word(name)),
                            None => crate::paths::up_hint(w, ""),
                        },
                    ),
                    None => Finding::warning(
                        format!("{name}: worktree {} is gone", l.path.display()),
                        "`pwt gc --yes` removes its data and lease",
                    ),
                });
                continue;
            }
            if l.interrupted() {
                out.push(Finding::warning(
                    format!("{name}: left `{}` by a pwt that stopped", l.state.as_str()),
                    "`pwt gc --yes` finishes or rolls it back",
                ));
            }
            if !worktrees.iter().any(|w| w.root == l.path) {
                out.push(Finding::warning(
                    format!(
                        "{name}: {} is not a git worktree any more",
                        l.path.display()
                    ),
                    "`pwt rm --keep-worktree` releases it",
                ));
            }
            let same = l.ports.keys().eq(services.iter());
            if !same || l.ports.values().any(|p| !(lo..=hi).contains(p)) {
                out.push(Finding::warning(
                    format!("{name}: ports no longer match [ports] in the configuration"),
                    format!("`pwt up {}` re-leases them", shell_word(name)),
                ));
            }
        }
        out.extend(self.unmanaged_findings(state, &worktrees));
        out
    }

    /// Worktrees git knows that pwt does not manage, and env files missing from
    /// `info/exclude`.
    fn unmanaged_findings(
        &self,
        state: &State,
        worktrees: &[pwt_alloc::WorktreeEntry],
    ) -> Vec<Finding> {
        let repo = &self.repo.common_dir;
        let mut out = Vec::new();
        for w in worktrees
            .iter()
            .filter(|w| !w.is_main && w.exists && !state.of_repo(repo).any(|l| l.path == w.root))
        {
            out.push(Finding::warning(
                format!("{} is a worktree pwt does not manage", w.root.display()),
                crate::paths::up_hint(&w.root, "adopts it"),
            ));
        }
        if state.of_repo(repo).next().is_some() {
            let exclude = std::fs::read_to_string(repo.join("info/exclude")).unwrap_or_default();
            for (_, name) in self.env_files().unwrap_or_default() {
                if !exclude.lines().any(|l| l.trim() == format!("/{name}")) {
                    out.push(Finding::warning(
                        format!("{name} is not in {}", repo.join("info/exclude").display()),
                        "`pwt up` in any worktree adds it",
                    ));
                }
            }
        }
        out
    }

    /// Each configured service: reachable, privileges, capacity.
    /// The team store, when one is configured: reachable, pwt's format, and what this holder
    /// holds in it.
    fn team_finding(&self) -> Option<Finding> {
        self.config.team_url()?;
        Some(match self.team_holds() {
            Ok(holds) => {
                let mine = holds
                    .iter()
                    .filter(|h| h.who.holder == self.options.holder)
                    .count();
                Finding::ok(format!(
                    "team store: {} names held, {mine} by {} (this pwt's holder)",
                    holds.len(),
                    self.options.holder
                ))
            }
            Err(e) => Finding::error(
                chain(&e),
                e.hint_text()
                    .map(str::to_owned)
                    .unwrap_or_else(|| "fix [team] url in pwt.toml".into()),
            ),
        })
    }

    fn service_findings(&self) -> Vec<Finding> {
        let services = match Services::new(self) {
            Ok(s) => s,
            Err(e) => {
                return vec![Finding::error(
                    chain(&e),
                    "fix the service sections of pwt.toml",
                )];
            }
        };
        if !services.any() {
            return vec![Finding::ok(
                "no services configured ([postgres], [rabbitmq], [redis] in pwt.toml turn them on)",
            )];
        }
        services
            .block_on(async {
                let mut out = Vec::new();
                if let Some((pg, template)) = &services.postgres {
                    out.push(match pg.status().await {
                        Ok(s) if s.superuser || s.createdb => Finding::ok(format!(
                            "PostgreSQL {} at {} as {} ({})",
                            s.version,
                            pg.display_url(),
                            s.user,
                            if s.superuser { "superuser" } else { "CREATEDB" }
                        )),
                        Ok(s) => Finding::error(
                            format!("PostgreSQL at {}: role {} may not create databases", pg.display_url(), s.user),
                            format!("ALTER ROLE \"{}\" CREATEDB;", s.user),
                        ),
                        Err(e) => Finding::error(chain(&e), e.hint().unwrap_or_else(|| "start PostgreSQL (`pwt infra up`, or your system's service), or fix postgres.url".into())),
                    });
                    if let Some(t) = template {
                        out.push(Finding::ok(format!("new databases are cloned from {:?} (clone_from_main)", t.as_str())));
                    }
                    if let Ok(names) = pg.database_names().await {
                        let marked: Vec<String> =
                            pg.marked().await.unwrap_or_default().into_iter().map(|m| m.name).collect();
                        out.extend(self.database_findings(&names, &marked, template.is_some()));
                    }
                }
                if let Some(mq) = &services.rabbitmq {
                    out.push(match mq.status().await {
                        Ok(s) if s.can_manage_vhosts() => Finding::ok(format!(
                            "RabbitMQ {} at {} as {} (administrator)",
                            s.version, mq.display_url(), s.user
                        )),
                        Ok(s) => Finding::error(
                            format!("RabbitMQ at {}: user {} may not manage vhosts (tags: {})", mq.display_url(), s.user, s.tags.join(", ")),
                            format!("rabbitmqctl set_user_tags {} administrator", s.user),
                        ),
                        Err(e) => Finding::error(chain(&e), e.hint().unwrap_or_else(|| "start RabbitMQ and its management plugin (`rabbitmq-plugins enable rabbitmq_management`), or fix rabbitmq.url / management_url".into())),
                    });
                }
                if let Some((redis, mode, fallback)) = &services.redis {
                    out.push(self.redis_finding(redis, *mode, *fallback).await);
                }
                out
            })
            .unwrap_or_default()
    }

    async fn redis_finding(
        &self,
        redis: &pwt_provision::Redis,
        mode: RedisMode,
        fallback: u16,
    ) -> Finding {
        let s = match redis.status().await {
            Ok(s) => s,
            Err(e) => {
                return Finding::error(
                    chain(&e),
                    e.hint()
                        .unwrap_or_else(|| "start Redis, or fix redis.url".into()),
                );
            }
        };
        let dbs = s.databases.unwrap_or(fallback);
        let counted = if s.databases.is_some() {
            ""
        } else {
            " (CONFIG GET not allowed: using redis.databases)"
        };
        let url = self
            .config
            .redis
            .as_ref()
            .map(|r| r.url.clone())
            .unwrap_or_default();
        match mode {
            RedisMode::Db if s.cluster => Finding::error(
                format!("Redis at {} is a cluster: DB 0 only", redis.display_url()),
                "set `redis.mode = \"prefix\"`",
            ),
            RedisMode::Db => {
                let main = crate::info::main_redis_db(&url);
                let leased = self.state().ok().and_then(|st| {
                    st.leases
                        .iter()
                        .find(|l| l.resources.redis_db() == Some(main))
                        .map(|l| l.branch.to_string())
                });
                let presence = redis.db_presence(main).await;
                match (leased, presence) {
                    (Some(branch), _) => Finding::error(
                        format!(
                            "Redis DB {main} is the main worktree's (redis.url selects it), but it is leased to {branch:?}: both write their keys into it"
                        ),
                        format!(
                            "set redis.url back to the DB index it had; to give main this index, first `pwt rm {}` with the old redis.url, then change it (`pwt rm` never flushes main's index)",
                            shell_word(&branch)
                        ),
                    ),
                    (None, Ok(Presence::Marked(m))) => Finding::error(
                        format!(
                            "Redis DB {main} is the main worktree's (redis.url selects it), but a worktree's marker is in it ({m}): another person's or another registry's worktree leases it"
                        ),
                        "point redis.url at a DB index no worktree leases (`pwt list --team` or the other person's `pwt list` shows which)",
                    ),
                    _ => Finding::ok(format!(
                        "Redis {} at {}: {dbs} DBs{counted}, db mode: the main worktree uses DB {main} (redis.url's), never leased",
                        s.version,
                        redis.display_url(),
                    )),
                }
            }
            RedisMode::Prefix => Finding::ok(format!(
                "Redis {} at {}: {dbs} DBs{counted}, prefix mode",
                s.version,
                redis.display_url()
            )),
        }
    }

    /// The main worktree's database, and test databases a framework left behind (their
    /// worktree's database is gone).
    /// Ready worktrees of this repository whose own database is gone (dropped by hand, or
    /// by a tool): `pwt up` creates it again.
    fn missing_databases(&self, state: &State, names: &[String]) -> Vec<Finding> {
        state
            .of_repo(&self.repo.common_dir)
            .filter(|l| l.state == LeaseState::Ready)
            .filter_map(|l| {
                let db = l.resources.database.as_ref()?;
                (!names.iter().any(|n| n == db.as_str())).then(|| {
                    Finding::warning(
                        format!(
                            "the database {:?} of worktree {:?} does not exist: its app has nothing to connect to",
                            db.as_str(),
                            l.branch.as_str()
                        ),
                        format!("`pwt up {}` creates it again (empty)", shell_word(l.branch.as_str())),
                    )
                })
            })
            .collect()
    }

    fn database_findings(&self, names: &[String], marked: &[String], cloned: bool) -> Vec<Finding> {
        let Some(pg) = &self.config.postgres else {
            return Vec::new();
        };
        let main = pg
            .main_database
            .clone()
            .unwrap_or_else(|| self.project_name());
        let state = self.state().ok();
        let mut out = state
            .as_ref()
            .map(|s| self.missing_databases(s, names))
            .unwrap_or_default();
        if !names.contains(&main) {
            let what = format!(
                "the main worktree's database {main:?} does not exist: its app has nothing to connect or migrate to"
            );
            let hint = format!(
                "create it: `CREATE DATABASE {};` (or `createdb {main}`), or set `postgres.main_database`",
                pwt_provision::quote_ident(&main)
            );
            out.push(if cloned {
                Finding::error(what + ", and clone_from_main copies from it", hint)
            } else {
                Finding::warning(what, hint)
            });
        }
        let prefix = format!("{}_", pwt_core::db_ident(&self.project_name()));
        // Left behind: it derives from a database of this project's that is gone, and from
        // none that exists (`test_x_2` of a live `x_2` is not `x`'s), and no worktree
        // leases it as its own database (nor marks it: another person's).
        let leased: Vec<String> = state
            .iter()
            .flat_map(|s| &s.leases)
            .filter_map(|l| l.resources.database.as_ref().map(|d| d.as_str().to_owned()))
            .collect();
        let left: Vec<&String> = names
            .iter()
            .filter(|n| *n != &main && !leased.contains(n) && !marked.contains(n))
            .filter(|n| {
                let bases = pwt_core::test_database_bases(n, &pg.test_databases);
                bases.iter().any(|b| b.starts_with(&prefix))
                    && !bases.iter().any(|b| names.contains(b))
            })
            .collect();
        out.extend(reset_copies(&leased, names));
        if !left.is_empty() {
            let list: Vec<&str> = left.iter().map(|s| s.as_str()).collect();
            out.push(Finding::warning(
                format!(
                    "test databases left behind by worktrees that are gone: {}",
                    list.join(", ")
                ),
                format!(
                    "drop them: {}",
                    list.iter()
                        .map(|n| format!("`DROP DATABASE {};`", pwt_provision::quote_ident(n)))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ));
        }
        out
    }

    fn orphan_findings(&self) -> Vec<Finding> {
        let Ok(found) = self.reconcile_plan(&ReconcileRequest::default()) else {
            return Vec::new();
        };
        let orphans: Vec<String> = found
            .plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Orphan(_)))
            .map(Action::describe)
            .collect();
        let mut out = vec![if orphans.is_empty() {
            Finding::ok("no orphaned databases, vhosts or Redis data of this repository")
        } else {
            Finding::warning(
                format!("{} orphaned: {}", orphans.len(), orphans.join("; ")),
                "`pwt gc` lists them, `pwt gc --yes` removes them",
            )
        }];
        for s in &found.plan.spared {
            out.push(Finding::warning(
                format!("{} has no lease, but {}", s.what, s.why),
                "`pwt up` in that worktree takes it back; pwt gc leaves it alone",
            ));
        }
        out
    }

    /// Rebuilds this repository's leases from env files that carry pwt's header: for a
    /// registry that was lost, or that is corrupt (moved aside first, never deleted).
    pub fn rebuild(&self) -> Result<Vec<Finding>> {
        let mut out = Vec::new();
        let (mut locked, moved) = self.registry.lock_for_repair()?;
        if let Some(aside) = &moved {
            out.push(Finding::warning(
                format!("the registry did not parse; it was moved to {}", aside.display()),
                "leases of other repositories were in it: run `pwt doctor --rebuild` in each of them",
            ));
        }
        let repo = self.repo.common_dir.clone();
        let mut slugs: HashSet<String> = locked
            .state
            .of_repo(&repo)
            .map(|l| l.slug.to_string())
            .collect();
        slugs.insert(MAIN_SLUG.into());
        for w in self.repo.worktrees()? {
            let Some(branch) = w
                .branch
                .as_deref()
                .and_then(|b| pwt_core::BranchName::parse(b).ok())
            else {
                continue;
            };
            if w.is_main || !w.exists || locked.state.find(&repo, branch.as_str()).is_some() {
                continue;
            }
            if w.root.to_str().is_none() {
                let hint = crate::paths::up_hint(&w.root, "");
                out.push(Finding::warning(
                    format!("{} is not rebuilt", w.root.display()),
                    hint,
                ));
                continue;
            }
            let Some(lease) = self.lease_from_files(&w.root, &branch, &mut slugs)? else {
                continue;
            };
            out.push(Finding::ok(format!(
                "rebuilt the lease of {} from its env files",
                branch.as_str()
            )));
            locked.state.leases.push(lease);
        }
        locked.commit()?;
        Ok(out)
    }

    fn lease_from_files(
        &self,
        root: &std::path::Path,
        branch: &pwt_core::BranchName,
        slugs: &mut HashSet<String>,
    ) -> Result<Option<Lease>> {
        let mut vars = BTreeMap::new();
        let mut hashes = BTreeMap::new();
        for (_, name) in self.env_files()? {
            let Ok(bytes) = std::fs::read(root.join(&name)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            if !text.lines().next().is_some_and(|l| l.contains(FILE_MARK)) {
                continue;
            }
            hashes.insert(name, content_hash(&bytes));
            vars.extend(parse_assignments(&text));
        }
        let ports: Option<BTreeMap<String, u16>> = self
            .config
            .services()
            .iter()
            .map(|(n, s)| {
                vars.get(&s.env)
                    .and_then(|v| v.parse().ok())
                    .map(|p| (n.clone(), p))
            })
            .collect();
        let Some(ports) = ports else {
            return Ok(None);
        };
        let slug = vars
            .get("PWT_SLUG")
            .and_then(|s| Slug::parse(s).ok())
            .filter(|s| !slugs.contains(s.as_str()))
            .unwrap_or_else(|| Slug::derive(branch.as_str(), |s| slugs.contains(s)));
        slugs.insert(slug.to_string());
        let slug_text = slug.to_string();
        let t = now();
        // The registry that wrote them is usually this one, lost: its marker.
        let marker =
            pwt_core::registry_marker(&self.repo.key(), slug.as_str(), &self.registry_id());
        Ok(Some(Lease {
            repo: self.repo.common_dir.clone(),
            branch: branch.clone(),
            marker: Some(marker),
            slug,
            path: root.to_owned(),
            project: self.project_name(),
            ports,
            resources: self.resources_from_vars(&vars),
            state: LeaseState::Ready,
            owner: None,
            journal: Journal::default(),
            files: hashes,
            pending_hooks: false,
            pending_files: false,
            leftover: Vec::new(),
            keep: Vec::new(),
            dir_id: None,
            compose: vars
                .get("COMPOSE_PROJECT_NAME")
                .filter(|n| **n != format!("{}-{slug_text}", self.project_name()))
                .cloned(),
            created_at: t,
            updated_at: t,
        }))
    }

    /// The resources an env file names, for the configured services.
    fn resources_from_vars(&self, vars: &BTreeMap<String, String>) -> Resources {
        let c = &self.config;
        let get = |k: &str| vars.get(k).map(String::as_str);
        Resources {
            database: c
                .postgres
                .as_ref()
                .and(get("DATABASE_NAME"))
                .and_then(|d| DbName::parse(d).ok()),
            vhost: c
                .rabbitmq
                .as_ref()
                .and(get("RABBITMQ_VHOST"))
                .and_then(|v| Vhost::parse(v).ok()),
            redis: c.redis.as_ref().and_then(|_| {
                match (
                    get("REDIS_KEY_PREFIX"),
                    get("REDIS_DB").and_then(|n| n.parse::<u16>().ok()),
                ) {
                    (Some(p), _) if !p.is_empty() => {
                        RedisPrefix::parse(p).ok().map(RedisSlot::Prefix)
                    }
                    (_, Some(n)) if n > 0 => Some(RedisSlot::Db(n)),
                    _ => None,
                }
            }),
        }
    }
}

fn git_version() -> Finding {
    match crate::git::version() {
        Some(v) => Finding::ok(v),
        None => Finding::error(
            "git is not on PATH",
            "install git; pwt runs it to add and remove worktrees",
        ),
    }
}

impl Project {
    /// Ports leased here that the machine's claims give to another registry (another
    /// user's pwt): both would use them.
    fn ports_claimed_by_others(&self, state: &State) -> Vec<Finding> {
        let Some(claims) = self.leases().port_claims() else {
            return Vec::new();
        };
        let me = self.registry_id();
        let others: HashMap<u16, pwt_alloc::Claimant> = claims
            .all()
            .into_iter()
            .filter_map(|(p, w)| w.filter(|w| w.registry != me).map(|w| (p, w)))
            .collect();
        state
            .leases
            .iter()
            .flat_map(|l| l.ports.values().map(move |p| (l, *p)))
            .filter_map(|(l, p)| {
                let w = others.get(&p)?;
                Some(Finding::error(
                    format!(
                        "port {p}, leased to {} here, is claimed on this machine by another registry's lease of {} ({})",
                        l.branch.as_str(),
                        w.branch,
                        w.repo.display()
                    ),
                    format!(
                        "`pwt rm {}` and `pwt new` it again, so it gets a port nobody else has",
                        crate::paths::shell_word(l.branch.as_str())
                    ),
                ))
            })
            .collect()
    }
}

/// Ports handed out twice would be the one unforgivable bug; look for it explicitly.
fn duplicate_ports(state: &State) -> Vec<Finding> {
    let mut owners: HashMap<u16, Vec<&Lease>> = HashMap::new();
    for l in &state.leases {
        for p in l.ports.values() {
            owners.entry(*p).or_default().push(l);
        }
    }
    let mut dupes: Vec<_> = owners.into_iter().filter(|(_, v)| v.len() > 1).collect();
    dupes.sort_by_key(|(p, _)| *p);
    if dupes.is_empty() {
        return vec![Finding::ok("no port is leased twice")];
    }
    dupes
        .into_iter()
        .map(|(port, ls)| {
            let names: Vec<_> = ls
                .iter()
                .map(|l| format!("{} ({})", l.branch.as_str(), l.repo.display()))
                .collect();
            Finding::error(
                format!("port {port} is leased to {}", names.join(" and ")),
                "`pwt rm` one of them and `pwt new` it again",
            )
        })
        .collect()
}

/// The copies interrupted `reset_database`s were making (named after a leased database):
/// provably pwt's, even unmarked.
fn reset_copies(leased: &[String], names: &[String]) -> Vec<Finding> {
    leased
        .iter()
        .filter_map(|db| {
            let copy = format!("pwt_reset_{:016x}", pwt_core::stable_hash(db.as_bytes()));
            names.contains(&copy).then(|| {
                Finding::warning(
                    format!(
                        "{copy:?} is the copy of an interrupted reset of the database {db:?} (its data is the main worktree's)"
                    ),
                    format!(
                        "reset the worktree's database again to finish (pwt mcp's reset_database), or `DROP DATABASE {};`",
                        pwt_provision::quote_ident(&copy)
                    ),
                )
            })
        })
        .collect()
}
