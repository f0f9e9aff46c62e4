//! The configured shared services, and what a worktree gets from them: provisioning (all
//! three at once), rollback of what one run created, and teardown.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use pwt_alloc::Lease;
use pwt_core::config::RedisMode;
use pwt_core::{Config, DbName, RedisPrefix, ResourceNames, Vhost, owner_marker};
use pwt_provision::{Outcome, Postgres, ProvisionError, RabbitMq, Redis, Service};

use crate::output;

/// A URL with its password hidden.
pub fn redacted(url: &str) -> String {
    pwt_provision::redact(url)
}

/// Keys of `Lease::resources`.
pub const DATABASE: &str = "database";
/// Keys of `Lease::resources`.
pub const VHOST: &str = "vhost";
/// Keys of `Lease::resources`.
pub const REDIS_PREFIX: &str = "redis_prefix";

/// Clients of the configured services.
pub struct Services {
    /// PostgreSQL and the database new ones are cloned from (`clone_from_main`).
    pub postgres: Option<(Postgres, Option<DbName>)>,
    /// RabbitMQ.
    pub rabbitmq: Option<RabbitMq>,
    /// Redis and its mode.
    pub redis: Option<(Redis, RedisMode, u16)>,
}

/// A runtime for the async libraries: one thread, made only when a command talks to a
/// service (it costs well under a millisecond).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime always builds")
}

impl Services {
    /// The services `config` turns on.
    pub fn new(config: &Config, project: &str) -> Result<Self> {
        let postgres = match &config.postgres {
            Some(pg) => {
                let template =
                    if pg.clone_from_main {
                        let main = pg
                            .main_database
                            .clone()
                            .unwrap_or_else(|| project.to_owned());
                        Some(DbName::parse(&main).map_err(|e| {
                            anyhow!("invalid value for `postgres.main_database`: {e}")
                        })?)
                    } else {
                        None
                    };
                Some((Postgres::new(&pg.url)?, template))
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
        Ok(Self {
            postgres,
            rabbitmq,
            redis,
        })
    }

    /// True when any service is configured.
    pub fn any(&self) -> bool {
        self.postgres.is_some() || self.rabbitmq.is_some() || self.redis.is_some()
    }

    /// True when Redis runs in DB-index mode.
    pub fn redis_db_mode(&self) -> bool {
        matches!(self.redis, Some((_, RedisMode::Db, _)))
    }

    /// What a new lease gets from Redis in `db` mode: an index among `CONFIG GET databases`
    /// (or the configured fallback), or, on a Redis Cluster (DB 0 only), a key prefix
    /// instead. The one network call made before the registry lock.
    pub async fn redis_plan(&self) -> Result<RedisPlan> {
        let Some((redis, RedisMode::Db, fallback)) = &self.redis else {
            return Ok(RedisPlan::AsConfigured);
        };
        let status = redis.status().await?;
        if status.cluster {
            output::warn(&format!(
                "Redis at {} is a cluster, which has DB 0 only: using a key prefix instead of a DB index (set `redis.mode = \"prefix\"` to say so)",
                redis.display_url()
            ));
            return Ok(RedisPlan::ClusterPrefix);
        }
        Ok(RedisPlan::Db(status.databases.unwrap_or(*fallback)))
    }

    /// The services of a session, a runtime when any is configured, and the Redis plan for
    /// a new lease: what `new` and `up` need before taking the registry lock.
    pub fn prepare(
        session: &crate::session::Session,
    ) -> Result<(Self, Option<tokio::runtime::Runtime>, RedisPlan)> {
        let services = Self::new(session.config(), &session.project())?;
        let rt = services.any().then(runtime);
        let plan = match &rt {
            // The one network call allowed before the lock: the Redis DB count, or a cluster.
            Some(rt) if services.redis_db_mode() => rt.block_on(services.redis_plan())?,
            _ => RedisPlan::AsConfigured,
        };
        Ok((services, rt, plan))
    }
}

/// How a new lease isolates its Redis data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisPlan {
    /// Prefix mode, or no Redis: nothing to decide.
    AsConfigured,
    /// `db` mode: lease an index below this DB count.
    Db(u16),
    /// `db` mode on a Redis Cluster: a key prefix instead.
    ClusterPrefix,
}

/// A lease's resources, parsed back from the registry.
pub fn lease_names(lease: &Lease) -> ResourceNames {
    ResourceNames {
        database: lease
            .resources
            .get(DATABASE)
            .and_then(|n| DbName::parse(n).ok()),
        vhost: lease
            .resources
            .get(VHOST)
            .and_then(|n| Vhost::parse(n).ok()),
        redis_prefix: lease
            .resources
            .get(REDIS_PREFIX)
            .and_then(|n| RedisPrefix::parse(n).ok()),
    }
}

/// The marker of a lease's resources.
pub fn lease_marker(lease: &Lease) -> String {
    owner_marker(&lease.repo.to_string_lossy(), lease.slug.as_str())
}

/// One service's result.
pub struct Step {
    /// Which service.
    pub service: Service,
    /// The resource, for messages (`database "demo_x"`).
    pub what: String,
    /// What happened.
    pub result: Result<Outcome, ProvisionError>,
}

/// The first failed step and its error.
pub fn first_error(steps: &[Step]) -> Option<(&Step, &ProvisionError)> {
    steps
        .iter()
        .find_map(|s| s.result.as_ref().err().map(|e| (s, e)))
}

/// Runs `fut` while printing, after a second, which steps are still running (every second).
pub async fn with_progress<T>(labels: Vec<String>, quiet: bool, fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    tokio::pin!(fut);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                if !quiet {
                    output::note(&format!("… {} ({} s)", labels.join(", "), start.elapsed().as_secs()));
                }
            }
        }
    }
}

/// Creates the lease's database, vhost and Redis slot at once. Each step's outcome is
/// returned, failures included, so the caller can roll back exactly what this run created.
pub async fn provision(services: &Services, lease: &Lease) -> Vec<Step> {
    let names = lease_names(lease);
    let marker = lease_marker(lease);
    let pg = async {
        match (&services.postgres, &names.database) {
            (Some((pg, template)), Some(db)) => Some(Step {
                service: Service::Postgres,
                what: format!("database {:?}", db.as_str()),
                result: pg.create(db, template.as_ref(), &marker).await,
            }),
            _ => None,
        }
    };
    let mq = async {
        match (&services.rabbitmq, &names.vhost) {
            (Some(mq), Some(vhost)) => {
                let mut result = mq.create(vhost, &marker).await;
                if result.is_ok()
                    && let Err(e) = mq.verify(vhost).await
                {
                    if result.as_ref().is_ok_and(|o| *o == Outcome::Created) {
                        let _ = mq.delete(vhost, &marker).await;
                    }
                    result = Err(e);
                }
                Some(Step {
                    service: Service::RabbitMq,
                    what: format!("vhost {:?}", vhost.as_str()),
                    result,
                })
            }
            _ => None,
        }
    };
    let rd = async {
        match (&services.redis, &names.redis_prefix, lease.redis_db) {
            (Some((redis, _, _)), Some(prefix), _) => Some(Step {
                service: Service::Redis,
                what: format!("key prefix {:?}", prefix.as_str()),
                result: redis.claim_prefix(prefix, &marker).await,
            }),
            (Some((redis, _, _)), None, Some(index)) => Some(Step {
                service: Service::Redis,
                what: format!("DB {index}"),
                result: redis.claim_db(index, &marker).await,
            }),
            _ => None,
        }
    };
    let (a, b, c) = tokio::join!(pg, mq, rd);
    [a, b, c].into_iter().flatten().collect()
}

/// Removes the lease's resources (each only if its marker matches), all at once. With
/// `only`, just those services.
pub async fn teardown(services: &Services, lease: &Lease, only: Option<&[Service]>) -> Vec<Step> {
    let names = lease_names(lease);
    let marker = lease_marker(lease);
    let wanted = |s: Service| only.is_none_or(|o| o.contains(&s));
    let pg = async {
        match (&services.postgres, &names.database) {
            (Some((pg, _)), Some(db)) if wanted(Service::Postgres) => Some(Step {
                service: Service::Postgres,
                what: format!("database {:?}", db.as_str()),
                result: pg.drop(db, &marker).await,
            }),
            _ => None,
        }
    };
    let mq = async {
        match (&services.rabbitmq, &names.vhost) {
            (Some(mq), Some(vhost)) if wanted(Service::RabbitMq) => Some(Step {
                service: Service::RabbitMq,
                what: format!("vhost {:?}", vhost.as_str()),
                result: mq.delete(vhost, &marker).await,
            }),
            _ => None,
        }
    };
    let rd = async {
        if !wanted(Service::Redis) {
            return None;
        }
        match (&services.redis, &names.redis_prefix, lease.redis_db) {
            (Some((redis, _, _)), Some(prefix), _) => Some(Step {
                service: Service::Redis,
                what: format!("key prefix {:?}", prefix.as_str()),
                result: redis.clean_prefix(prefix, &marker).await,
            }),
            (Some((redis, _, _)), None, Some(index)) => Some(Step {
                service: Service::Redis,
                what: format!("DB {index}"),
                result: redis.flush_db(index, &marker).await,
            }),
            _ => None,
        }
    };
    let (a, b, c) = tokio::join!(pg, mq, rd);
    [a, b, c].into_iter().flatten().collect()
}

/// Undoes what `steps` created; returns a line per resource that could not be removed.
pub async fn rollback(services: &Services, lease: &Lease, steps: &[Step]) -> Vec<String> {
    let created: Vec<Service> = steps
        .iter()
        .filter(|s| matches!(s.result, Ok(Outcome::Created)))
        .map(|s| s.service)
        .collect();
    if created.is_empty() {
        return Vec::new();
    }
    teardown(services, lease, Some(&created))
        .await
        .into_iter()
        .filter_map(|s| s.result.err().map(|e| format!("{} ({e})", s.what)))
        .collect()
}

/// The name of a service for the `leftover` list of a lease.
pub fn leftover_name(service: Service) -> &'static str {
    match service {
        Service::Postgres => DATABASE,
        Service::RabbitMq => VHOST,
        Service::Redis => "redis",
    }
}
