//! Processes working inside a worktree: found by their working directory (Linux `/proc`),
//! stopped with SIGTERM and, after a grace period, SIGKILL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pwt_alloc::proc::{self, Victim};

/// A process found at work in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its pid.
    pub pid: u32,
    /// Its command name (`comm`).
    pub name: String,
    /// Its working directory.
    pub cwd: PathBuf,
}

/// Every process (of this user, or any readable one) whose working directory is `dir` or
/// inside it, pwt itself left out. Empty where there is no `/proc`.
pub(crate) fn working_in(dir: &Path) -> Vec<Found> {
    let spared = ancestors();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    proc::pids()
        .into_iter()
        .filter(|pid| !spared.contains(pid))
        .filter_map(|pid| {
            let cwd = proc::cwd(pid)?;
            cwd.starts_with(&dir).then(|| Found {
                pid,
                name: proc::comm(pid),
                cwd,
            })
        })
        .collect()
}

/// pwt and the processes that started it (the shell, or Worktrunk running `pwt rm` as its
/// hook from inside the worktree): never stopped.
pub(crate) fn ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    let mut pid = std::process::id();
    while let Some(parent) = proc::stat(pid)
        .map(|s| s.ppid)
        .filter(|p| *p > 1 && !out.contains(p))
    {
        out.push(parent);
        pid = parent;
    }
    out
}

/// The sockets listening over TCP (any address) on one of `ports`, as the links of
/// `/proc/<pid>/fd` show them (`socket:[<inode>]`), with their port; from `/proc/net/tcp`
/// and `tcp6`.
pub(crate) fn listening_sockets(ports: &[u16]) -> HashMap<String, u16> {
    let mut inodes = HashMap::new();
    if ports.is_empty() {
        return inodes;
    }
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let Some(port) = port.filter(|p| *state == "0A" && ports.contains(p)) {
                inodes.insert(format!("socket:[{inode}]"), port);
            }
        }
    }
    inodes
}

/// The port of `sockets` that `pid` holds open, if any.
pub(crate) fn listens_on(pid: u32, sockets: &HashMap<String, u16>) -> Option<u16> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            sockets.get(link.to_string_lossy().as_ref()).copied()
        })
}

/// Every process (that this user may look into) listening on one of `ports` over TCP, on
/// any address, pwt and its ancestors left out. Empty where there is no `/proc`.
pub(crate) fn listening_on(ports: &[u16]) -> Vec<Found> {
    let sockets = listening_sockets(ports);
    if sockets.is_empty() {
        return Vec::new();
    }
    let spared = ancestors();
    proc::pids()
        .into_iter()
        .filter(|pid| !spared.contains(pid))
        .filter(|pid| listens_on(*pid, &sockets).is_some())
        .map(|pid| Found {
            pid,
            name: proc::comm(pid),
            cwd: proc::cwd(pid).unwrap_or_default(),
        })
        .collect()
}

/// Stops each (SIGTERM, SIGKILL after `grace`). Returns the ones that outlived even that
/// (another user's, say).
pub(crate) fn stop(found: &[Found], grace: Duration) -> Vec<Found> {
    let victims: Vec<Victim> = found.iter().map(|f| Victim::Process(f.pid)).collect();
    let left = proc::stop(&victims, grace);
    found
        .iter()
        .filter(|f| left.contains(&Victim::Process(f.pid)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_stops_a_process_working_in_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = dir.path().join("sub");
        std::fs::create_dir_all(&inner).expect("mkdir");
        // Ignores SIGTERM, so only the SIGKILL after the grace period stops it.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.05; done"])
            .current_dir(&inner)
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(100));
        let found = working_in(dir.path());
        assert!(found.iter().any(|f| f.pid == child.id()), "{found:?}");
        let left = stop(&found, Duration::from_millis(300));
        let _ = child.wait();
        assert!(left.iter().all(|f| f.pid != child.id()), "{left:?}");
        assert!(working_in(dir.path()).iter().all(|f| f.pid != child.id()));
    }
}
