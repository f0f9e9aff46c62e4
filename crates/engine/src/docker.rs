//! The Docker engine, through its CLI (`docker`, and `docker compose` or `docker-compose`):
//! which containers exist and what they publish, a Compose project's containers, networks
//! and volumes, and taking a project down. Everything Compose does to a project is done
//! here through the labels Compose puts on what it makes, so it works alike with Compose v1
//! and v2 and needs no Compose file (the app's own is the user's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{DockerObject, Released};

/// The label Compose puts on a project's containers, networks and volumes.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label Compose puts on a project's containers: the directory it ran in.
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";
/// The label Compose puts on a container: its service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// One container, as `docker ps -a` and `docker inspect` show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Its id (short).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// Docker's health, when the image or Compose file has a healthcheck.
    pub health: Option<String>,
    /// Its Compose project, if any.
    pub project: Option<String>,
    /// Its Compose service, if any.
    pub service: Option<String>,
    /// The directory Compose ran in, if any.
    pub working_dir: Option<PathBuf>,
    /// Host ports it publishes (or will, once started), with the address.
    pub ports: Vec<u16>,
    /// Its main process, while it runs.
    pub pid: Option<u32>,
    /// The worktree it belongs to, by the marker in its environment (`PWT_OWNER`, from
    /// `.env.docker`).
    pub owner: Option<String>,
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
}

/// The Docker CLI.
#[derive(Clone, Debug)]
pub struct Docker {
    program: PathBuf,
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            program: PathBuf::from("docker"),
        }
    }
}

/// How long one `docker` command may take before pwt gives up on the engine.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(20);

/// The Compose CLI this machine has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComposeCli {
    /// `docker compose` (v2, a plugin of the Docker CLI).
    V2,
    /// `docker-compose` (v1, its own program).
    V1,
}

impl ComposeCli {
    /// `docker compose` when it works, else `docker-compose`, else `None`.
    pub fn find() -> Option<Self> {
        let works = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if works("docker", &["compose", "version"]) {
            return Some(Self::V2);
        }
        // v1 is a Python program that takes a quarter second to say its version: looked
        // up on PATH (by the shell) instead.
        works("sh", &["-c", "command -v docker-compose"]).then_some(Self::V1)
    }

    /// A command running this Compose.
    pub fn command(&self) -> Command {
        match self {
            Self::V2 => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
            Self::V1 => Command::new("docker-compose"),
        }
    }

    /// How people type it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::V2 => "docker compose",
            Self::V1 => "docker-compose",
        }
    }
}

impl Docker {
    /// Runs `docker ARGS` and returns its stdout; an error names the command and keeps
    /// Docker's own words.
    fn run(&self, args: &[&str]) -> Result<String> {
        self.run_within(args, DOCKER_TIMEOUT)
    }

    /// [`Docker::run`], waiting at most `within` for the engine: a daemon that hangs is an
    /// error naming Docker, never a pwt that hangs with it.
    fn run_within(&self, args: &[&str], within: Duration) -> Result<String> {
        let out = pwt_alloc::proc::output_within(Command::new(&self.program).args(args), within)
            .map_err(|e| {
                Error::new(ErrorKind::NotFound, "cannot run `docker`")
                    .caused_by(e)
                    .hint("install Docker, or leave `[docker]` out of pwt.toml")
            })?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Service,
                    format!(
                        "`docker {}` got no answer from the Docker engine within {} s",
                        args.first().copied().unwrap_or_default(),
                        within.as_secs()
                    ),
                )
                .hint("is the engine hung? `docker info` says; restart Docker (or unset DOCKER_HOST if it names the wrong one)")
            })?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Service,
                format!(
                    "`docker {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// True when an engine answers.
    pub fn reachable(&self) -> bool {
        self.run_within(
            &["info", "--format", "{{.ServerVersion}}"],
            Duration::from_secs(5),
        )
        .is_ok()
    }

    /// Every container (running or not) matching the `docker ps` filters.
    pub fn containers(&self, filters: &[String]) -> Result<Vec<Container>> {
        let mut args = vec!["ps", "-a", "-q", "--no-trunc"];
        for f in filters {
            args.extend(["--filter", f.as_str()]);
        }
        let ids: Vec<String> = self
            .run(&args)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        self.inspect(&ids)
    }

    /// These containers as `docker inspect` has them now; one removed meanwhile is left out.
    pub fn inspect(&self, ids: &[String]) -> Result<Vec<Container>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["inspect", "--format", "{{json .}}"];
        args.extend(ids.iter().map(String::as_str));
        // A container removed between the two calls makes `inspect` fail for it alone:
        // the others are still printed.
        let text = match self.run(&args) {
            Ok(t) => t,
            Err(_) => pwt_alloc::proc::output_within(
                Command::new(&self.program).args(&args),
                DOCKER_TIMEOUT,
            )
            .ok()
            .flatten()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default(),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| container_of(&v))
            .collect())
    }

    /// Every container that publishes (or, stopped, is set to publish) a host port: such a
    /// port is Docker's even while no process listens on it.
    pub fn published_ports(&self) -> Result<Vec<(u16, Container)>> {
        Ok(self
            .containers(&[])?
            .into_iter()
            .flat_map(|c| c.ports.clone().into_iter().map(move |p| (p, c.clone())))
            .collect())
    }

    /// The containers of Compose project `project` that ran in `dir` (or inside it).
    pub fn project_containers(&self, project: &str, dir: &Path) -> Result<Vec<Container>> {
        Ok(self
            .containers(&[format!("label={PROJECT_LABEL}={project}")])?
            .into_iter()
            .filter(|c| c.working_dir.as_deref().is_some_and(|w| w.starts_with(dir)))
            .collect())
    }

    /// Removes these containers (stopped first), and the networks of their projects that
    /// no container is left in. Returns what went.
    pub fn remove(&self, containers: &[Container]) -> Result<Vec<Released>> {
        if containers.is_empty() {
            return Ok(Vec::new());
        }
        // As `docker compose down` does: each gets its stop signal and a grace period
        // (flushing what it keeps) before it goes.
        let mut stop = vec!["stop", "-t", "10"];
        stop.extend(
            containers
                .iter()
                .filter(|c| c.state == "running")
                .map(|c| c.id.as_str()),
        );
        if stop.len() > 3 {
            self.run_within(&stop, DOCKER_TIMEOUT + Duration::from_secs(10))?;
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(|c| c.id.as_str()));
        self.run(&args)?;
        let mut gone: Vec<Released> = containers
            .iter()
            .map(|c| released(DockerObject::Container, &c.name))
            .collect();
        let mut projects: Vec<&str> = containers
            .iter()
            .filter_map(|c| c.project.as_deref())
            .collect();
        projects.sort_unstable();
        projects.dedup();
        for p in projects {
            gone.extend(self.remove_empty_networks(p)?);
        }
        Ok(gone)
    }

    /// Removes one container (and its anonymous volumes), running or not.
    pub fn remove_only(&self, c: &Container) -> Result<()> {
        self.run(&["rm", "-f", "-v", &c.id]).map(|_| ())
    }

    /// Stops one container (its stop signal, ten seconds, then SIGKILL).
    pub fn stop_only(&self, c: &Container) -> Result<()> {
        self.run_within(
            &["stop", "-t", "10", &c.id],
            DOCKER_TIMEOUT + Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// The last `lines` lines a container wrote (stdout and stderr), indented; `None`
    /// when there are none or Docker cannot say.
    pub fn log_tail(&self, id: &str, lines: usize) -> Option<String> {
        let n = lines.to_string();
        let mut cmd = Command::new(&self.program);
        cmd.args(["logs", "--tail", &n, id]);
        let out = pwt_alloc::proc::output_within(&mut cmd, DOCKER_TIMEOUT).ok()??;
        let text = [out.stdout, out.stderr].concat();
        let text = String::from_utf8_lossy(&text);
        let tail: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                format!(
                    "  {}",
                    l.chars().filter(|c| !c.is_control()).collect::<String>()
                )
            })
            .collect();
        (!tail.is_empty()).then(|| tail.join("\n"))
    }

    /// Removes the named volume `name`.
    pub fn remove_volume(&self, name: &str) -> Result<()> {
        self.run(&["volume", "rm", name]).map(|_| ())
    }

    /// When each of these volumes was made (Unix seconds), as the engine says.
    fn volumes_made(&self, names: &[String]) -> Result<BTreeMap<String, u64>> {
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut args = vec!["volume", "inspect", "--format", "{{.Name}} {{.CreatedAt}}"];
        args.extend(names.iter().map(String::as_str));
        Ok(self
            .run(&args)?
            .lines()
            .filter_map(|l| {
                let (name, at) = l.trim().split_once(' ')?;
                Some((name.to_owned(), unix_seconds(at)?))
            })
            .collect())
    }

    /// The named volumes Compose made for `project` (by its label).
    pub fn volumes_of(&self, project: &str) -> Result<Vec<String>> {
        let filter = format!("label={PROJECT_LABEL}={project}");
        self.names(&["volume", "ls", "--filter", &filter], "{{.Name}}")
    }

    /// Removes the network `name`.
    pub fn remove_network(&self, name: &str) -> Result<()> {
        self.run(&["network", "rm", name]).map(|_| ())
    }

    /// The networks of project `project`, when none of its containers is left.
    fn remove_empty_networks(&self, project: &str) -> Result<Vec<Released>> {
        let filter = format!("label={PROJECT_LABEL}={project}");
        if !self.containers(std::slice::from_ref(&filter))?.is_empty() {
            return Ok(Vec::new());
        }
        let mut gone = Vec::new();
        for name in self.names(&["network", "ls", "--filter", &filter], "{{.Name}}")? {
            if self.run(&["network", "rm", &name]).is_ok() {
                gone.push(released(DockerObject::Network, name));
            }
        }
        Ok(gone)
    }

    /// Takes down what `docker compose down` would, by Compose's labels: `mine` (the
    /// containers of `project` that ran in the worktree, and those started with its env
    /// file), stopped, then removed; then the project's networks once none of its
    /// containers is left, and with `volumes` its named volumes: those Compose made for the
    /// project (labelled so; never an external one a container only mounted), unless a
    /// container of another checkout with the same project name is there, when only those
    /// `mine` mounted; and only those made at or after `since` (Unix seconds: when the
    /// worktree was leased), never an older one of a project of the same name. Returns what
    /// went.
    pub fn take_down(
        &self,
        project: &str,
        mine: &[Container],
        volumes: bool,
        since: u64,
    ) -> Result<Vec<Released>> {
        let mut gone = self.remove(mine)?;
        if volumes {
            let filter = format!("label={PROJECT_LABEL}={project}");
            let shared = !self.containers(std::slice::from_ref(&filter))?.is_empty();
            let mounted: Vec<&String> = mine.iter().flat_map(|c| &c.volumes).collect();
            let names = self.volumes_of(project)?;
            let made = self.volumes_made(&names)?;
            for name in names {
                let young = made.get(&name).is_some_and(|t| *t >= since);
                if !young || (shared && !mounted.contains(&&name)) {
                    continue;
                }
                if self.remove_volume(&name).is_ok() {
                    gone.push(released(DockerObject::Volume, name));
                }
            }
        }
        Ok(gone)
    }

    /// The Compose project names of the engine's volumes and networks (with those of its
    /// containers, what a name some checkout uses is).
    pub fn volume_and_network_projects(&self) -> Result<std::collections::HashSet<String>> {
        let format = format!("{{{{.Label \"{PROJECT_LABEL}\"}}}}");
        let mut out = std::collections::HashSet::new();
        for args in [&["volume", "ls"][..], &["network", "ls"]] {
            out.extend(self.names(args, &format)?);
        }
        Ok(out)
    }

    /// The names `docker network ls` / `volume ls` lists with `args`.
    fn names(&self, args: &[&str], format: &str) -> Result<Vec<String>> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", format]);
        Ok(self
            .run(&all)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Makes the network `name` (a bridge, labelled as pwt's) unless it exists.
    /// A `create` that fails (interrupted, say) after the engine made it takes it away
    /// again: nothing of a failed call is left.
    pub fn ensure_network(&self, name: &str) -> Result<bool> {
        if self.network_exists(name)? {
            return Ok(false);
        }
        if let Err(e) = self.run(&["network", "create", "--label", "pwt.network=shared", name]) {
            if self.network_exists(name).unwrap_or(false) {
                let _ = self.remove_network(name);
            }
            return Err(e);
        }
        Ok(true)
    }

    fn network_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .names(
                &["network", "ls", "--filter", &format!("name=^{name}$")],
                "{{.Name}}",
            )?
            .iter()
            .any(|n| n == name))
    }
}

/// Unix seconds of an RFC 3339 time as Docker writes it (`2026-12-06T10:21:33Z`,
/// `2026-12-06T11:21:33.5+01:00`).
fn unix_seconds(at: &str) -> Option<u64> {
    let (date, rest) = at.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = rest.get(..8)?;
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let zone = rest[8..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (zh, zm) = z.get(1..)?.split_once(':')?;
            sign * (zh.parse::<i64>().ok()? * 3600 + zm.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + s - offset).ok()
}

/// A Docker object that went.
fn released(object: DockerObject, name: impl Into<String>) -> Released {
    Released::Docker {
        object,
        name: name.into(),
    }
}

/// A container from `docker inspect`'s JSON.
fn container_of(v: &serde_json::Value) -> Container {
    let text = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_owned);
    let labels = v
        .pointer("/Config/Labels")
        .and_then(|l| l.as_object())
        .cloned()
        .unwrap_or_default();
    let label = |k: &str| labels.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let mut ports: Vec<u16> = Vec::new();
    // Set to publish (HostConfig), and publishing now (NetworkSettings): both count.
    for pointer in ["/HostConfig/PortBindings", "/NetworkSettings/Ports"] {
        let bindings: BTreeMap<String, serde_json::Value> = v
            .pointer(pointer)
            .and_then(|b| serde_json::from_value(b.clone()).ok())
            .unwrap_or_default();
        for list in bindings.values() {
            for b in list.as_array().into_iter().flatten() {
                if let Some(p) = b["HostPort"].as_str().and_then(|p| p.parse().ok())
                    && !ports.contains(&p)
                {
                    ports.push(p);
                }
            }
        }
    }
    ports.sort_unstable();
    let id = text("/Id").unwrap_or_default();
    Container {
        id: id.chars().take(12).collect(),
        name: text("/Name")
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: text("/Config/Image").unwrap_or_default(),
        state: text("/State/Status").unwrap_or_default(),
        health: text("/State/Health/Status"),
        project: label(PROJECT_LABEL),
        service: label(SERVICE_LABEL),
        working_dir: label(WORKING_DIR_LABEL).map(PathBuf::from),
        ports,
        volumes: v
            .pointer("/Mounts")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
            .filter(|m| m["Type"] == "volume")
            .filter_map(|m| m["Name"].as_str().map(str::to_owned))
            .collect(),
        owner: v
            .pointer("/Config/Env")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.strip_prefix("PWT_OWNER="))
            .next()
            .map(str::to_owned),
        pid: v
            .pointer("/State/Pid")
            .and_then(|p| p.as_u64())
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_read_as_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-12-06T10:21:33Z"), Some(1_796_552_493));
        assert_eq!(
            unix_seconds("2026-12-06T11:21:33.25+01:00"),
            Some(1_796_552_493)
        );
        assert_eq!(unix_seconds("2000-02-29T00:00:00-00:30"), Some(951_784_200));
        assert_eq!(unix_seconds("yesterday"), None);
    }

    #[test]
    fn a_container_is_read_from_docker_inspect() {
        let v: serde_json::Value = serde_json::json!({
            "Id": "0123456789abcdef0123",
            "Name": "/shop-feat-web-1",
            "Config": { "Image": "shop:dev", "Labels": {
                "com.docker.compose.project": "shop-feat",
                "com.docker.compose.service": "web",
                "com.docker.compose.project.working_dir": "/src/shop.feat"
            }},
            "State": { "Status": "exited", "Pid": 0, "Health": { "Status": "unhealthy" } },
            "HostConfig": { "PortBindings": { "8000/tcp": [{ "HostIp": "127.0.0.1", "HostPort": "21007" }] } },
            "NetworkSettings": { "Ports": {} }
        });
        let c = container_of(&v);
        assert_eq!(c.id, "0123456789ab");
        assert_eq!(c.name, "shop-feat-web-1");
        assert_eq!(c.project.as_deref(), Some("shop-feat"));
        assert_eq!(c.service.as_deref(), Some("web"));
        assert_eq!(c.working_dir.as_deref(), Some(Path::new("/src/shop.feat")));
        // Stopped, it still holds its port for Docker.
        assert_eq!(c.ports, vec![21007]);
        assert_eq!(c.health.as_deref(), Some("unhealthy"));
        assert_eq!(c.pid, None);
        assert_eq!(c.owner, None);
    }
}
