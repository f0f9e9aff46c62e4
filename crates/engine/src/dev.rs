//! The worktree's processes (`[processes]` in pwt.toml): `pwt dev` starts them with the
//! worktree's environment, each in a process group of its own, and records them under the
//! state directory, so `pwt list` shows them, `pwt stop` and `pwt rm` stop them (the whole
//! group: a dev server's reloader and workers too), and a reused pid is never taken for one.

use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pwt_alloc::proc::{self, Victim};
use pwt_alloc::start_time;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::project::{Project, Selector};
use pwt_alloc::write_atomic;

/// Runs the command (in a subshell, so its own `exit` ends only that) and notes its exit
/// code for `pwt list`; `$1` is the command, `$2` the
/// file for the code. The command is the configuration's text, run as `sh -c` would; values
/// reach it only as environment variables.
/// `$3…` are the `cgroup.procs` files of the worktree's groups (`[limits]`): the shell moves
/// itself into each (writing `0`) before it runs the command, so all it starts is inside.
const WRAPPER: &str = r#"c=$1; e=$2; shift 2; for f do printf 0 > "$f" || { echo "pwt: cannot join the cgroup of $f" >&2; exit 125; }; done; (eval "$c"); code=$?; printf '%s' "$code" > "$e"; exit "$code""#;

/// What [`Project::supervise`] tells its caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Supervision<'a> {
    /// A line the `index`th process (`name`) wrote, without its newline.
    Line {
        /// Its place among those started.
        index: usize,
        /// Its name in `[processes]`.
        name: &'a str,
        /// The line, as written.
        line: &'a [u8],
    },
    /// One ended: its exit code, or `None` when a signal ended it.
    Exited {
        /// Which.
        process: &'a DevProcess,
        /// Its exit code.
        code: Option<i32>,
    },
    /// Cancelled: all of them are being stopped.
    Stopping,
    /// One did not stop (another user's process by now?).
    NotStopped {
        /// Which.
        process: &'a DevProcess,
    },
}

/// What [`Project::stop`] stopped.
#[derive(Clone, Debug, Default)]
pub struct Stopped {
    /// The containers (and networks, volumes) of the worktree's Compose project that went.
    pub containers: Vec<crate::events::Released>,
    /// Each process of `pwt dev` that ran, with whether it stopped.
    pub processes: Vec<(DevProcess, bool)>,
}

/// One process `pwt dev` started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevProcess {
    /// Its name in `[processes]`.
    pub name: String,
    /// The command.
    pub command: String,
    /// The pid of its process group's leader.
    pub pid: u32,
    /// Its start time (clock ticks since boot), so a reused pid is not taken for it.
    pub started: Option<u64>,
    /// Its log file, when detached.
    pub log: Option<PathBuf>,
    /// Where its exit code is written.
    pub exit_file: PathBuf,
}

/// What a recorded process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// It runs.
    Running,
    /// It ended with this code (`None`: killed by a signal, or stopped).
    Exited(Option<i32>),
}

impl DevProcess {
    /// Whether it runs now: its leader (the same process: pid and start time), or, once the
    /// leader is gone, anything left in its process group (`cmd &` leaves the command
    /// there). A group's id is its leader's pid, which the kernel does not hand out again
    /// while any member of the group lives, so members of a group whose leader is gone are
    /// this process's; a live process with the leader's pid and another start time means
    /// the group ended and the pid went to someone else.
    pub fn state(&self) -> ProcessState {
        let leader = proc::running(self.pid);
        let same = leader
            && (self.started.is_none()
                || proc::stat(self.pid).map(|s| s.start_time) == self.started);
        if same || (!leader && proc::group_running(self.pid)) {
            return ProcessState::Running;
        }
        ProcessState::Exited(
            std::fs::read_to_string(&self.exit_file)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
        )
    }
}

/// A process just started, with its child handle (pipes on stdout and stderr unless
/// detached).
#[derive(Debug)]
pub struct Spawned {
    /// The slug of the worktree it runs for.
    pub slug: String,
    /// What was recorded.
    pub process: DevProcess,
    /// The child.
    pub child: Child,
}

impl Project {
    /// The project's records of what `pwt dev` started, worktree by worktree.
    pub(crate) fn records(&self) -> Records {
        Records::at(&self.options.state_dir, &self.repo.common_dir)
    }

    /// Refuses to start more while the machine has less memory available than
    /// `limits.min_free_memory`, naming the worktrees that use the most.
    fn admit(&self) -> Result<()> {
        let Some(floor) = self.config.limits.min_free_bytes() else {
            return Ok(());
        };
        let Some(available) = crate::limits::mem_available() else {
            return Ok(());
        };
        if available >= floor {
            return Ok(());
        }
        let leases: Vec<pwt_alloc::Lease> = self
            .state()
            .map(|s| s.of_repo(&self.repo.common_dir).cloned().collect())
            .unwrap_or_default();
        let claims: Vec<crate::usage::Claim> = leases
            .iter()
            .map(|l| crate::usage::Claim {
                root: l.path.clone(),
                ports: l.ports.values().copied().collect(),
                groups: self
                    .running_processes(l.slug.as_str())
                    .iter()
                    .map(|p| p.pid)
                    .collect(),
            })
            .collect();
        let used = crate::usage::measure(&claims);
        let mut rows: Vec<(&pwt_alloc::Lease, u64)> = leases
            .iter()
            .map(|l| (l, used.get(&l.path).map_or(0, |u| u.memory_bytes)))
            .filter(|(_, m)| *m > 0)
            .collect();
        rows.sort_by_key(|(_, m)| std::cmp::Reverse(*m));
        let biggest: Vec<String> = rows
            .iter()
            .map(|(l, m)| format!("{} ({} MiB)", l.branch.as_str(), m >> 20))
            .take(3)
            .collect();
        Err(Error::new(
            ErrorKind::Exhausted,
            format!(
                "only {} MiB of memory is available, below limits.min_free_memory ({} MiB); nothing was started",
                available >> 20,
                floor >> 20
            ),
        )
        .hint(if biggest.is_empty() {
            "free some memory, or lower limits.min_free_memory".to_owned()
        } else {
            format!(
                "the worktrees using the most: {}; `pwt stop BRANCH` stops one (`pwt top` shows them all)",
                biggest.join(", ")
            )
        }))
    }

    /// Where the worktree's processes go with `[limits]`; nowhere special (and a warning
    /// saying why) where this machine allows no group.
    fn placement_or_warn(
        &self,
        slug: &str,
        reporter: &mut dyn crate::events::Reporter,
    ) -> crate::limits::Placement {
        match self.limit_placement(slug) {
            Ok(p) => p.unwrap_or_default(),
            Err(why) => {
                reporter.report(crate::events::Event::Warning(format!(
                    "[limits] not applied: {why}"
                )));
                crate::limits::Placement::default()
            }
        }
    }

    /// The processes `pwt dev` started for the worktree of `slug`, with what each does now.
    pub fn dev_processes(&self, slug: &str) -> Vec<(DevProcess, ProcessState)> {
        self.records().of(slug)
    }

    /// Starts every process of `[processes]` in the worktree `target` names (the current
    /// one for `None`) with its environment: detached (output to log files under the state
    /// directory) or with piped output for the caller to show. Refuses while some still run.
    ///
    /// With `[limits]`, they go into the worktree's control groups (a warning says why
    /// not where this machine allows none); below `limits.min_free_memory` nothing starts.
    pub fn start_processes(
        &self,
        target: Option<&Selector>,
        detach: bool,
        reporter: &mut dyn crate::events::Reporter,
    ) -> Result<Vec<Spawned>> {
        self.require_approval(crate::approvals::Gate {
            hooks: false,
            processes: true,
            env: true,
        })?;
        if self.config.processes.is_empty() {
            return Err(Error::new(ErrorKind::Config, "pwt.toml has no [processes] to start")
                .hint("add them, e.g. `[processes]` then `backend = \"python manage.py runserver $DJANGO_PORT\"` and `frontend = \"npm run dev\"`"));
        }
        let (crate::project::Managed { root, slug, .. }, env) =
            self.worktree_environment(target)?;
        let records = self.records();
        // One start at a time per worktree: two at once would both find nothing running.
        let _turn = records.turn(&slug)?;
        let running: Vec<String> = records
            .running(&slug)
            .iter()
            .map(|p| format!("{} (pid {})", p.name, p.pid))
            .collect();
        if !running.is_empty() {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "the worktree's processes run already: {}",
                    running.join(", ")
                ),
            )
            .hint("`pwt stop` stops them first"));
        }
        self.admit()?;
        let placement = self.placement_or_warn(&slug, reporter);
        let dir = records.dir(&slug);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot create {}", dir.display())).caused_by(e)
        })?;
        let mut out = Vec::new();
        for (name, command) in &self.config.processes {
            let exit_file = dir.join(format!("{name}.exit"));
            let _ = std::fs::remove_file(&exit_file);
            let log = detach.then(|| dir.join(format!("{name}.log")));
            let child = match spawn(&root, &env, command, &exit_file, log.as_deref(), &placement) {
                Ok(c) => c,
                Err(e) => {
                    // What started goes again: all or nothing.
                    let started: Vec<DevProcess> =
                        out.iter().map(|s: &Spawned| s.process.clone()).collect();
                    stop_groups(&started, Duration::from_secs(2));
                    return Err(e.context(format!("cannot start {name:?}")));
                }
            };
            let pid = child.id();
            out.push(Spawned {
                slug: slug.clone(),
                process: DevProcess {
                    name: name.clone(),
                    command: command.clone(),
                    pid,
                    started: start_time(pid),
                    log,
                    exit_file,
                },
                child,
            });
        }
        let list: Vec<&DevProcess> = out.iter().map(|s| &s.process).collect();
        write_atomic(
            &dir.join("processes.json"),
            serde_json::to_string_pretty(&list)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(out)
    }

    /// Runs processes [`Project::start_processes`] started with piped output until they
    /// end, blocking: each line they write (stdout and stderr, without its newline), each
    /// exit, and a stop go to `on` (lines from threads of their own, so `on` is `Sync`).
    /// Once `stop` is set (a flag of the caller's, e.g. [`Project::cancel`] for Ctrl-C, or
    /// one of its own, which leaves the project usable), all of them are stopped (SIGTERM
    /// to each group, SIGKILL after 5 s). Returns the worst exit code (1 for one ended by a
    /// signal), or `None` when stopped.
    pub fn supervise(
        &self,
        spawned: Vec<Spawned>,
        stop: &crate::project::Cancel,
        on: &(dyn Fn(Supervision<'_>) + Sync),
    ) -> Option<i32> {
        let Some(slug) = spawned.first().map(|s| s.slug.clone()) else {
            return Some(0);
        };
        std::thread::scope(|scope| {
            let mut children = Vec::new();
            for (index, mut s) in spawned.into_iter().enumerate() {
                let streams = [
                    s.child
                        .stdout
                        .take()
                        .map(|o| Box::new(o) as Box<dyn Read + Send>),
                    s.child
                        .stderr
                        .take()
                        .map(|e| Box::new(e) as Box<dyn Read + Send>),
                ];
                for stream in streams.into_iter().flatten() {
                    let name = s.process.name.clone();
                    scope.spawn(move || {
                        for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                            on(Supervision::Line {
                                index,
                                name: &name,
                                line: &line,
                            });
                        }
                    });
                }
                children.push((s.process, s.child, false));
            }
            self.wait_all(&slug, &mut children, stop, on)
        })
    }

    /// Waits for every child to end, stopping them all once the cancel flag is set.
    fn wait_all(
        &self,
        slug: &str,
        children: &mut [(DevProcess, Child, bool)],
        stop: &crate::project::Cancel,
        on: &(dyn Fn(Supervision<'_>) + Sync),
    ) -> Option<i32> {
        let mut worst = 0;
        let mut stopping = false;
        while children.iter().any(|(_, _, done)| !done) {
            if stop.is_cancelled() && !stopping {
                stopping = true;
                on(Supervision::Stopping);
                for (p, stopped) in self.stop_dev_processes(slug, Duration::from_secs(5)) {
                    if !stopped {
                        on(Supervision::NotStopped { process: &p });
                    }
                }
            }
            for (p, child, done) in children.iter_mut() {
                if *done {
                    continue;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    *done = true;
                    worst = worst.max(status.code().unwrap_or(1));
                    on(Supervision::Exited {
                        process: p,
                        code: status.code(),
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (!stopping).then_some(worst)
    }

    /// Those of [`Project::dev_processes`] that run now.
    pub fn running_processes(&self, slug: &str) -> Vec<DevProcess> {
        self.records().running(slug)
    }

    /// Stops the processes `pwt dev` started for the worktree of `slug` (SIGTERM to each
    /// group, SIGKILL after `grace`). Returns each running one with whether it stopped.
    pub fn stop_dev_processes(&self, slug: &str, grace: Duration) -> Vec<(DevProcess, bool)> {
        let stopped = stop_these(self.running_processes(slug), grace);
        self.forget_limits(slug);
        stopped
    }

    /// `pwt stop`: what runs for the worktree `target` names (the current one for `None`)
    /// stops: its Compose project's containers first (they hold its ports; their named
    /// volumes go too with `volumes`), then what `pwt dev` started (SIGTERM to each group,
    /// SIGKILL after `grace`).
    pub fn stop(
        &self,
        target: Option<&Selector>,
        grace: Duration,
        volumes: bool,
        reporter: &mut dyn crate::events::Reporter,
    ) -> Result<Stopped> {
        let m = self.managed(target)?;
        let containers = match &m.target {
            crate::project::Target::Leased(l) => self.stop_containers(l, volumes, reporter)?,
            _ => Vec::new(),
        };
        Ok(Stopped {
            containers,
            processes: self.stop_dev_processes(&m.slug, grace),
        })
    }

    /// Forgets the worktree's process records (its logs go too): for `pwt rm`.
    pub(crate) fn forget_dev_processes(&self, slug: &str) {
        self.forget_limits(slug);
        let _ = std::fs::remove_dir_all(self.browser_profile(slug));
        let _ = std::fs::remove_dir_all(self.records().dir(slug));
    }
}

/// Where a repository's process records are: a directory per worktree under the state
/// directory, each with `processes.json`, the logs and exit codes, and a lock beside it
/// for starting.
pub(crate) struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records of the repository `repo` (its common directory) under `state_dir`.
    pub(crate) fn at(state_dir: &Path, repo: &Path) -> Self {
        let key = crate::env_files::content_hash(repo.to_string_lossy().as_bytes());
        Self {
            dir: state_dir.join("processes").join(key),
        }
    }

    /// The records of the worktree `slug`.
    fn dir(&self, slug: &str) -> PathBuf {
        self.dir.join(slug)
    }

    /// The worktree's turn to start its processes (a lock beside its records, held until
    /// dropped).
    fn turn(&self, slug: &str) -> Result<pwt_alloc::LockGuard> {
        let dir = self.dir(slug);
        let lock = dir.with_file_name(format!(".{slug}.lock"));
        if let Some(parent) = lock.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot create {}", parent.display()))
                    .caused_by(e)
            })?;
        }
        Ok(pwt_alloc::LockGuard::acquire(
            &lock,
            Duration::from_secs(30),
        )?)
    }

    /// The slugs with `pwt dev` records in this repository.
    pub(crate) fn slugs(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What `pwt dev` started for the worktree of `slug`, with what each does now.
    pub(crate) fn of(&self, slug: &str) -> Vec<(DevProcess, ProcessState)> {
        let file = self.dir(slug).join("processes.json");
        let Ok(text) = std::fs::read_to_string(file) else {
            return Vec::new();
        };
        let list: Vec<DevProcess> = serde_json::from_str(&text).unwrap_or_default();
        list.into_iter()
            .map(|p| {
                let s = p.state();
                (p, s)
            })
            .collect()
    }

    /// Those that run now.
    pub(crate) fn running(&self, slug: &str) -> Vec<DevProcess> {
        self.of(slug)
            .into_iter()
            .filter(|(_, s)| *s == ProcessState::Running)
            .map(|(p, _)| p)
            .collect()
    }
}

fn spawn(
    root: &Path,
    env: &pwt_core::Environment,
    command: &str,
    exit_file: &Path,
    log: Option<&Path>,
    placement: &crate::limits::Placement,
) -> Result<Child> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg("pwt-dev")
        .arg(command)
        .arg(exit_file)
        .args(&placement.procs)
        .current_dir(root)
        .envs(env.iter())
        .process_group(0)
        .stdin(Stdio::null());
    match log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot open {}", path.display()))
                        .caused_by(e)
                })?;
            let err = file
                .try_clone()
                .map_err(|e| Error::new(ErrorKind::Io, "cannot share the log file").caused_by(e))?;
            cmd.stdout(file).stderr(err);
        }
        None => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    cmd.spawn()
        .map_err(|e| Error::new(ErrorKind::Io, "cannot run sh").caused_by(e))
}

/// Stops `running` (SIGTERM to each group, SIGKILL after `grace`); each with whether it
/// stopped.
pub(crate) fn stop_these(running: Vec<DevProcess>, grace: Duration) -> Vec<(DevProcess, bool)> {
    let left = stop_groups(&running, grace);
    running
        .into_iter()
        .map(|p| {
            let stopped = !left.contains(&p.pid);
            (p, stopped)
        })
        .collect()
}

/// SIGTERM to each running process group, SIGKILL after `grace` to those still there.
/// Returns the pids of groups that outlived both.
fn stop_groups(list: &[DevProcess], grace: Duration) -> Vec<u32> {
    let victims: Vec<Victim> = list
        .iter()
        .filter(|p| p.state() == ProcessState::Running)
        .map(|p| Victim::Group(p.pid))
        .collect();
    proc::stop(&victims, grace)
        .into_iter()
        .filter_map(|v| match v {
            Victim::Group(pid) => Some(pid),
            Victim::Process(_) => None,
        })
        .collect()
}
