//! Who is working on a lease, and whether they still are.
//!
//! A pid alone is not an identity: after a crash the kernel hands it to the next process,
//! and a lease recorded as "being created by pid 4242" would then look busy forever. The
//! owner is the pid together with the process's start time, as the kernel counts it
//! (`/proc/<pid>/stat`, field 22), so a reused pid is recognised as somebody else.

use serde::{Deserialize, Serialize};

/// A process, identified by its pid and start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot, where the system says (Linux); `None` elsewhere,
    /// and in registries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
}

impl Owner {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: start_time(pid),
        }
    }

    /// True when this is the calling process.
    pub fn is_me(&self) -> bool {
        self.pid == std::process::id()
    }

    /// True while the process exists and is the same one (its start time, where known,
    /// unchanged). A process of another user counts as alive.
    pub fn is_alive(&self) -> bool {
        if !process_alive(self.pid) {
            return false;
        }
        match (self.start, start_time(self.pid)) {
            (Some(recorded), Some(now)) => recorded == now,
            // Unknown on one side: the pid is all there is to go by.
            _ => true,
        }
    }
}

/// True while a process with this pid exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission; it sends nothing.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The start time of `pid` in clock ticks since boot (Linux `/proc`); `None` elsewhere or
/// when it cannot be read. A zombie still has one, so a dead-but-unreaped process looks alive
/// until reaped, which is what a parent waiting on it sees too.
pub fn start_time(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&text)
}

/// Field 22 of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 3.. follow; the start time is field 22, the 20th of them.
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hostile_command_name() {
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987_654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Owner::current();
        assert!(me.is_alive());
        assert!(me.is_me());
        if let Some(start) = me.start {
            let impostor = Owner {
                pid: me.pid,
                start: Some(start + 1),
            };
            assert!(
                !impostor.is_alive(),
                "a different start time is another process"
            );
        }
        let gone = Owner {
            pid: u32::try_from(libc::pid_t::MAX).expect("positive"),
            start: None,
        };
        assert!(!gone.is_alive());
    }
}
