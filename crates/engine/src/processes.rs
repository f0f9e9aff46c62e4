//! Processes working inside a worktree: found by their working directory (Linux `/proc`),
//! stopped with SIGTERM and, after a grace period, SIGKILL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pwt_alloc::process_alive;

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
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let spared = ancestors();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !spared.contains(pid))
        .filter_map(|pid| {
            let cwd = cwd_of(pid)?;
            cwd.starts_with(&dir).then(|| Found {
                pid,
                name: comm(pid),
                cwd,
            })
        })
        .collect()
}

/// A process's working directory. The kernel shows a deleted one as "<path> (deleted)";
/// a directory really named so (it exists, and is the one the process is in) is itself.
fn cwd_of(pid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let proc_cwd = format!("/proc/{pid}/cwd");
    let link = std::fs::read_link(&proc_cwd).ok()?;
    let shown = link.to_string_lossy();
    let Some(stripped) = shown.strip_suffix(" (deleted)") else {
        return Some(link);
    };
    let same = match (std::fs::metadata(&link), std::fs::metadata(&proc_cwd)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    Some(if same {
        link.clone()
    } else {
        PathBuf::from(stripped)
    })
}

/// pwt and the processes that started it (the shell, or Worktrunk running `pwt rm` as its
/// hook from inside the worktree): never stopped.
fn ancestors() -> Vec<u32> {
    let mut out = vec![std::process::id()];
    let mut pid = std::process::id();
    while let Some(parent) = parent_of(pid).filter(|p| *p > 1 && !out.contains(p)) {
        out.push(parent);
        pid = parent;
    }
    out
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Every process (that this user may look into) listening on one of `ports` over TCP, on
/// any address, pwt and its ancestors left out. Empty where there is no `/proc`.
pub(crate) fn listening_on(ports: &[u16]) -> Vec<Found> {
    if ports.is_empty() {
        return Vec::new();
    }
    // Socket inodes in state LISTEN (0A) on those ports, from /proc/net/tcp and tcp6.
    let mut inodes = std::collections::HashSet::new();
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
            if *state == "0A" && port.is_some_and(|p| ports.contains(&p)) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let spared = ancestors();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !spared.contains(pid))
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|l| inodes.contains(l.to_string_lossy().as_ref()))
                })
            })
        })
        .map(|pid| Found {
            pid,
            name: comm(pid),
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default(),
        })
        .collect()
}

/// Sends SIGTERM to each, waits up to `grace`, then SIGKILL to those still there. Returns
/// the ones that outlived even that (another user's, say).
pub(crate) fn stop(found: &[Found], grace: Duration) -> Vec<Found> {
    let signal = |pid: u32, sig: libc::c_int| {
        if let Ok(p) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) sends a signal; no memory is shared.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(p, sig);
            }
        }
    };
    for f in found {
        signal(f.pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let alive = |f: &&Found| process_alive(f.pid) && !is_zombie(f.pid);
    while Instant::now() < deadline && found.iter().any(|f| alive(&f)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for f in found.iter().filter(alive) {
        signal(f.pid, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(50));
    found.iter().filter(alive).cloned().collect()
}

pub(crate) fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
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
