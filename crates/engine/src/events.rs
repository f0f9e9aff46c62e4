//! What the library tells its caller while it works: progress on slow steps, warnings, the
//! hooks and processes it runs or stops. The caller passes a [`Reporter`]; the library never
//! prints.

/// One thing worth telling.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A slow step starts, or one of several finishes ([`Step`]; its `Display` is the line
    /// the binary prints).
    Step(Step),
    /// Steps still running after this many seconds (sent once a second after the first).
    Waiting {
        /// What is running.
        what: Vec<String>,
        /// Seconds since they started.
        seconds: u64,
    },
    /// Something the user should know; the operation goes on.
    Warning(String),
    /// A hook command starts.
    Hook {
        /// `post-create` or `pre-remove`.
        stage: &'static str,
        /// The command.
        command: String,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Step(step) => step.fmt(f),
            Self::Waiting { what, seconds } => {
                write!(f, "still running after {seconds} s: {}", what.join(", "))
            }
            Self::Warning(w) => write!(f, "warning: {w}"),
            Self::Hook { stage, command } => write!(f, "{stage} hook: {command}"),
        }
    }
}

/// A slow step of the lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// `git worktree add` of the worktree at this path.
    AddWorktree {
        /// Where.
        path: std::path::PathBuf,
    },
    /// A `files.copy` entry is copied from the main worktree.
    Copy {
        /// The entry, relative to the worktree.
        entry: String,
    },
    /// A process is stopped before its worktree goes.
    StopProcess {
        /// Its name (`comm`, or the `[processes]` name).
        name: String,
        /// Its pid.
        pid: u32,
        /// Why it is stopped (`started by \`pwt dev\``, `listening on a port of the worktree`).
        why: String,
    },
    /// The worktree's Compose containers are taken down.
    TakeDown {
        /// The Compose project.
        project: String,
        /// How many containers.
        containers: usize,
    },
    /// `pwt infra up` starts the shared services.
    StartInfra {
        /// The Compose project.
        project: String,
        /// The Docker network.
        network: String,
    },
    /// One shared service answers its protocol.
    ServiceReady {
        /// `postgres`, `rabbitmq` or `redis`.
        service: &'static str,
        /// The published addresses (`127.0.0.1:5432`).
        addresses: Vec<String>,
        /// Since `pwt infra up` started.
        after: std::time::Duration,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AddWorktree { path } => write!(f, "creating worktree {} ...", path.display()),
            Self::Copy { entry } => write!(f, "copying {entry} from the main worktree ..."),
            Self::StopProcess { name, pid, why } => {
                write!(f, "stopping {name} (pid {pid}), {why} ...")
            }
            Self::TakeDown {
                project,
                containers,
            } => write!(
                f,
                "taking down Compose project {project:?} ({containers} container(s)) ..."
            ),
            Self::StartInfra { project, network } => write!(
                f,
                "starting PostgreSQL, RabbitMQ and Redis (Compose project {project:?}, network {network:?}) ..."
            ),
            Self::ServiceReady {
                service,
                addresses,
                after,
            } => write!(
                f,
                "{service} answers on {} ({:.1} s)",
                addresses.join(" and "),
                after.as_secs_f64()
            ),
        }
    }
}

/// One thing a teardown or a rollback took away.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// A database, vhost or Redis slot of the worktree.
    Resource {
        /// Which service.
        kind: pwt_core::ResourceKind,
        /// The one resource (only `kind` is set).
        resource: pwt_core::Resources,
    },
    /// One of its test databases (`test_<db>`, as `postgres.test_databases` says).
    TestDatabase(pwt_core::DbName),
    /// A container, network or volume of the worktree's Compose project.
    Docker {
        /// Which kind of object.
        object: DockerObject,
        /// Its name.
        name: String,
    },
    /// The worktree's directory (and git's record of it).
    Worktree,
}

/// The kinds of Docker object a teardown takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DockerObject {
    /// A container.
    Container,
    /// A network.
    Network,
    /// A named volume.
    Volume,
}

impl std::fmt::Display for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resource { kind, resource } => {
                f.write_str(&resource.describe(*kind).unwrap_or_default())
            }
            Self::TestDatabase(name) => write!(f, "test database {:?}", name.as_str()),
            Self::Docker { object, name } => {
                let object = match object {
                    DockerObject::Container => "container",
                    DockerObject::Network => "network",
                    DockerObject::Volume => "volume",
                };
                write!(f, "{object} {name}")
            }
            Self::Worktree => f.write_str("the worktree"),
        }
    }
}

/// `a, b, c`.
pub(crate) fn joined(items: &[Released]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Receives [`Event`]s.
pub trait Reporter {
    /// Called for each event, in order.
    fn report(&mut self, event: Event);
}

/// A reporter that drops everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&mut self, _event: Event) {}
}

/// A reporter that keeps every event, for tests and for callers that show them later.
#[derive(Clone, Debug, Default)]
pub struct Collect(pub Vec<Event>);

impl Reporter for Collect {
    fn report(&mut self, event: Event) {
        self.0.push(event);
    }
}

impl<F: FnMut(Event)> Reporter for F {
    fn report(&mut self, event: Event) {
        self(event);
    }
}
