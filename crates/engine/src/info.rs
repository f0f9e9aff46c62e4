//! What `pwt list` and the summaries show of a worktree, as data.

use std::path::PathBuf;
use std::time::Duration;

use pwt_alloc::Lease;
use pwt_core::config::RedisMode;
use pwt_core::{Config, MAIN_SLUG};

use crate::error::Result;
use crate::project::Project;

/// One port of a worktree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Service name.
    pub name: String,
    /// Variable that carries it.
    pub env: String,
    /// Port number.
    pub port: u16,
    /// Something accepts connections on it right now (`None`: not probed).
    pub listening: Option<bool>,
}

/// Where a worktree is in its life, as `pwt list` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum WorktreeState {
    /// The main worktree: the defaults.
    Main,
    /// Set up.
    Ready,
    /// A set-up is on its way, or was interrupted (`pwt gc` or `pwt up` finishes it).
    Creating,
    /// A teardown is on its way, or was interrupted (`pwt rm` finishes it).
    Removing,
    /// A worktree git knows that pwt does not manage (`pwt up` adopts it).
    Unmanaged,
    /// Git still lists it, its directory is gone (`git worktree prune`).
    Prunable,
    /// Leased, its directory is gone (`pwt gc` cleans up).
    Missing,
}

impl WorktreeState {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Ready => "ready",
            Self::Creating => "creating",
            Self::Removing => "removing",
            Self::Unmanaged => "unmanaged",
            Self::Prunable => "prunable",
            Self::Missing => "missing",
        }
    }
}

impl std::fmt::Display for WorktreeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Everything `list` and the summaries show of one worktree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorktreeInfo {
    /// Branch (or `(detached)`).
    pub branch: String,
    /// Slug (`main` for the main worktree, empty for one pwt does not manage).
    pub slug: String,
    /// Root.
    pub path: PathBuf,
    /// Where it is in its life.
    pub state: WorktreeState,
    /// Ports.
    pub ports: Vec<PortInfo>,
    /// `http://<slug>.localhost:<proxy port>`.
    pub url: Option<String>,
    /// What a teardown left.
    pub leftover: Vec<String>,
    /// PostgreSQL database.
    pub database: Option<String>,
    /// RabbitMQ vhost.
    pub vhost: Option<String>,
    /// Redis key prefix (prefix mode).
    pub redis_prefix: Option<String>,
    /// Redis DB index (db mode).
    pub redis_db: Option<u16>,
    /// The processes `pwt dev` started there, with what each does now.
    pub processes: Vec<(crate::dev::DevProcess, crate::dev::ProcessState)>,
    /// Its Compose project's containers (with `[docker]`).
    pub containers: Vec<crate::docker::Container>,
    /// What its processes use ([`measure_usage`]; `None`: not measured).
    pub usage: Option<crate::usage::Usage>,
    /// Post-create hooks failed and were kept (`--keep-on-failure`): `pwt up` runs them.
    pub hooks_pending: bool,
    /// Repository common dir.
    pub repo: PathBuf,
}

impl Project {
    /// The main worktree, the leased ones, and those git knows that pwt does not manage.
    /// With `probe`, each port is tried for a listener.
    pub fn list(&self, probe: bool) -> Result<Vec<WorktreeInfo>> {
        let state = self.state()?;
        let repo = &self.repo.common_dir;
        let worktrees = self.repo.worktrees()?;
        let mut rows = Vec::new();
        if let Some(main) = worktrees.iter().find(|w| w.is_main) {
            rows.push(self.main_info(main.branch.clone(), main.root.clone(), probe));
        }
        // Each where git shows its branch (a worktree moved and not yet followed).
        let mut leases: Vec<_> = state
            .of_repo(repo)
            .map(|l| self.located(l, &worktrees))
            .collect();
        leases.sort_by(|a, b| a.branch.cmp(&b.branch));
        // One call to the engine for every worktree's containers.
        let containers = self
            .docker()
            .and_then(|d| {
                d.containers(&[format!("label={}", crate::docker::PROJECT_LABEL)])
                    .ok()
            })
            .unwrap_or_default();
        for l in &leases {
            let mut info = lease_info(&self.config, l, probe);
            info.processes = self.dev_processes(l.slug.as_str());
            if let Some(project) = self.compose_project(l).filter(|_| !containers.is_empty()) {
                info.containers = containers
                    .iter()
                    .filter(|c| c.project.as_deref() == Some(project.as_str()))
                    .filter(|c| {
                        c.working_dir
                            .as_deref()
                            .is_some_and(|w| w.starts_with(&l.path))
                    })
                    .cloned()
                    .collect();
            }
            rows.push(info);
        }
        for w in worktrees.iter().filter(|w| !w.is_main) {
            if leases.iter().any(|l| l.path == w.root) {
                continue;
            }
            rows.push(WorktreeInfo {
                branch: w.branch.clone().unwrap_or_else(|| "(detached)".into()),
                slug: String::new(),
                path: w.root.clone(),
                state: if w.exists {
                    WorktreeState::Unmanaged
                } else {
                    WorktreeState::Prunable
                },
                ports: vec![],
                url: None,
                leftover: vec![],
                repo: repo.clone(),
                database: None,
                vhost: None,
                redis_prefix: None,
                redis_db: None,
                processes: Vec::new(),
                containers: Vec::new(),
                usage: None,
                hooks_pending: false,
            });
        }
        Ok(rows)
    }

    /// The main worktree: its `main` ports and the defaults, as `pwt env` gives them.
    fn main_info(&self, branch: Option<String>, root: PathBuf, probe: bool) -> WorktreeInfo {
        let c = &self.config;
        let redis = c.redis.as_ref();
        WorktreeInfo {
            branch: branch.unwrap_or_else(|| "(detached)".into()),
            slug: MAIN_SLUG.into(),
            path: root,
            state: WorktreeState::Main,
            ports: c
                .services()
                .into_iter()
                .filter_map(|(name, s)| {
                    s.main.map(|port| PortInfo {
                        name,
                        env: s.env,
                        port,
                        listening: probe.then(|| listening(port)),
                    })
                })
                .collect(),
            url: Some(format!(
                "{}://localhost:{}",
                c.proxy.scheme(),
                c.proxy_port()
            )),
            leftover: vec![],
            repo: self.repo.common_dir.clone(),
            database: c.postgres.as_ref().map(|pg| {
                pg.main_database
                    .clone()
                    .unwrap_or_else(|| self.project_name())
            }),
            vhost: c.rabbitmq.as_ref().map(|_| "/".to_owned()),
            redis_prefix: redis
                .filter(|r| r.mode == RedisMode::Prefix)
                .map(|_| String::new()),
            redis_db: redis
                .filter(|r| r.mode == RedisMode::Db)
                .map(|r| main_redis_db(&r.url)),
            processes: self.dev_processes(MAIN_SLUG),
            containers: Vec::new(),
            usage: None,
            hooks_pending: false,
        }
    }
}

/// Every lease on the machine (of every repository), each shown with its repository's
/// configuration as `config_of` gives it (the defaults for one that is gone).
/// Every lease of the registry in `state_dir`, of every repository, each shown with its
/// repository's configuration (loaded from `sources` with that repository's worktrees as
/// the roots; the defaults when it cannot be).
pub fn list_all(
    state_dir: &std::path::Path,
    sources: &crate::config::ConfigSources,
) -> Result<Vec<WorktreeInfo>> {
    let config_of = |repo: &std::path::Path| {
        let roots = crate::project::config_roots(repo).ok()?;
        let sources = crate::config::ConfigSources {
            roots,
            ..sources.clone()
        };
        crate::config::LoadedConfig::load(&sources)
            .ok()
            .map(|l| l.config)
    };
    let state = pwt_alloc::Registry::open(state_dir, Default::default())?.read()?;
    let mut leases: Vec<_> = state.leases.iter().collect();
    leases.sort_by(|a, b| (&a.repo, &a.branch).cmp(&(&b.repo, &b.branch)));
    let mut configs: std::collections::BTreeMap<&std::path::Path, Config> = Default::default();
    for l in &leases {
        configs
            .entry(l.repo.as_path())
            .or_insert_with(|| config_of(&l.repo).unwrap_or_default());
    }
    Ok(leases
        .into_iter()
        .map(|l| {
            let mut info = lease_info(&configs[l.repo.as_path()], l, true);
            info.processes = crate::dev::Records::at(state_dir, &l.repo).of(l.slug.as_str());
            info
        })
        .collect())
}

/// The DB index a Redis URL selects (`redis://host/2` → 2), 0 when none: the main worktree's.
pub fn main_redis_db(url: &str) -> u16 {
    pwt_core::url_path(url)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// Info of a lease, given the configuration that names its ports.
pub fn lease_info(config: &Config, lease: &Lease, probe: bool) -> WorktreeInfo {
    let services = config.services();
    WorktreeInfo {
        branch: lease.branch.to_string(),
        slug: lease.slug.to_string(),
        path: lease.path.clone(),
        state: match (lease.path.exists(), lease.state) {
            (false, _) => WorktreeState::Missing,
            (true, pwt_alloc::LeaseState::Ready) => WorktreeState::Ready,
            (true, pwt_alloc::LeaseState::Creating) => WorktreeState::Creating,
            (true, pwt_alloc::LeaseState::Removing) => WorktreeState::Removing,
        },
        ports: lease
            .ports
            .iter()
            .map(|(name, port)| PortInfo {
                name: name.clone(),
                env: services
                    .get(name)
                    .map(|s| s.env.clone())
                    .unwrap_or_default(),
                port: *port,
                listening: probe.then(|| listening(*port)),
            })
            .collect(),
        url: Some(format!(
            "{}://{}.localhost:{}",
            config.proxy.scheme(),
            lease.slug,
            config.proxy_port()
        )),
        leftover: lease
            .leftover
            .iter()
            .map(|l| l.as_str().to_owned())
            .collect(),
        repo: lease.repo.clone(),
        database: lease.resources.database.as_ref().map(ToString::to_string),
        vhost: lease.resources.vhost.as_ref().map(ToString::to_string),
        redis_prefix: lease.resources.redis_prefix().map(ToString::to_string),
        redis_db: lease.resources.redis_db(),
        processes: Vec::new(),
        containers: Vec::new(),
        usage: None,
        hooks_pending: lease.pending_hooks,
    }
}

/// True when something accepts connections on `port` at 127.0.0.1 or ::1.
pub fn listening(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    let t = Duration::from_millis(200);
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), t).is_ok()
        || TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), t).is_ok()
}

/// Measures what each of `rows` uses (one pass over `/proc` for all): its `pwt dev` groups,
/// what works in it, what listens on its ports, and their descendants.
pub fn measure_usage(rows: &mut [WorktreeInfo]) {
    let claims: Vec<crate::usage::Claim> = rows
        .iter()
        .map(|r| crate::usage::Claim {
            root: r.path.clone(),
            ports: r.ports.iter().map(|p| p.port).collect(),
            groups: r
                .processes
                .iter()
                .filter(|(_, s)| *s == crate::dev::ProcessState::Running)
                .map(|(p, _)| p.pid)
                .collect(),
        })
        .collect();
    let mut measured = crate::usage::measure(&claims);
    for r in rows {
        r.usage = measured.remove(&r.path);
    }
}

/// One worktree's reading in `pwt top --format json`.
#[derive(Clone, Debug, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reading {
    /// Its branch.
    pub branch: String,
    /// Its slug.
    pub slug: String,
    /// Its root.
    pub path: String,
    /// Its repository (git's common directory).
    pub repo: String,
    /// Percent of one CPU since the previous reading (`null` on the first).
    pub cpu_percent: Option<f64>,
    /// What it uses now.
    pub usage: crate::usage::Usage,
}

/// One refresh of `pwt top --format json` (one line each).
#[derive(Clone, Debug, serde::Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TopOut {
    /// Each worktree, the busiest first.
    pub worktrees: Vec<Reading>,
}

/// Readings over time: CPU rates from the difference between two.
#[derive(Debug, Default)]
pub struct Rates {
    before: std::collections::HashMap<u32, u64>,
    at: Option<std::time::Instant>,
}

impl Rates {
    /// Reads `rows` (measured by [`measure_usage`]): each worktree's CPU since the
    /// previous call (processes new since then count from the next one on), the busiest
    /// first, then the biggest.
    pub fn read(&mut self, rows: &[WorktreeInfo]) -> TopOut {
        let now = std::time::Instant::now();
        let elapsed_ms = self
            .at
            .map(|t| now.duration_since(t).as_secs_f64() * 1000.0)
            .filter(|e| *e > 0.0);
        let tick_ms = 1000.0 / pwt_alloc::proc::ticks_per_second().max(1) as f64;
        let mut worktrees: Vec<Reading> = rows
            .iter()
            .map(|r| {
                let usage = r.usage.clone().unwrap_or_default();
                let cpu_percent = elapsed_ms.map(|e| {
                    let ticks: u64 = usage
                        .each
                        .iter()
                        .filter_map(|p| Some(p.cpu_ticks.saturating_sub(*self.before.get(&p.pid)?)))
                        .sum();
                    ticks as f64 * tick_ms * 100.0 / e
                });
                Reading {
                    branch: r.branch.clone(),
                    slug: r.slug.clone(),
                    path: r.path.to_string_lossy().into_owned(),
                    repo: r.repo.to_string_lossy().into_owned(),
                    cpu_percent,
                    usage,
                }
            })
            .collect();
        worktrees.sort_by(|a, b| {
            b.cpu_percent
                .unwrap_or(0.0)
                .total_cmp(&a.cpu_percent.unwrap_or(0.0))
                .then(b.usage.memory_bytes.cmp(&a.usage.memory_bytes))
        });
        self.before = rows
            .iter()
            .filter_map(|r| r.usage.as_ref())
            .flat_map(|u| u.each.iter().map(|p| (p.pid, p.cpu_ticks)))
            .collect();
        self.at = Some(now);
        TopOut { worktrees }
    }
}
