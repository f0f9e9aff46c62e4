//! A worktree's containers: those of its Compose project (`COMPOSE_PROJECT_NAME`) that ran
//! in its directory. Listed by `pwt list`, taken down by `pwt rm` and `pwt stop` before
//! anything else (so Docker lets go of their ports), and found by `pwt gc` when their
//! worktree is gone. A container of another checkout with the same project name is never
//! touched: Compose's working-directory label tells them apart.

use pwt_alloc::Lease;

use crate::docker::{Container, Docker};
use crate::events::{Event, Released, Reporter, Step};
use crate::project::Project;

impl Project {
    /// The Compose project name of a leased worktree: its `COMPOSE_PROJECT_NAME` as Compose
    /// labels its containers (lowercase; v1 drops what is not a letter, digit, `-` or `_`).
    pub(crate) fn compose_project(&self, lease: &Lease) -> Option<String> {
        let env = self.lease_environment(lease).ok()?;
        let name = pwt_alloc::compose_name(env.get("COMPOSE_PROJECT_NAME")?);
        (!name.is_empty()).then_some(name)
    }

    /// The engine, when pwt should ask it: `[docker]` is configured and an engine answers.
    pub(crate) fn docker(&self) -> Option<Docker> {
        self.config.docker.as_ref()?;
        let docker = Docker::default();
        docker.reachable().then_some(docker)
    }

    /// With `[docker]`, a teardown needs the engine: without it, the worktree's containers
    /// would go on running (and holding its ports) after pwt said it was removed. Refused
    /// before anything is touched.
    pub(crate) fn refuse_without_docker(&self, lease: &Lease) -> crate::error::Result<()> {
        if self.config.docker.is_none() || Docker::default().reachable() {
            return Ok(());
        }
        Err(crate::error::Error::new(
            crate::error::ErrorKind::Service,
            format!(
                "the Docker engine does not answer, so the containers of {:?} (Compose project {:?}) cannot be taken down; nothing was removed",
                lease.branch.as_str(),
                self.compose_project(lease).unwrap_or_default()
            ),
        )
        .hint("start Docker (`docker info` says whether it answers) and run `pwt rm` again"))
    }

    /// The containers of the worktree of `lease` (its Compose project's, run in its
    /// directory), when `[docker]` is configured and an engine answers.
    pub fn containers(&self, lease: &Lease) -> Vec<Container> {
        let (Some(docker), Some(project)) = (self.docker(), self.compose_project(lease)) else {
            return Vec::new();
        };
        docker
            .project_containers(&project, &lease.path)
            .unwrap_or_default()
    }

    /// Takes the worktree's Compose project down (its containers, and those started with
    /// its env file; the project's networks when no other checkout's containers are left;
    /// its volumes with `volumes`), asking any engine that answers, `[docker]` or not:
    /// Docker keeps a container's ports until it goes, whatever listens. Returns what
    /// went; an engine that stops answering half-way is an error (what is left is named).
    /// With `[docker]` and no engine answering, a warning says nothing could be asked.
    pub fn stop_containers(
        &self,
        lease: &Lease,
        volumes: bool,
        reporter: &mut dyn Reporter,
    ) -> crate::error::Result<Vec<Released>> {
        let docker = Docker::default();
        let Some(project) = self.compose_project(lease) else {
            return Ok(Vec::new());
        };
        if !docker.reachable() {
            if self.config.docker.is_some() {
                reporter.report(Event::Warning(format!(
                    "the Docker engine does not answer: the containers of Compose project {project:?}, if any, were not taken down"
                )));
            }
            return Ok(Vec::new());
        }
        let mine = if self.config.docker.is_some() {
            // One listing: the project's containers that ran in the worktree, and those
            // started with its env file (its marker in their environment).
            let marker = lease.marker();
            docker
                .containers(&[])?
                .into_iter()
                .filter(|c| {
                    c.owner.as_deref() == Some(marker.as_str())
                        || (c.project.as_deref() == Some(project.as_str())
                            && c.working_dir
                                .as_deref()
                                .is_some_and(|w| w.starts_with(&lease.path)))
                })
                .collect()
        } else {
            docker.project_containers(&project, &lease.path)?
        };
        if mine.is_empty() && !volumes {
            return Ok(Vec::new());
        }
        reporter.report(Event::Step(Step::TakeDown {
            project: project.clone(),
            containers: mine.len(),
        }));
        docker
            .take_down(&project, &mine, volumes, lease.created_at)
            .map_err(|e| e.context(format!("could not take down Compose project {project:?}")))
    }

    /// What the engine says a new lease must keep away from: the host ports containers
    /// publish (or, stopped, are set to: Docker holds them whether or not anything
    /// listens) and the Compose project names it knows (some checkout's). Asked only with
    /// `[docker]` (it costs calls to the engine); `None` when the engine does not answer.
    pub(crate) fn docker_facts(&self) -> Option<DockerFacts> {
        if self.config.docker.is_none() {
            return Some(DockerFacts::default());
        }
        let docker = Docker::default();
        if !docker.reachable() {
            return None;
        }
        // One listing of the containers for both: what they publish, and their projects.
        let containers = docker.containers(&[]).unwrap_or_default();
        let mut projects = docker.volume_and_network_projects().unwrap_or_default();
        projects.extend(containers.iter().filter_map(|c| c.project.clone()));
        Some(DockerFacts {
            ports: containers.iter().flat_map(|c| c.ports.clone()).collect(),
            projects,
        })
    }
}

/// A container publishing one of `ports`, when the process listening there is Docker's
/// port proxy: never stopped as a worktree's process (Docker would keep the port anyway).
/// What the engine says a new lease must keep away from.
#[derive(Clone, Debug, Default)]
pub(crate) struct DockerFacts {
    /// Host ports containers publish.
    pub ports: Vec<u16>,
    /// Compose project names some checkout uses.
    pub projects: std::collections::HashSet<String>,
}

pub(crate) fn is_docker_proxy(name: &str) -> bool {
    name == "docker-proxy"
}
