//! The machine-wide registry of leases: one JSON file, changed only under the lock, replaced
//! atomically (temp file, fsync, rename, fsync of the directory).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pwt_core::Resources;
use serde::{Deserialize, Serialize};

use crate::atomic::{remove_stale_temps, write_atomic_with};
use crate::error::{AllocError, io};
use crate::lease::{Claim, Kept, Lease, RecentPorts};
use crate::lock::LockGuard;

/// The format version this build writes. Version 1 (typed loosely: resources as a map of
/// strings, the owner as a bare pid, kept data inside the capped port memory) still loads and
/// is migrated on the next write.
pub const FORMAT_VERSION: u64 = 2;
/// The registry file name inside the state directory.
pub const REGISTRY_FILE: &str = "registry.json";
/// The lock file name inside the state directory. Never renamed or replaced.
pub const LOCK_FILE: &str = "registry.lock";
/// How many released port blocks are remembered so a branch gets its ports back. Kept data
/// is not in this list and never dropped to make room.
const RECENT_LIMIT: usize = 512;

/// The registry's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version.
    pub version: u64,
    /// All leases on this machine.
    pub leases: Vec<Lease>,
    /// Data kept by `pwt rm --keep-data`, until `pwt new` takes it back or `pwt gc --kept`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<Kept>,
    /// Recently released port blocks, newest last.
    #[serde(default)]
    pub recent: Vec<RecentPorts>,
    /// Resources a `pwt gc` is dropping right now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            leases: Vec::new(),
            kept: Vec::new(),
            recent: Vec::new(),
            claims: Vec::new(),
        }
    }
}

impl State {
    /// The lease of `branch` in `repo`.
    pub fn find(&self, repo: &Path, branch: &str) -> Option<&Lease> {
        self.leases
            .iter()
            .find(|l| l.repo == repo && l.branch.as_str() == branch)
    }

    /// Mutable [`State::find`].
    pub fn find_mut(&mut self, repo: &Path, branch: &str) -> Option<&mut Lease> {
        self.leases
            .iter_mut()
            .find(|l| l.repo == repo && l.branch.as_str() == branch)
    }

    /// Leases of one repository.
    pub fn of_repo<'a>(&'a self, repo: &'a Path) -> impl Iterator<Item = &'a Lease> + 'a {
        self.leases.iter().filter(move |l| l.repo == repo)
    }

    /// Removes the lease of `branch`, remembering its ports; `keep` (usually a part of its
    /// resources, or nothing) is remembered as kept data. Returns the lease.
    pub fn release(&mut self, repo: &Path, branch: &str, keep: &Resources) -> Option<Lease> {
        let i = self
            .leases
            .iter()
            .position(|l| l.repo == repo && l.branch.as_str() == branch)?;
        let lease = self.leases.remove(i);
        self.recent
            .retain(|r| !(r.repo == repo && r.branch.as_str() == branch));
        self.recent.push(RecentPorts {
            repo: lease.repo.clone(),
            branch: lease.branch.clone(),
            ports: lease.ports.clone(),
        });
        if self.recent.len() > RECENT_LIMIT {
            let excess = self.recent.len() - RECENT_LIMIT;
            self.recent.drain(..excess);
        }
        if !keep.is_empty() {
            self.kept
                .retain(|k| !(k.repo == repo && k.branch.as_str() == branch));
            self.kept.push(Kept {
                repo: lease.repo.clone(),
                branch: lease.branch.clone(),
                slug: lease.slug.clone(),
                marker: lease.marker.clone(),
                resources: keep.clone(),
                kept_at: now(),
            });
        }
        Some(lease)
    }

    /// The ports `branch` held last time, if remembered.
    pub fn recent_ports(&self, repo: &Path, branch: &str) -> Option<&BTreeMap<String, u16>> {
        self.recent
            .iter()
            .rev()
            .find(|r| r.repo == repo && r.branch.as_str() == branch)
            .map(|r| &r.ports)
    }

    /// Data kept for `branch`.
    pub fn kept_of(&self, repo: &Path, branch: &str) -> Option<&Kept> {
        self.kept
            .iter()
            .find(|k| k.repo == repo && k.branch.as_str() == branch)
    }

    /// Removes and returns the data kept for `branch` (a new lease takes it back).
    pub fn take_kept(&mut self, repo: &Path, branch: &str) -> Option<Kept> {
        let i = self
            .kept
            .iter()
            .position(|k| k.repo == repo && k.branch.as_str() == branch)?;
        Some(self.kept.remove(i))
    }

    /// Claims whose owner is still at work; the others are forgotten.
    pub fn prune_claims(&mut self) {
        self.claims.retain(|c| c.owner.is_alive());
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Fault injection for crash tests: pauses at the moments a crash matters, so a test can
/// `kill -9` the process there. Off unless the embedding program turns it on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// None.
    #[default]
    None,
    /// Sleep this long while holding the lock, before reading the registry.
    HoldLock(Duration),
    /// Sleep this long after the temp file is written and before it is renamed into place.
    BeforeRename(Duration),
}

/// Options for opening the registry.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// How long to wait for the lock before failing.
    pub lock_timeout: Duration,
    /// Crash-test hook.
    pub fault: Fault,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(30),
            fault: Fault::None,
        }
    }
}

/// The registry in a state directory.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
    options: RegistryOptions,
}

/// The registry, locked: read, change, [`Locked::commit`]. Dropping without committing
/// changes nothing.
#[derive(Debug)]
pub struct Locked<'r> {
    registry: &'r Registry,
    _guard: LockGuard,
    /// The content, to be changed in place.
    pub state: State,
}

impl Registry {
    /// The registry in `dir`, created if missing.
    pub fn open(dir: &Path, options: RegistryOptions) -> Result<Self, AllocError> {
        fs::create_dir_all(dir).map_err(io("cannot create the state directory", dir))?;
        Ok(Self {
            dir: dir.to_owned(),
            options,
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry file.
    pub fn file(&self) -> PathBuf {
        self.dir.join(REGISTRY_FILE)
    }

    /// A lock that serializes git's worktree writes (`git worktree add/remove/prune`) in one
    /// repository across pwt processes. git itself is not safe here: a `worktree add`
    /// enumerating worktrees can read another's half-written `.git/worktrees/<name>/` and
    /// fail. Separate from the registry lock, which stays millisecond-short. The lock file
    /// lives in the repository's git directory (`repo_key` is its path), so every pwt on the
    /// repository takes the same one, whatever registry it uses (another HOME, another state
    /// directory); where that cannot be written, in the state directory.
    pub fn repo_lock(&self, repo_key: &str) -> Result<LockGuard, AllocError> {
        let shared = Path::new(repo_key).join("pwt-worktrees.lock");
        if let Ok(guard) = LockGuard::acquire(&shared, Duration::from_secs(600)) {
            return Ok(guard);
        }
        let dir = self.dir.join("repos");
        fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
        let name = format!(
            "{}.lock",
            pwt_core::hex_prefix(pwt_core::stable_hash(repo_key.as_bytes()), 16)
        );
        LockGuard::acquire(&dir.join(name), Duration::from_secs(600))
    }

    /// Reads the registry without the lock. Safe because writers replace the file by an
    /// atomic rename: a reader sees the old or the new version, never a mix.
    pub fn read(&self) -> Result<State, AllocError> {
        let path = self.file();
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io("cannot read the registry", &path)(e)),
        }
    }

    /// Takes the lock and reads the registry. Fails, touching nothing, when the file is
    /// corrupt or from a newer pwt.
    pub fn lock(&self) -> Result<Locked<'_>, AllocError> {
        let guard = LockGuard::acquire(&self.dir.join(LOCK_FILE), self.options.lock_timeout)?;
        if let Fault::HoldLock(d) = self.options.fault {
            std::thread::sleep(d);
        }
        let state = self.read()?;
        Ok(Locked {
            registry: self,
            _guard: guard,
            state,
        })
    }
}

impl Registry {
    /// Takes the lock for a repair (`pwt doctor --rebuild`). A registry that does not parse
    /// is not reset in place: it is moved aside to `registry.json.corrupt-<time>` (returned)
    /// and the state starts empty, for the caller to refill from the worktrees.
    pub fn lock_for_repair(&self) -> Result<(Locked<'_>, Option<PathBuf>), AllocError> {
        let guard = LockGuard::acquire(&self.dir.join(LOCK_FILE), self.options.lock_timeout)?;
        let (state, moved) = match self.read() {
            Ok(state) => (state, None),
            Err(AllocError::Corrupt { path, .. } | AllocError::FutureVersion { path, .. }) => {
                let aside = self.dir.join(format!("{REGISTRY_FILE}.corrupt-{}", now()));
                fs::rename(&path, &aside)
                    .map_err(io("cannot move the corrupt registry aside", &path))?;
                (State::default(), Some(aside))
            }
            Err(e) => return Err(e),
        };
        Ok((
            Locked {
                registry: self,
                _guard: guard,
                state,
            },
            moved,
        ))
    }
}

impl Locked<'_> {
    /// Writes the state back atomically and releases the lock.
    pub fn commit(self) -> Result<(), AllocError> {
        let path = self.registry.file();
        remove_stale_temps(&path);
        // Fails only for a path that is not UTF-8 (JSON holds text): nothing is written.
        let mut bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| AllocError::Io {
            action: "cannot write (a path in it is not UTF-8)",
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        bytes.push(b'\n');
        let fault = self.registry.options.fault;
        write_atomic_with(&path, &bytes, || {
            if let Fault::BeforeRename(d) = fault {
                std::thread::sleep(d);
            }
        })
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<State, AllocError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u64,
    }
    let corrupt = |detail: String| AllocError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(corrupt("the file is empty".into()));
    }
    let v: VersionOnly = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if v.version > FORMAT_VERSION {
        return Err(AllocError::FutureVersion {
            path: path.to_owned(),
            found: v.version,
            supported: FORMAT_VERSION,
        });
    }
    if v.version < FORMAT_VERSION {
        return crate::v1::migrate(bytes).map_err(corrupt);
    }
    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Journal, LeaseState};
    use pwt_core::{BranchName, DbName, Slug};

    fn lease(branch: &str, port: u16) -> Lease {
        Lease {
            repo: "/r/.git".into(),
            branch: BranchName::parse(branch).expect("branch"),
            slug: Slug::parse(branch).expect("slug"),
            marker: None,
            path: format!("/r.{branch}").into(),
            project: "r".into(),
            ports: BTreeMap::from([("app".into(), port)]),
            resources: Resources::default(),
            state: LeaseState::Ready,
            owner: None,
            journal: Journal::default(),
            files: BTreeMap::new(),
            pending_hooks: false,
            pending_files: false,
            leftover: vec![],
            keep: Vec::new(),
            dir_id: None,
            compose: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::open(dir.path(), RegistryOptions::default()).expect("open");
        assert_eq!(reg.read().expect("empty"), State::default());
        let mut l = reg.lock().expect("lock");
        l.state.leases.push(lease("a", 20000));
        l.commit().expect("commit");
        assert_eq!(reg.read().expect("read").leases, vec![lease("a", 20000)]);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with(crate::atomic::TEMP_MARK)),
            "{names:?}"
        );
    }

    #[test]
    fn uncommitted_changes_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::open(dir.path(), RegistryOptions::default()).expect("open");
        let mut l = reg.lock().expect("lock");
        l.state.leases.push(lease("a", 20000));
        drop(l);
        assert!(reg.read().expect("read").leases.is_empty());
    }

    #[test]
    fn corrupt_truncated_and_future_are_refused_and_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::open(dir.path(), RegistryOptions::default()).expect("open");
        let mut l = reg.lock().expect("lock");
        l.state.leases.push(lease("a", 20000));
        l.commit().expect("commit");
        let good = fs::read(reg.file()).expect("read");
        for (bytes, needle) in [
            (good[..good.len() / 2].to_vec(), "corrupt"),
            (Vec::new(), "empty"),
            (b"{\"version\": 99, \"leases\": []}".to_vec(), "newer"),
            (b"not json".to_vec(), "corrupt"),
            (
                b"{\"version\": 2, \"leases\": [{\"x\": 1}]}".to_vec(),
                "corrupt",
            ),
            (
                b"{\"version\": 1, \"leases\": [{\"x\": 1}]}".to_vec(),
                "corrupt",
            ),
        ] {
            fs::write(reg.file(), &bytes).expect("write");
            let err = reg.lock().expect_err("refused").to_string();
            assert!(err.contains(needle), "{err}");
            assert_eq!(fs::read(reg.file()).expect("read"), bytes);
        }
    }

    #[test]
    fn repair_moves_a_corrupt_file_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reg = Registry::open(dir.path(), RegistryOptions::default()).expect("open");
        fs::write(reg.file(), b"{ truncated").expect("write");
        let (locked, moved) = reg.lock_for_repair().expect("repair");
        let moved = moved.expect("moved aside");
        assert_eq!(fs::read(&moved).expect("kept"), b"{ truncated");
        assert!(locked.state.leases.is_empty());
        locked.commit().expect("commit");
        assert_eq!(reg.read().expect("parses"), State::default());
    }

    #[test]
    fn release_remembers_ports_and_kept_data_outlives_the_port_memory() {
        let mut s = State::default();
        let mut kept = lease("kept", 20000);
        kept.resources.database = Some(DbName::parse("r_kept").expect("db"));
        s.leases.push(kept.clone());
        let repo = Path::new("/r/.git");
        assert!(s.release(repo, "kept", &kept.resources).is_some());
        assert!(s.leases.is_empty());
        assert_eq!(
            s.recent_ports(repo, "kept").expect("remembered")["app"],
            20000
        );
        assert!(s.release(repo, "kept", &Resources::default()).is_none());
        // A thousand later releases push the ports out of memory, never the kept data.
        for i in 0..1000 {
            let b = format!("b{i}");
            s.leases.push(lease(&b, 21000));
            s.release(repo, &b, &Resources::default());
        }
        assert!(s.recent_ports(repo, "kept").is_none());
        assert_eq!(
            s.kept_of(repo, "kept").expect("still kept").resources,
            kept.resources
        );
        assert!(s.take_kept(repo, "kept").is_some());
        assert!(s.kept.is_empty());
    }
}
