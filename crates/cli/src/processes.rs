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
    let me = std::process::id();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
            // A deleted directory reads as "<path> (deleted)".
            let shown = cwd.to_string_lossy();
            let cwd = PathBuf::from(shown.strip_suffix(" (deleted)").unwrap_or(&shown));
            cwd.starts_with(&dir).then(|| Found {
                pid,
                name: std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
                cwd,
            })
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

fn is_zombie(pid: u32) -> bool {
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
