//! The shared services in Docker Compose (`pwt infra`): PostgreSQL, RabbitMQ and Redis,
//! once per machine, publishing the ports of the configured service URLs on 127.0.0.1, on
//! a named network the worktrees' app projects join. "Up" means each service answers its
//! own protocol through its published port (and Docker's healthcheck says healthy), never a
//! mere TCP connect (Docker's port proxy accepts those before the service listens).
//! `status` also checks services installed natively, and tells who runs each.

use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pwt_core::Config;
use pwt_core::config::{PostgresConfig, RabbitmqConfig, RedisConfig};
use serde::Serialize;

use crate::docker::{ComposeCli, Container, Docker, PROJECT_LABEL};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Reporter, Step};
use crate::project::Cancel;
use pwt_alloc::write_atomic;

/// A port a service publishes on 127.0.0.1, and the setting it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// On the host.
    pub host: u16,
    /// In the container.
    pub container: u16,
    /// The setting that names it (`postgres.url`).
    pub setting: &'static str,
}

/// One shared service as `pwt infra` runs it.
#[derive(Clone, Debug)]
pub struct InfraService {
    /// `postgres`, `rabbitmq` or `redis`: its Compose service, and its host name on the
    /// shared network.
    pub name: &'static str,
    /// Its image.
    pub image: String,
    /// What it publishes.
    pub ports: Vec<Published>,
    env: Vec<(&'static str, String)>,
    command: Vec<String>,
    volume: Option<(&'static str, &'static str)>,
    healthcheck: Vec<String>,
    stop_signal: Option<&'static str>,
}

/// Who answers on a service's port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunsIn {
    /// Nothing listens.
    Nothing,
    /// A container of a Compose project.
    Compose {
        /// The project.
        project: String,
        /// The container.
        container: String,
    },
    /// A container started without Compose.
    Docker {
        /// The container.
        container: String,
    },
    /// A process of this machine (or of another user, when `process` is unknown).
    Native {
        /// Its command name and pid, when this user may look.
        process: Option<(String, u32)>,
    },
}

impl std::fmt::Display for RunsIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nothing => f.write_str("-"),
            Self::Compose { project, container } => {
                write!(f, "compose {project} ({container})")
            }
            Self::Docker { container } => write!(f, "docker ({container})"),
            Self::Native {
                process: Some((name, pid)),
            } => write!(f, "native ({name}, pid {pid})"),
            Self::Native { process: None } => f.write_str("native"),
        }
    }
}

/// One service endpoint, tried.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceStatus {
    /// `postgres`, `rabbitmq`, `rabbitmq-management` or `redis`.
    pub service: &'static str,
    /// Its URL, password hidden.
    pub url: String,
    /// It answered its own protocol.
    pub answers: bool,
    /// Who listens on its port.
    pub runs_in: RunsIn,
    /// Why it does not answer, in the service's own words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How to start it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

/// What this project had before an `up`, for its undo.
struct Before {
    /// Services with a container, running or not.
    existed: Vec<String>,
    /// Its named volumes.
    volumes: Vec<String>,
}

/// The shared services of a configuration (its service sections, or the defaults for those
/// it has not: the services are the machine's, not one repository's).
#[derive(Clone, Debug)]
pub struct Infra {
    config: Config,
    state_dir: PathBuf,
    docker: Docker,
    cancel: Cancel,
}

impl Infra {
    /// The services `config` names (or the defaults), with `state_dir` for the Compose file.
    pub fn new(config: Option<&Config>, state_dir: &Path) -> Self {
        let mut config = config.cloned().unwrap_or_default();
        config.postgres.get_or_insert_with(PostgresConfig::default);
        config.rabbitmq.get_or_insert_with(RabbitmqConfig::default);
        config.redis.get_or_insert_with(RedisConfig::default);
        Self {
            config,
            state_dir: state_dir.to_owned(),
            docker: Docker::default(),
            cancel: Cancel::default(),
        }
    }

    /// Stops `up` when `cancel` is set (a Ctrl-C): what the run started is taken down, as
    /// when a service does not come up.
    #[must_use]
    pub fn cancellable(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// The Compose project's name.
    pub fn project(&self) -> &str {
        &self.config.infra.project
    }

    /// The shared network's name.
    pub fn network(&self) -> &str {
        &self.config.infra.network
    }

    /// The three services, as they run.
    pub fn services(&self) -> Vec<InfraService> {
        let c = &self.config;
        let mut out = Vec::new();
        out.extend(c.postgres.as_ref().map(|pg| self.postgres(pg)));
        out.extend(c.rabbitmq.as_ref().map(|mq| self.rabbitmq(mq)));
        out.extend(c.redis.as_ref().map(|r| self.redis(r)));
        out
    }

    /// PostgreSQL: the URL's user, password and database become the container's.
    fn postgres(&self, pg: &PostgresConfig) -> InfraService {
        let infra = &self.config.infra;
        let u = UrlParts::of(&pg.url, 5432);
        let mut env = vec![
            (
                "POSTGRES_USER",
                u.user.clone().unwrap_or_else(|| "postgres".into()),
            ),
            (
                "POSTGRES_DB",
                u.path.clone().unwrap_or_else(|| "postgres".into()),
            ),
        ];
        match &u.password {
            Some(p) => env.push(("POSTGRES_PASSWORD", p.clone())),
            // pwt's default URL has no password: local development on loopback only.
            None => env.push(("POSTGRES_HOST_AUTH_METHOD", "trust".into())),
        }
        let ready = format!(
            "pg_isready -U {} -d {}",
            shell_quote(&env[0].1),
            shell_quote(&env[1].1)
        );
        InfraService {
            name: "postgres",
            image: infra.postgres_image.clone(),
            ports: vec![Published {
                host: u.port,
                container: 5432,
                setting: "postgres.url",
            }],
            env,
            command: Vec::new(),
            volume: Some(("pgdata", "/var/lib/postgresql/data")),
            healthcheck: vec!["CMD-SHELL".into(), ready],
            stop_signal: Some("SIGINT"),
        }
    }

    /// RabbitMQ with its management API: the AMQP URL's user and password are the default user.
    fn rabbitmq(&self, mq: &RabbitmqConfig) -> InfraService {
        let infra = &self.config.infra;
        let u = UrlParts::of(&mq.url, 5672);
        let m = UrlParts::of(&mq.management_url, 15672);
        InfraService {
            name: "rabbitmq",
            image: infra.rabbitmq_image.clone(),
            ports: vec![
                Published {
                    host: u.port,
                    container: 5672,
                    setting: "rabbitmq.url",
                },
                Published {
                    host: m.port,
                    container: 15672,
                    setting: "rabbitmq.management_url",
                },
            ],
            env: vec![
                (
                    "RABBITMQ_DEFAULT_USER",
                    u.user.unwrap_or_else(|| "guest".into()),
                ),
                (
                    "RABBITMQ_DEFAULT_PASS",
                    u.password.unwrap_or_else(|| "guest".into()),
                ),
                // The user may connect from the host through the published ports.
                (
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    "-rabbit loopback_users []".into(),
                ),
            ],
            command: Vec::new(),
            volume: Some(("rabbitmq", "/var/lib/rabbitmq")),
            healthcheck: [
                "CMD",
                "rabbitmq-diagnostics",
                "-q",
                "check_port_connectivity",
            ]
            .map(String::from)
            .to_vec(),
            stop_signal: None,
        }
    }

    /// Redis with enough DB indexes for db mode, and the URL's password, if any.
    fn redis(&self, r: &RedisConfig) -> InfraService {
        let infra = &self.config.infra;
        let u = UrlParts::of(&r.url, 6379);
        let databases = r.databases.max(16).to_string();
        let mut command: Vec<String> = [
            "redis-server",
            "--save",
            "",
            "--appendonly",
            "no",
            "--databases",
            &databases,
        ]
        .map(String::from)
        .to_vec();
        let mut healthcheck = ["CMD", "redis-cli", "ping"].map(String::from).to_vec();
        if let Some(p) = &u.password {
            command.extend(["--requirepass".into(), p.clone()]);
            healthcheck = vec![
                "CMD".into(),
                "redis-cli".into(),
                "-a".into(),
                p.clone(),
                "ping".into(),
            ];
        }
        InfraService {
            name: "redis",
            image: infra.redis_image.clone(),
            ports: vec![Published {
                host: u.port,
                container: 6379,
                setting: "redis.url",
            }],
            env: Vec::new(),
            command,
            volume: None,
            healthcheck,
            stop_signal: None,
        }
    }

    /// The Compose file (the project name is passed with `-p`, so Compose v1 reads it too).
    pub fn compose_file(&self) -> String {
        let mut out = String::from(
            "# Written by pwt (`pwt infra`): the shared services, once per machine, each on\n\
             # 127.0.0.1 at the port of its URL in pwt.toml, on the network app projects join.\n\
             services:\n",
        );
        for s in self.services() {
            out.push_str(&format!("  {}:\n    image: {}\n", s.name, yaml(&s.image)));
            if !s.env.is_empty() {
                out.push_str("    environment:\n");
                for (k, v) in &s.env {
                    out.push_str(&format!("      {k}: {}\n", yaml(v)));
                }
            }
            if !s.command.is_empty() {
                out.push_str(&format!("    command: {}\n", yaml_list(&s.command)));
            }
            out.push_str("    ports:\n");
            for p in &s.ports {
                out.push_str(&format!(
                    "      - \"127.0.0.1:{}:{}\"\n",
                    p.host, p.container
                ));
            }
            match s.volume {
                Some((name, at)) => {
                    out.push_str(&format!("    volumes:\n      - \"{name}:{at}\"\n"));
                }
                // Its image's data volume would be left behind by every `down`: it keeps
                // nothing (`--save ""`), so memory will do.
                None => out.push_str("    tmpfs:\n      - /data\n"),
            }
            out.push_str(&format!(
                "    healthcheck:\n      test: {}\n      interval: 1s\n      timeout: 5s\n      retries: 180\n",
                yaml_list(&s.healthcheck)
            ));
            if let Some(sig) = s.stop_signal {
                out.push_str(&format!("    stop_signal: {sig}\n"));
            }
            out.push_str("    labels:\n      pwt.infra: \"shared service\"\n");
            out.push_str("    restart: unless-stopped\n");
        }
        out.push_str(&format!(
            "networks:\n  default:\n    name: {}\n    external: true\nvolumes:\n  pgdata: {{}}\n  rabbitmq: {{}}\n",
            yaml(self.network())
        ));
        out
    }

    /// Writes the Compose file into the state directory and returns its path.
    fn write_compose_file(&self) -> Result<PathBuf> {
        let path = self.state_dir.join("infra").join("compose.yaml");
        write_atomic(&path, self.compose_file().as_bytes())?;
        Ok(path)
    }

    /// This state directory's turn at the services (a lock held until dropped).
    fn turn(&self) -> Result<pwt_alloc::LockGuard> {
        let dir = self.state_dir.join("infra");
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot create {}", dir.display())).caused_by(e)
        })?;
        let wait = Duration::from_secs(self.config.infra.timeout + 60);
        Ok(pwt_alloc::LockGuard::acquire(
            &dir.join("infra.lock"),
            wait,
        )?)
    }

    /// Refuses when the Compose project is another's: containers of its name that Compose
    /// ran from another directory than pwt's (another tool, or another user's pwt).
    fn refuse_foreign(&self, ours: &[Container]) -> Result<()> {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let dir = canonical(&self.state_dir.join("infra"));
        let foreign: Vec<String> = ours
            .iter()
            .filter(|c| {
                c.working_dir
                    .as_deref()
                    .is_some_and(|d| canonical(d) != dir)
            })
            .map(|c| {
                format!(
                    "{} (from {})",
                    c.name,
                    c.working_dir.as_deref().unwrap_or(Path::new("?")).display()
                )
            })
            .collect();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the Compose project {:?} is someone else's: {}; nothing was changed",
                self.project(),
                foreign.join(", ")
            ),
        )
        .hint(
            "set `[infra] project` to another name in pwt.toml, or take that project down yourself",
        ))
    }

    /// Compose, and an engine that answers; or why not.
    fn compose(&self) -> Result<ComposeCli> {
        let Some(cli) = ComposeCli::find() else {
            return Err(Error::new(
                ErrorKind::NotFound,
                "Docker Compose is not installed (neither `docker compose` nor `docker-compose`)",
            )
            .hint("install Docker with Compose, or run PostgreSQL, RabbitMQ and Redis natively; `pwt infra status` checks them either way"));
        };
        if !self.docker.reachable() {
            return Err(Error::new(
                ErrorKind::Service,
                "no Docker engine answers (`docker info` fails)",
            )
            .hint("start Docker, or run the services natively; `pwt infra status` checks them either way"));
        }
        Ok(cli)
    }

    /// Runs Compose on the project with `args`, its output on stderr.
    fn run_compose(&self, cli: &ComposeCli, args: &[&str]) -> Result<()> {
        let file = self.write_compose_file()?;
        let mut cmd = cli.command();
        cmd.args(["-p", self.project(), "-f"]).arg(&file).args(args);
        let within = Duration::from_secs(self.config.infra.timeout + 60);
        let out = pwt_alloc::proc::output_within(&mut cmd, within)
            .map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot run {}", cli.name())).caused_by(e)
            })?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Service,
                    format!(
                        "{} {} got no answer from the Docker engine within {} s",
                        cli.name(),
                        args.join(" "),
                        within.as_secs()
                    ),
                )
                .hint("is the engine hung? `docker info` says; restart Docker")
            })?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Service,
                format!(
                    "`{} -p {} -f {} {}` failed: {}",
                    cli.name(),
                    self.project(),
                    file.display(),
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(())
    }

    /// This project's containers.
    fn containers(&self) -> Result<Vec<Container>> {
        self.docker
            .containers(&[format!("label={PROJECT_LABEL}={}", self.project())])
    }

    /// Starts the services and waits until each answers its own protocol through its
    /// published port (and Docker says it is healthy), reporting each as it comes up. A
    /// port something else holds is refused before anything starts; a service still
    /// starting at the timeout is named, and what this run started is taken down again.
    pub fn up(&self, reporter: &mut dyn Reporter) -> Result<Vec<ServiceStatus>> {
        self.start(reporter).map_err(|e| self.interrupted(e))
    }

    /// `e` as the interruption it is when the cancel flag is set: Compose and docker,
    /// killed by the same Ctrl-C, say only that they failed (Compose with a traceback).
    fn interrupted(&self, e: Error) -> Error {
        if self.cancel.is_cancelled() && e.kind() != ErrorKind::Cancelled {
            let mut out = Error::new(ErrorKind::Cancelled, "interrupted");
            if let Some(r) = e.rollback() {
                out = out.with_rollback(r.clone());
            }
            out
        } else {
            e
        }
    }

    fn start(&self, reporter: &mut dyn Reporter) -> Result<Vec<ServiceStatus>> {
        let cli = self.compose()?;
        // One `pwt infra up` or `down` at a time: two would take down each other's.
        let _turn = self.turn()?;
        let ours = self.containers()?;
        self.refuse_foreign(&ours)?;
        self.refuse_taken_ports(&ours)?;
        let before_running: Vec<&str> = ours
            .iter()
            .filter(|c| c.state == "running")
            .filter_map(|c| c.service.as_deref())
            .collect();
        let before = Before {
            existed: ours.iter().filter_map(|c| c.service.clone()).collect(),
            volumes: self.volumes()?,
        };
        let made_network = self.docker.ensure_network(self.network())?;
        reporter.report(Event::Step(Step::StartInfra {
            project: self.project().to_owned(),
            network: self.network().to_owned(),
        }));
        let started: Vec<&'static str> = self
            .services()
            .iter()
            .map(|s| s.name)
            .filter(|n| !before_running.contains(n))
            .collect();
        let result = self
            .cancel
            .check()
            .and_then(|()| self.run_compose(&cli, &["up", "-d"]))
            .and_then(|()| self.wait(reporter));
        match result {
            Ok(s) => Ok(s),
            Err(e) => {
                let e = self.interrupted(e);
                let undone = self.take_down_started(&started, &before, made_network);
                Err(e.context(format!(
                    "the shared services did not come up; {}",
                    if undone.is_empty() {
                        "nothing was started by this run".to_owned()
                    } else {
                        format!(
                            "what this run started was taken down: {}",
                            undone.join(", ")
                        )
                    }
                )))
            }
        }
    }

    /// Refuses a published port that something other than this project's container holds,
    /// naming what holds it and the setting that names the port.
    fn refuse_taken_ports(&self, ours: &[Container]) -> Result<()> {
        let published = self.docker.published_ports()?;
        for s in self.services() {
            for p in &s.ports {
                let mine = ours
                    .iter()
                    .any(|c| c.service.as_deref() == Some(s.name) && c.ports.contains(&p.host));
                if mine {
                    continue;
                }
                let holder = match published.iter().find(|(port, _)| *port == p.host) {
                    Some((_, c)) => Some(container_holder(c)),
                    None if !port_free(p.host) => Some(process_holder(p.host)),
                    None => None,
                };
                if let Some(holder) = holder {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        format!(
                            "port {} on 127.0.0.1, which {} names for {}, is taken by {holder}; nothing was started",
                            p.host, p.setting, s.name
                        ),
                    )
                    .hint(format!(
                        "give {} another port in pwt.toml (e.g. {}), or use the service already there (`pwt infra status` shows it)",
                        p.setting,
                        example_port(p.setting, p.host)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Polls until every service answers, or the timeout: Docker's health of each (one
    /// call for all), then, for those it calls healthy, their own protocols at once.
    fn wait(&self, reporter: &mut dyn Reporter) -> Result<Vec<ServiceStatus>> {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(self.config.infra.timeout);
        let services = self.services();
        let (mut answered, mut ready): (Vec<&'static str>, Vec<&'static str>) = Default::default();
        let mut last: Vec<(&'static str, String)> = Vec::new();
        // Once every service has its container, one `docker inspect` of them a round.
        let mut ids: Vec<String> = Vec::new();
        loop {
            self.cancel.check()?;
            let containers = if ids.is_empty() {
                self.containers().unwrap_or_default()
            } else {
                self.docker.inspect(&ids).unwrap_or_default()
            };
            if ids.is_empty() && containers.len() >= services.len() {
                ids = containers.iter().map(|c| c.id.clone()).collect();
            }
            let of = |name: &str| {
                containers
                    .iter()
                    .find(|c| c.service.as_deref() == Some(name))
            };
            let health =
                |name: &str| of(name).map(|c| c.health.clone().unwrap_or_else(|| c.state.clone()));
            // Each running service is asked until it answers, healthy or still starting: one
            // that answers before Docker's healthcheck says so is up the moment it does.
            let probe: Vec<&InfraService> = services
                .iter()
                .filter(|s| !answered.contains(&s.name))
                .filter(|s| of(s.name).is_some_and(|c| c.state == "running"))
                .collect();
            last.clear();
            for (s, answer) in self.check_all(&probe) {
                match answer {
                    Ok(()) => answered.push(s.name),
                    Err(e) => last.push((
                        s.name,
                        format!(
                            "Docker says {}, but {}",
                            health(s.name).unwrap_or_default(),
                            crate::services::chain(&e)
                        ),
                    )),
                }
            }
            Self::settle(
                &services,
                &answered,
                &mut ready,
                &mut last,
                &health,
                &mut |s| {
                    reporter.report(Event::Step(Step::ServiceReady {
                        service: s.name,
                        addresses: s
                            .ports
                            .iter()
                            .map(|p| format!("127.0.0.1:{}", p.host))
                            .collect(),
                        after: start.elapsed(),
                    }));
                },
            );
            if ready.len() == services.len() {
                // Each answered (rabbitmq's check asks its management API too): said as
                // `status` would, without asking again.
                let published: Vec<(u16, Container)> = containers
                    .iter()
                    .flat_map(|c| c.ports.iter().map(move |p| (*p, c.clone())))
                    .collect();
                return Ok(self.statuses(&published, &|_| Ok(())));
            }
            if Instant::now() > deadline {
                return Err(self.still_starting(&last, &containers));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Marks ready each service that answered and Docker calls healthy (`on_ready` tells
    /// of it), and says why of each that is not.
    fn settle<'a>(
        services: &'a [InfraService],
        answered: &[&'static str],
        ready: &mut Vec<&'static str>,
        last: &mut Vec<(&'static str, String)>,
        health: &dyn Fn(&str) -> Option<String>,
        on_ready: &mut dyn FnMut(&'a InfraService),
    ) {
        for s in services {
            let healthy = matches!(health(s.name).as_deref(), Some("healthy" | "running"));
            if answered.contains(&s.name) && healthy && !ready.contains(&s.name) {
                ready.push(s.name);
                on_ready(s);
            }
            if !ready.contains(&s.name) && !last.iter().any(|(n, _)| *n == s.name) {
                let why = match health(s.name) {
                    None => "no container".to_owned(),
                    Some(h) if answered.contains(&s.name) => {
                        format!("answers, but Docker says {h}")
                    }
                    Some(h) => format!("Docker says {h}"),
                };
                last.push((s.name, why));
            }
        }
    }

    /// The timeout's error: each service still starting, why, and its last log lines (read
    /// now: what this run started is taken down next).
    fn still_starting(&self, last: &[(&'static str, String)], containers: &[Container]) -> Error {
        let still: Vec<String> = last.iter().map(|(n, why)| format!("{n} ({why})")).collect();
        let words: Vec<String> = last
            .iter()
            .filter_map(|(n, _)| {
                let c = containers
                    .iter()
                    .find(|c| c.service.as_deref() == Some(*n))?;
                let tail = self.docker.log_tail(&c.id, 5)?;
                Some(format!("\n{n} said last:\n{tail}"))
            })
            .collect();
        Error::new(
            ErrorKind::Service,
            format!(
                "still starting after {} s: {}{}",
                self.config.infra.timeout,
                still.join(", "),
                words.concat()
            ),
        )
        .hint("raise `infra.timeout` for a slow machine; a service that keeps failing may have data an earlier run left (`pwt infra down --volumes` starts afresh, deleting it)")
    }

    /// Whether each of `due` answers its own protocol, all at once.
    fn check_all<'a>(&self, due: &[&'a InfraService]) -> Vec<(&'a InfraService, Result<()>)> {
        std::thread::scope(|scope| {
            let checks: Vec<_> = due
                .iter()
                .map(|s| (*s, scope.spawn(|| self.answers(s.name))))
                .collect();
            checks
                .into_iter()
                .map(|(s, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(Error::new(ErrorKind::Service, "the check panicked"))
                    });
                    (s, r)
                })
                .collect()
        })
    }

    /// Undoes what this run did for `started` (the services it started): a container it
    /// made goes, one that was there stopped is stopped again; the volumes it made go (a
    /// half-initialised database would keep every later `up` from coming up), and the
    /// network when this run made it. Returns what it undid.
    fn take_down_started(
        &self,
        started: &[&str],
        before: &Before,
        made_network: bool,
    ) -> Vec<String> {
        let mut gone = Vec::new();
        for c in self.containers().unwrap_or_default() {
            let Some(service) = c.service.as_deref().filter(|s| started.contains(s)) else {
                continue;
            };
            if before.existed.iter().any(|e| e == service) {
                if self.docker.stop_only(&c).is_ok() {
                    gone.push(format!("{} (stopped again)", c.name));
                }
            } else if self.docker.remove_only(&c).is_ok() {
                gone.push(c.name);
            }
        }
        for v in self.volumes().unwrap_or_default() {
            if !before.volumes.contains(&v) && self.docker.remove_volume(&v).is_ok() {
                gone.push(format!("volume {v}"));
            }
        }
        if made_network && self.docker.remove_network(self.network()).is_ok() {
            gone.push(format!("network {}", self.network()));
        }
        gone
    }

    /// The named volumes of this project (by Compose's label).
    fn volumes(&self) -> Result<Vec<String>> {
        self.docker.volumes_of(self.project())
    }

    /// Stops the services; their data volumes go too with `volumes`.
    pub fn down(&self, volumes: bool) -> Result<()> {
        let cli = self.compose()?;
        let _turn = self.turn()?;
        self.refuse_foreign(&self.containers()?)?;
        let mut args = vec!["down"];
        if volumes {
            args.push("--volumes");
        }
        self.run_compose(&cli, &args)
    }

    /// Whether `service` answers its own protocol at its configured URL.
    fn answers(&self, service: &str) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime always builds");
        let c = &self.config;
        let r: std::result::Result<(), pwt_provision::ProvisionError> = rt.block_on(async {
            match service {
                "postgres" => {
                    let pg = c.postgres.as_ref().expect("Infra::new fills it in");
                    pwt_provision::Postgres::new(&pg.url)?
                        .status()
                        .await
                        .map(|_| ())
                }
                "rabbitmq" | "rabbitmq-management" => {
                    let mq = c.rabbitmq.as_ref().expect("Infra::new fills it in");
                    let broker = pwt_provision::RabbitMq::new(&mq.url, &mq.management_url)?;
                    broker.status().await?;
                    if service == "rabbitmq" {
                        let root = pwt_core::Vhost::parse("/").expect("`/` is a vhost name");
                        broker.verify(&root).await?;
                    }
                    Ok(())
                }
                _ => {
                    let r = c.redis.as_ref().expect("Infra::new fills it in");
                    pwt_provision::Redis::new(&r.url).status().await.map(|_| ())
                }
            }
        });
        r.map_err(Error::from)
    }

    /// Each service endpoint: whether it answers its own protocol, and who listens on its
    /// port (a Compose project's container, another container, a native process).
    pub fn status(&self) -> Vec<ServiceStatus> {
        let published = if self.docker.reachable() {
            self.docker.published_ports().unwrap_or_default()
        } else {
            Vec::new()
        };
        self.statuses(&published, &|service| self.answers(service))
    }

    /// Each service's status, by what `published` says holds its port and what `answer`
    /// says of it.
    fn statuses(
        &self,
        published: &[(u16, Container)],
        answer: &dyn Fn(&str) -> Result<()>,
    ) -> Vec<ServiceStatus> {
        let c = &self.config;
        let mut endpoints: Vec<(&'static str, String, u16)> = Vec::new();
        if let Some(pg) = &c.postgres {
            endpoints.push(("postgres", pg.url.clone(), UrlParts::of(&pg.url, 5432).port));
        }
        if let Some(mq) = &c.rabbitmq {
            endpoints.push(("rabbitmq", mq.url.clone(), UrlParts::of(&mq.url, 5672).port));
            endpoints.push((
                "rabbitmq-management",
                mq.management_url.clone(),
                UrlParts::of(&mq.management_url, 15672).port,
            ));
        }
        if let Some(r) = &c.redis {
            endpoints.push(("redis", r.url.clone(), UrlParts::of(&r.url, 6379).port));
        }
        endpoints
            .into_iter()
            .map(|(service, url, port)| {
                let local = is_local(&url);
                let runs_in = match published.iter().find(|(p, _)| *p == port) {
                    Some((_, ctr)) if local => match &ctr.project {
                        Some(project) => RunsIn::Compose {
                            project: project.clone(),
                            container: ctr.name.clone(),
                        },
                        None => RunsIn::Docker {
                            container: ctr.name.clone(),
                        },
                    },
                    _ if local && !reachable(&url, port) => RunsIn::Nothing,
                    _ if local => RunsIn::Native {
                        process: crate::processes::listening_on(&[port])
                            .into_iter()
                            .next()
                            .map(|f| (f.name, f.pid)),
                    },
                    _ => RunsIn::Native { process: None },
                };
                let answer = answer(service);
                ServiceStatus {
                    service,
                    url: pwt_provision::redact(&url),
                    answers: answer.is_ok(),
                    error: answer.err().map(|e| crate::services::chain(&e)),
                    hint: None,
                    runs_in,
                }
                .with_hint()
            })
            .collect()
    }
}

impl ServiceStatus {
    fn with_hint(mut self) -> Self {
        self.hint = (!self.answers).then_some(match self.service {
            "postgres" => {
                "`pwt infra up`, or natively: `pg_ctlcluster <version> main start` / `brew services start postgresql`"
            }
            "rabbitmq" => "`pwt infra up`, or natively: `rabbitmq-server -detached`",
            "rabbitmq-management" => {
                "`rabbitmq-plugins enable rabbitmq_management` (pwt infra's image has it)"
            }
            _ => "`pwt infra up`, or natively: `redis-server --daemonize yes`",
        });
        self
    }
}

/// What a URL says of user, password, port and path (percent-decoded).
struct UrlParts {
    user: Option<String>,
    password: Option<String>,
    port: u16,
    path: Option<String>,
}

impl UrlParts {
    fn of(url: &str, default_port: u16) -> Self {
        let u = url::Url::parse(url).ok();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Self {
            user: u
                .as_ref()
                .map(|u| decode(u.username()))
                .filter(|s| !s.is_empty()),
            password: u.as_ref().and_then(|u| u.password()).map(decode),
            port: u.as_ref().and_then(url::Url::port).unwrap_or(default_port),
            path: u
                .as_ref()
                .map(|u| decode(u.path().trim_start_matches('/')))
                .filter(|s| !s.is_empty()),
        }
    }
}

/// Whether the URL's host is this machine.
fn is_local(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| {
            matches!(
                h.trim_matches(['[', ']']),
                "localhost" | "127.0.0.1" | "::1"
            )
        })
}

fn reachable(url: &str, port: u16) -> bool {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_owned()))
        .unwrap_or_else(|| "127.0.0.1".into());
    (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
        })
        .unwrap_or(false)
}

/// Whether nothing listens on 127.0.0.1:`port` (a bind succeeds).
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn container_holder(c: &Container) -> String {
    match &c.project {
        Some(p) => format!("container {} of Compose project {p:?}", c.name),
        None => format!("container {}", c.name),
    }
}

fn process_holder(port: u16) -> String {
    match crate::processes::listening_on(&[port]).into_iter().next() {
        Some(f) => format!("{} (pid {})", f.name, f.pid),
        None => "a process this user cannot see (another user's, or a native service)".into(),
    }
}

/// A URL with a free-looking port for the hint: the same one 10000 higher.
fn example_port(setting: &str, port: u16) -> String {
    let other = port.saturating_add(10000);
    match setting {
        "postgres.url" => {
            format!("postgres.url = \"postgres://postgres@127.0.0.1:{other}/postgres\"")
        }
        "rabbitmq.url" => format!("rabbitmq.url = \"amqp://guest:guest@127.0.0.1:{other}\""),
        "rabbitmq.management_url" => {
            format!("rabbitmq.management_url = \"http://127.0.0.1:{other}\"")
        }
        _ => format!("redis.url = \"redis://127.0.0.1:{other}\""),
    }
}

/// A YAML scalar that reads back as `s`, never interpolated by Compose (`$` doubled).
fn yaml(s: &str) -> String {
    serde_json::Value::String(s.replace('$', "$$")).to_string()
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| yaml(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A word for `sh -c`, single-quoted.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_images_and_credentials_come_from_the_configuration() {
        let mut c = Config {
            postgres: Some(PostgresConfig {
                url: "postgres://shop:s%24cret@127.0.0.1:15432/maint".into(),
                ..PostgresConfig::default()
            }),
            ..Config::default()
        };
        c.infra.redis_image = "local/redis:7".into();
        let infra = Infra::new(Some(&c), Path::new("/tmp"));
        let file = infra.compose_file();
        assert!(file.contains("\"127.0.0.1:15432:5432\""), "{file}");
        assert!(file.contains("POSTGRES_USER: \"shop\""), "{file}");
        // Compose would expand a `$`: doubled.
        assert!(file.contains("POSTGRES_PASSWORD: \"s$$cret\""), "{file}");
        assert!(file.contains("POSTGRES_DB: \"maint\""), "{file}");
        assert!(file.contains("image: \"local/redis:7\""), "{file}");
        // Defaults for the sections the repository has not.
        assert!(file.contains("\"127.0.0.1:5672:5672\""), "{file}");
        assert!(file.contains("\"127.0.0.1:15672:15672\""), "{file}");
        assert!(file.contains("name: \"pwt\"\n    external: true"), "{file}");
        assert!(!file.contains("POSTGRES_HOST_AUTH_METHOD"), "{file}");
    }
}
