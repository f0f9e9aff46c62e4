//! The configured shared services and what a worktree gets from them: what is at its names
//! now ([`Services::probe`]), provisioning all three at once, and dropping them again, each
//! only with the worktree's marker.

use std::future::Future;
use std::time::{Duration, Instant};

use pwt_core::config::RedisMode;
use pwt_core::{DbName, RedisPrefix, RedisSlot, ResourceKind, Resources};
use pwt_provision::{Marked, Outcome, Postgres, Presence, ProvisionError, RabbitMq, Redis};

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Released, Reporter};
use crate::project::Project;

/// Clients of the configured services.
pub(crate) struct Services {
    /// PostgreSQL and the database new ones are cloned from (`clone_from_main`).
    pub postgres: Option<(Postgres, Option<DbName>)>,
    /// RabbitMQ.
    pub rabbitmq: Option<RabbitMq>,
    /// Redis, its mode and the DB count to assume when `CONFIG GET` is not allowed.
    pub redis: Option<(Redis, RedisMode, u16)>,
    rt: Option<tokio::runtime::Runtime>,
    machine: Option<std::path::PathBuf>,
    /// `postgres.test_databases`, and the main worktree's database they never touch.
    test_databases: (Vec<String>, String),
    /// The main worktree's Redis DB index (redis.url's): never flushed.
    main_redis_db: u16,
}

/// How a new lease isolates its Redis data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedisPlan {
    /// Prefix mode, or no Redis: nothing to decide.
    AsConfigured,
    /// `db` mode: lease an index below this DB count.
    Db(u16),
    /// `db` mode on a Redis Cluster: a key prefix instead.
    ClusterPrefix,
}

/// One service's result.
pub(crate) struct Provisioned {
    /// Which resource.
    pub kind: ResourceKind,
    /// The resource, for messages (`database "demo_x"`).
    pub what: String,
    /// The resource as a teardown reports it gone; `None` for a step about none in
    /// particular (listing the test databases).
    pub released: Option<Released>,
    /// What happened.
    pub result: Result<Outcome, ProvisionError>,
}

impl Services {
    /// The services the project's configuration turns on, with a one-thread runtime when
    /// any is (it costs well under a millisecond).
    pub fn new(project: &Project) -> Result<Self> {
        let config = project.config();
        let pause = project.options.faults.provision_pause();
        let postgres = match &config.postgres {
            Some(pg) => {
                let template = if pg.clone_from_main {
                    let main = pg
                        .main_database
                        .clone()
                        .unwrap_or_else(|| project.project_name());
                    Some(DbName::parse(&main).map_err(|e| {
                        Error::new(
                            ErrorKind::Config,
                            "invalid value for `postgres.main_database`",
                        )
                        .caused_by(e)
                    })?)
                } else {
                    None
                };
                Some((Postgres::new(&pg.url)?.with_pause(pause), template))
            }
            None => None,
        };
        let rabbitmq = match &config.rabbitmq {
            Some(mq) => Some(RabbitMq::new(&mq.url, &mq.management_url)?),
            None => None,
        };
        let redis = config
            .redis
            .as_ref()
            .map(|r| (Redis::new(&r.url), r.mode, r.databases));
        let any = postgres.is_some() || rabbitmq.is_some() || redis.is_some();
        Ok(Self {
            postgres,
            rabbitmq,
            redis,
            machine: project.options.machine_dir.clone(),
            main_redis_db: config
                .redis
                .as_ref()
                .map_or(0, |r| crate::info::main_redis_db(&r.url)),
            test_databases: (
                config
                    .postgres
                    .as_ref()
                    .map(|p| p.test_databases.clone())
                    .unwrap_or_default(),
                config
                    .postgres
                    .as_ref()
                    .and_then(|p| p.main_database.clone())
                    .unwrap_or_else(|| project.project_name()),
            ),
            rt: any.then(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime always builds")
            }),
        })
    }

    /// Where the service of `kind` is (password hidden), for messages.
    pub fn url_of(&self, kind: ResourceKind) -> String {
        let url = match kind {
            ResourceKind::Database => self.postgres.as_ref().map(|(p, _)| p.display_url()),
            ResourceKind::Vhost => self.rabbitmq.as_ref().map(RabbitMq::display_url),
            ResourceKind::Redis => self.redis.as_ref().map(|(r, _, _)| r.display_url()),
        };
        url.unwrap_or_default()
    }

    /// True when any service is configured.
    pub fn any(&self) -> bool {
        self.rt.is_some()
    }

    /// Runs `fut` on the services' runtime.
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        self.rt.as_ref().map(|rt| rt.block_on(fut))
    }

    /// What a new lease gets from Redis in `db` mode: an index among `CONFIG GET databases`
    /// (or the configured fallback), or, on a Redis Cluster (DB 0 only), a key prefix. The one
    /// network call made before the registry lock.
    pub fn redis_plan(&self, reporter: &mut dyn Reporter) -> Result<RedisPlan> {
        let Some((redis, RedisMode::Db, fallback)) = &self.redis else {
            return Ok(RedisPlan::AsConfigured);
        };
        let status = self
            .block_on(redis.status())
            .expect("Redis is configured, so there is a runtime")?;
        if status.cluster {
            reporter.report(Event::Warning(format!(
                "Redis at {} is a cluster, which has DB 0 only: using a key prefix instead of a DB index (set `redis.mode = \"prefix\"` to say so)",
                redis.display_url()
            )));
            return Ok(RedisPlan::ClusterPrefix);
        }
        Ok(RedisPlan::Db(status.databases.unwrap_or(*fallback)))
    }

    /// What is at each of `resources` right now, by kind.
    pub async fn probe(
        &self,
        resources: &Resources,
    ) -> Vec<(ResourceKind, Result<Presence, ProvisionError>)> {
        let pg = async {
            match (&self.postgres, &resources.database) {
                (Some((pg, _)), Some(db)) => Some((ResourceKind::Database, pg.presence(db).await)),
                _ => None,
            }
        };
        let mq = async {
            match (&self.rabbitmq, &resources.vhost) {
                (Some(mq), Some(v)) => Some((ResourceKind::Vhost, mq.presence(v).await)),
                _ => None,
            }
        };
        let rd = async {
            match (&self.redis, &resources.redis) {
                (Some((r, _, _)), Some(RedisSlot::Prefix(p))) => {
                    Some((ResourceKind::Redis, r.prefix_presence(p).await))
                }
                (Some((r, _, _)), Some(RedisSlot::Db(n))) => {
                    Some((ResourceKind::Redis, r.db_presence(*n).await))
                }
                _ => None,
            }
        };
        let (a, b, c) = tokio::join!(pg, mq, rd);
        [a, b, c].into_iter().flatten().collect()
    }

    /// Creates (or finds, with this marker) each of `resources` at once. Every outcome is
    /// returned, failures included, so the caller can undo exactly what this run created.
    pub async fn provision(&self, resources: &Resources, marker: &str) -> Vec<Provisioned> {
        let pg = async {
            let ((pg, template), db) = self.postgres.as_ref().zip(resources.database.as_ref())?;
            Some(step(
                ResourceKind::Database,
                resources,
                pg.create(db, template.as_ref(), marker).await,
            ))
        };
        let mq = async {
            let (mq, vhost) = self.rabbitmq.as_ref().zip(resources.vhost.as_ref())?;
            // The management API has no create-if-absent: pwt processes of this machine take
            // turns on a name (across machines, the team store keeps names apart). Names
            // share one of 64 lock files, so the files stay few: removing a lock file
            // another process may hold would be a race.
            let _turn = self.machine.as_ref().and_then(|d| {
                let name = format!("vhost {} {}", mq.display_url(), vhost.as_str());
                let turn = format!("vhosts {}", pwt_core::stable_hash(name.as_bytes()) % 64);
                pwt_alloc::machine_lock(d, &turn, Duration::from_secs(30)).ok()
            });
            let mut result = mq.create(vhost, marker).await;
            if result.is_ok()
                && let Err(e) = mq.verify(vhost).await
            {
                if result.as_ref().is_ok_and(|o| *o == Outcome::Created) {
                    let _ = mq.delete(vhost, marker).await;
                }
                result = Err(e);
            }
            Some(step(ResourceKind::Vhost, resources, result))
        };
        let rd = async {
            let ((redis, _, _), slot) = self.redis.as_ref().zip(resources.redis.as_ref())?;
            let result = match slot {
                RedisSlot::Prefix(p) => redis.claim_prefix(p, marker).await,
                RedisSlot::Db(n) => redis.claim_db(*n, marker).await,
            };
            Some(step(ResourceKind::Redis, resources, result))
        };
        let (a, b, c) = tokio::join!(pg, mq, rd);
        [a, b, c].into_iter().flatten().collect()
    }

    /// Drops each of `resources` at once, only where it carries `marker`. With
    /// `created_database`, an unmarked database of the name goes too: a set-up recorded it
    /// was creating it (after seeing the name free) and was stopped before marking it. Redis
    /// keys under `spare` (other worktrees' longer prefixes) stay.
    pub async fn drop(
        &self,
        resources: &Resources,
        marker: &str,
        created_database: bool,
        spare: &[RedisPrefix],
    ) -> Vec<Provisioned> {
        let pg = async {
            let ((pg, _), db) = self.postgres.as_ref().zip(resources.database.as_ref())?;
            let result = if created_database {
                pg.drop_created(db, marker).await
            } else {
                pg.drop(db, marker).await
            };
            let mut steps = vec![step(ResourceKind::Database, resources, result)];
            if steps[0].result.is_ok() {
                steps.extend(self.drop_test_databases(pg, db).await);
            }
            Some(steps)
        };
        let mq = async {
            let (mq, vhost) = self.rabbitmq.as_ref().zip(resources.vhost.as_ref())?;
            Some(step(
                ResourceKind::Vhost,
                resources,
                mq.delete(vhost, marker).await,
            ))
        };
        let rd = async {
            let ((redis, _, _), slot) = self.redis.as_ref().zip(resources.redis.as_ref())?;
            let result = match slot {
                RedisSlot::Prefix(p) => redis.clean_prefix(p, marker, spare).await,
                RedisSlot::Db(n) if *n == self.main_redis_db => Err(ProvisionError::Config {
                    service: pwt_provision::Service::Redis,
                    message: format!(
                        "DB {n} is the main worktree's now (redis.url selects it), so it is not flushed: the main worktree's keys are in it too; set redis.url back to finish, or delete the key __pwt_owner__ in DB {n} yourself and run `pwt rm` again (the keys stay)"
                    ),
                }),
                RedisSlot::Db(n) => redis.flush_db(*n, marker).await,
            };
            Some(step(ResourceKind::Redis, resources, result))
        };
        let (a, b, c) = tokio::join!(pg, mq, rd);
        a.into_iter()
            .flatten()
            .chain([b, c].into_iter().flatten())
            .collect()
    }

    /// Makes `db` (only with `marker`) again as a copy of `from`, losing nothing if the copy
    /// cannot be made.
    pub async fn reset_database(
        &self,
        db: &DbName,
        marker: &str,
        from: &DbName,
    ) -> Result<Outcome, ProvisionError> {
        let Some((pg, _)) = &self.postgres else {
            return Ok(Outcome::Absent);
        };
        pg.replace_from(db, from, marker).await
    }

    /// Marks each of `resources` with `marker` (the kept form, say), where it carries the
    /// same owner's.
    pub async fn remark(&self, resources: &Resources, marker: &str) -> Vec<Provisioned> {
        let pg = async {
            let ((pg, _), db) = self.postgres.as_ref().zip(resources.database.as_ref())?;
            Some(step(
                ResourceKind::Database,
                resources,
                pg.remark(db, marker).await,
            ))
        };
        let mq = async {
            let (mq, vhost) = self.rabbitmq.as_ref().zip(resources.vhost.as_ref())?;
            Some(step(
                ResourceKind::Vhost,
                resources,
                mq.remark(vhost, marker).await,
            ))
        };
        let rd = async {
            let ((redis, _, _), slot) = self.redis.as_ref().zip(resources.redis.as_ref())?;
            Some(step(
                ResourceKind::Redis,
                resources,
                redis.remark(slot.prefix(), slot.db(), marker).await,
            ))
        };
        let (a, b, c) = tokio::join!(pg, mq, rd);
        [a, b, c].into_iter().flatten().collect()
    }

    /// The test databases frameworks derived from `db` (`test_<db>`, `test_<db>_<N>`,
    /// `<db>_test`, as `postgres.test_databases` says): they go with it, never the main
    /// worktree's.
    async fn drop_test_databases(&self, pg: &Postgres, db: &DbName) -> Vec<Provisioned> {
        let (patterns, main) = &self.test_databases;
        let names = match pg.database_names().await {
            Ok(n) => n,
            Err(e) => {
                return vec![Provisioned {
                    kind: ResourceKind::Database,
                    what: "its test databases".into(),
                    released: None,
                    result: Err(e),
                }];
            }
        };
        let mut out = Vec::new();
        for name in pwt_core::derived_databases(db.as_str(), patterns, &names, &[main.as_str()]) {
            let Ok(test) = DbName::parse(name) else {
                continue;
            };
            out.push(Provisioned {
                kind: ResourceKind::Database,
                what: format!("test database {name:?}"),
                released: Some(Released::TestDatabase(test.clone())),
                result: pg.drop_derived(&test).await,
            });
        }
        out
    }

    /// Every resource carrying a pwt marker, by kind; a service that cannot be asked is a
    /// problem line instead.
    pub async fn marked(&self) -> (Vec<(ResourceKind, Marked)>, Vec<String>) {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let mut take = |kind, list: Result<Vec<Marked>, ProvisionError>| match list {
            Ok(list) => found.extend(list.into_iter().map(|m| (kind, m))),
            Err(e) => problems.push(format!("cannot look for orphans: {}", chain(&e))),
        };
        if let Some((pg, _)) = &self.postgres {
            take(ResourceKind::Database, pg.marked().await);
        }
        if let Some(mq) = &self.rabbitmq {
            take(ResourceKind::Vhost, mq.marked().await);
        }
        if let Some((redis, _, fallback)) = &self.redis {
            let list = match redis.status().await {
                Ok(s) => redis.marked(s.databases.unwrap_or(*fallback)).await,
                Err(e) => Err(e),
            };
            take(ResourceKind::Redis, list);
        }
        (found, problems)
    }
}

fn step(
    kind: ResourceKind,
    resources: &Resources,
    result: Result<Outcome, ProvisionError>,
) -> Provisioned {
    Provisioned {
        kind,
        what: resources.describe(kind).unwrap_or_default(),
        released: Some(Released::Resource {
            kind,
            resource: resources.only(&[kind]),
        }),
        result,
    }
}

/// A marked resource as the one resource it names (`db 3` is a Redis DB index).
pub(crate) fn resource_of(kind: ResourceKind, name: &str) -> Option<Resources> {
    let mut r = Resources::default();
    match kind {
        ResourceKind::Database => r.database = Some(DbName::parse(name).ok()?),
        ResourceKind::Vhost => r.vhost = Some(pwt_core::Vhost::parse(name).ok()?),
        ResourceKind::Redis => {
            r.redis = Some(match name.strip_prefix("db ").map(str::parse::<u16>) {
                Some(Ok(n)) => RedisSlot::Db(n),
                _ => RedisSlot::Prefix(RedisPrefix::parse(name).ok()?),
            });
        }
    }
    Some(r)
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    for c in crate::error::causes(e.source()) {
        if !out.ends_with(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// Runs `fut`, telling `reporter` once a second after the first which steps still run.
/// Service steps are never abandoned half-way (a `CREATE DATABASE` sent is done by the server
/// whether or not pwt waits), so a cancel takes effect after them.
pub(crate) async fn with_progress<T>(
    what: Vec<String>,
    reporter: &mut dyn Reporter,
    fut: impl Future<Output = T>,
) -> T {
    let start = Instant::now();
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => reporter.report(Event::Waiting {
                what: what.clone(),
                seconds: start.elapsed().as_secs(),
            }),
        }
    }
}

/// The provision crate's name of a resource kind's service.
pub(crate) fn service_of(kind: ResourceKind) -> pwt_provision::Service {
    match kind {
        ResourceKind::Database => pwt_provision::Service::Postgres,
        ResourceKind::Vhost => pwt_provision::Service::RabbitMq,
        ResourceKind::Redis => pwt_provision::Service::Redis,
    }
}

/// The marker of a lease's resources.
pub(crate) fn lease_marker(lease: &pwt_alloc::Lease) -> String {
    lease.marker()
}
