//! Whether the shared services answer where the configuration says (`pwt infra status`):
//! the repository's service sections, or the defaults when it has none, since the shared
//! services are the machine's, not one repository's.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pwt_core::Config;

use crate::env_files::write_atomic;
use crate::error::{Error, ErrorKind, Result};

/// The Compose file for the shared services.
pub const COMPOSE_FILE: &str = include_str!("infra/compose.yaml");
/// The fixed Compose project name: one set of shared services per machine.
pub const COMPOSE_PROJECT: &str = "pwt";

/// `docker compose` (v2 plugin) or `docker-compose` (v1), whichever works.
pub fn compose_command() -> Option<Vec<&'static str>> {
    let works = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// True when a Docker engine answers.
pub fn engine_reachable() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Writes the Compose file into the state directory and returns its path.
fn compose_path(state_dir: &Path) -> Result<PathBuf> {
    let path = state_dir.join("infra").join("compose.yaml");
    write_atomic(&path, COMPOSE_FILE.as_bytes())?;
    Ok(path)
}

/// Runs `docker compose -p pwt -f <the file> ARGS`, its output the caller's.
pub fn compose(state_dir: &Path, args: &[&str]) -> Result<()> {
    let Some(cmd) = compose_command() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            "Docker Compose is not installed (neither `docker compose` nor `docker-compose`)",
        )
        .hint("install Docker with the Compose plugin, or run PostgreSQL, RabbitMQ and Redis natively; `pwt infra status` checks them either way"));
    };
    if !engine_reachable() {
        return Err(Error::new(
            ErrorKind::Service,
            "no Docker engine answers (`docker info` fails)",
        )
        .hint(
            "start Docker, or run the services natively; `pwt infra status` checks them either way",
        ));
    }
    let file = compose_path(state_dir)?;
    let status = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["-p", COMPOSE_PROJECT, "-f"])
        .arg(&file)
        .args(args)
        .status()
        .map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot run {}", cmd.join(" "))).caused_by(e)
        })?;
    if !status.success() {
        return Err(Error::new(
            ErrorKind::Service,
            format!(
                "`{} -p {COMPOSE_PROJECT} -f {} {}` failed ({status})",
                cmd.join(" "),
                file.display(),
                args.join(" ")
            ),
        ));
    }
    Ok(())
}

/// Compose services of project `pwt` that are running.
pub fn compose_running(state_dir: &Path) -> Vec<String> {
    let Some(cmd) = compose_command() else {
        return Vec::new();
    };
    if !engine_reachable() {
        return Vec::new();
    }
    let Ok(file) = compose_path(state_dir) else {
        return Vec::new();
    };
    Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["-p", COMPOSE_PROJECT, "-f"])
        .arg(&file)
        .args(["ps", "--services", "--filter", "status=running"])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

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
