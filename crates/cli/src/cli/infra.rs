//! `pwt infra`

use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use pwt::write_atomic;

use super::exit_codes;
use super::output::{Format, Style, note, print_json, print_table};
use super::state_dir;

/// The Compose file for the shared services.
pub const COMPOSE_FILE: &str = include_str!("../infra/compose.yaml");
/// The fixed Compose project name: one set of shared services per machine.
pub const PROJECT: &str = "pwt";

/// Start, stop or check the shared PostgreSQL, RabbitMQ and Redis
///
/// Once per machine, shared by every worktree of every repository.
///
///   pwt infra up               # docker compose -p pwt up -d --wait (healthchecks)
///   pwt infra status           # each configured service: reachable? Compose or native?
///   pwt infra down             # stop; data stays (--volumes deletes it)
///   pwt infra compose          # print the Compose file
///
/// `status` works without Docker too: services installed natively (apt, brew, systemd) are
/// checked the same way, and it says how to start what is missing.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfraArgs {
    #[command(subcommand)]
    pub action: InfraAction,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum InfraAction {
    /// Start the services with Docker Compose and wait until they are healthy.
    Up,
    /// Stop them; data is kept unless --volumes.
    Down {
        /// Also delete the data volumes.
        #[arg(long)]
        volumes: bool,
    },
    /// Check each configured service, wherever it runs.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the Compose file.
    Compose,
}

/// `docker compose` (v2 plugin) or `docker-compose` (v1), whichever works.
fn compose_command() -> Option<Vec<&'static str>> {
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
fn compose_path() -> Result<PathBuf> {
    let path = state_dir()?.join("infra").join("compose.yaml");
    write_atomic(&path, COMPOSE_FILE.as_bytes())?;
    Ok(path)
}

fn compose(args: &[&str]) -> Result<()> {
    let Some(cmd) = compose_command() else {
        bail!(
            "Docker Compose is not installed (neither `docker compose` nor `docker-compose`)\n  hint: install Docker with the Compose plugin, or run PostgreSQL, RabbitMQ and Redis natively; `pwt infra status` checks them either way"
        );
    };
    if !engine_reachable() {
        bail!(
            "no Docker engine answers (`docker info` fails)\n  hint: start Docker, or run the services natively; `pwt infra status` checks them either way"
        );
    }
    let file = compose_path()?;
    let status = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["-p", PROJECT, "-f"])
        .arg(&file)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", cmd.join(" ")))?;
    if !status.success() {
        bail!(
            "`{} -p {PROJECT} -f {} {}` failed ({status})",
            cmd.join(" "),
            file.display(),
            args.join(" ")
        );
    }
    Ok(())
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

/// Compose services of project `pwt` that are running.
fn compose_running() -> Vec<String> {
    let Some(cmd) = compose_command() else {
        return Vec::new();
    };
    if !engine_reachable() {
        return Vec::new();
    }
    let Ok(file) = compose_path() else {
        return Vec::new();
    };
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .args(["-p", PROJECT, "-f"])
        .arg(&file)
        .args(["ps", "--services", "--filter", "status=running"])
        .stderr(Stdio::null())
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

struct Check {
    service: &'static str,
    url: String,
    host: String,
    port: u16,
}

fn checks(config: Option<&pwt::Config>) -> Vec<Check> {
    let defaults = pwt_core::Config {
        postgres: Some(Default::default()),
        rabbitmq: Some(Default::default()),
        redis: Some(Default::default()),
        ..Default::default()
    };
    // Without service sections in this repository, check the defaults: `infra` is about the
    // machine, not one repository.
    let config = match config {
        Some(c) if c.postgres.is_some() || c.rabbitmq.is_some() || c.redis.is_some() => c.clone(),
        _ => defaults,
    };
    let mut out = Vec::new();
    let mut push = |service, url: String, default_port| {
        if let Some((host, port)) = endpoint(&url, default_port) {
            out.push(Check {
                service,
                url: pwt_provision::redact(&url),
                host,
                port,
            });
        }
    };
    if let Some(pg) = &config.postgres {
        push("postgres", pg.url.clone(), 5432);
    }
    if let Some(mq) = &config.rabbitmq {
        push("rabbitmq", mq.url.clone(), 5672);
        push("rabbitmq-management", mq.management_url.clone(), 15672);
    }
    if let Some(r) = &config.redis {
        push("redis", r.url.clone(), 6379);
    }
    out
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

pub fn run(cwd: &Path, args: InfraArgs) -> Result<i32> {
    match args.action {
        InfraAction::Compose => {
            print!("{COMPOSE_FILE}");
            Ok(exit_codes::OK)
        }
        InfraAction::Up => up(),
        InfraAction::Down { volumes } => {
            let mut a = vec!["down"];
            if volumes {
                a.push("--volumes");
            }
            compose(&a)?;
            println!(
                "stopped{}",
                if volumes {
                    "; data volumes deleted"
                } else {
                    "; data kept (--volumes deletes it)"
                }
            );
            Ok(exit_codes::OK)
        }
        InfraAction::Status { format } => status(cwd, format),
    }
}

fn up() -> Result<i32> {
    note("starting PostgreSQL, RabbitMQ and Redis (Compose project \"pwt\") ...");
    let v2 = compose_command().is_some_and(|c| c.len() == 2);
    if v2 {
        compose(&["up", "-d", "--wait"])?;
    } else {
        // Compose v1 has no --wait: poll the published ports instead.
        compose(&["up", "-d"])?;
        let deadline = Instant::now() + Duration::from_secs(180);
        for c in checks(None) {
            while !reachable(&c.host, c.port) {
                if Instant::now() > deadline {
                    bail!(
                        "{} did not come up on {}:{} within 3 minutes",
                        c.service,
                        c.host,
                        c.port
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    println!(
        "{} shared services are up (`pwt infra status` shows them)",
        Style::stdout().green("✓")
    );
    Ok(exit_codes::OK)
}

fn status(cwd: &Path, format: Format) -> Result<i32> {
    let opened = super::open(cwd, false).ok();
    let in_compose = compose_running();
    let rows: Vec<_> = checks(opened.as_ref().map(|o| o.project.config()))
        .into_iter()
        .map(|c| {
            let up = reachable(&c.host, c.port);
            let base = c.service.trim_end_matches("-management");
            let runs = if !up {
                "-"
            } else if in_compose.iter().any(|s| s == base) {
                "compose"
            } else {
                "native"
            };
            (c, up, runs)
        })
        .collect();
    let all_up = rows.iter().all(|(_, up, _)| *up);
    if format == Format::Json {
        let items: Vec<_> = rows
            .iter()
            .map(|(c, up, runs)| json!({ "service": c.service, "url": c.url, "reachable": up, "runs_in": runs, "hint": (!up).then(|| fix_hint(c.service)) }))
            .collect();
        print_json(&json!({ "services": items }));
    } else {
        let style = Style::stdout();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(c, up, runs)| {
                let state = if *up {
                    style.green("up")
                } else {
                    style.red("down")
                };
                let fix = if *up { "" } else { fix_hint(c.service) };
                vec![
                    c.service.to_owned(),
                    c.url.clone(),
                    state,
                    (*runs).to_owned(),
                    fix.to_owned(),
                ]
            })
            .collect();
        print_table(
            style,
            &["SERVICE", "URL", "STATE", "RUNS IN", "FIX"],
            &table,
        );
    }
    Ok(if all_up {
        exit_codes::OK
    } else {
        exit_codes::FAILURE
    })
}
