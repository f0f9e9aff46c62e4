//! Whether the shared services answer where the configuration says (`pwt infra status`):
//! the repository's service sections, or the defaults when it has none, since the shared
//! services are the machine's, not one repository's.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use pwt_core::Config;

/// One service endpoint, tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceCheck {
    /// `postgres`, `rabbitmq`, `rabbitmq-management` or `redis`.
    pub service: &'static str,
    /// Its URL, password hidden.
    pub url: String,
    /// It accepted a TCP connection within a second.
    pub up: bool,
    /// How to start it.
    pub fix: &'static str,
}

/// Each configured service endpoint (or the defaults), tried.
pub fn service_checks(config: Option<&Config>) -> Vec<ServiceCheck> {
    let defaults = Config {
        postgres: Some(Default::default()),
        rabbitmq: Some(Default::default()),
        redis: Some(Default::default()),
        ..Default::default()
    };
    let config = match config {
        Some(c) if c.postgres.is_some() || c.rabbitmq.is_some() || c.redis.is_some() => c.clone(),
        _ => defaults,
    };
    let mut out = Vec::new();
    let mut push = |service, url: &str, default_port| {
        if let Some((host, port)) = endpoint(url, default_port) {
            out.push(ServiceCheck {
                service,
                url: pwt_provision::redact(url),
                up: reachable(&host, port),
                fix: fix_hint(service),
            });
        }
    };
    if let Some(pg) = &config.postgres {
        push("postgres", &pg.url, 5432);
    }
    if let Some(mq) = &config.rabbitmq {
        push("rabbitmq", &mq.url, 5672);
        push("rabbitmq-management", &mq.management_url, 15672);
    }
    if let Some(r) = &config.redis {
        push("redis", &r.url, 6379);
    }
    out
}

/// host:port of a service URL.
fn endpoint(url: &str, default_port: u16) -> Option<(String, u16)> {
    let u = url::Url::parse(url).ok()?;
    Some((
        u.host_str()?.trim_matches(['[', ']']).to_owned(),
        u.port().unwrap_or(default_port),
    ))
}

fn reachable(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
        })
        .unwrap_or(false)
}

fn fix_hint(service: &str) -> &'static str {
    match service {
        "postgres" => {
            "`pwt infra up`, or natively: `pg_ctlcluster <version> main start` / `brew services start postgresql`"
        }
        "rabbitmq" => "`pwt infra up`, or natively: `rabbitmq-server -detached`",
        "rabbitmq-management" => {
            "`rabbitmq-plugins enable rabbitmq_management` (the Compose image has it)"
        }
        _ => "`pwt infra up`, or natively: `redis-server --daemonize yes`",
    }
}
