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
    crate::proc::exists(pid)
}

/// The start time of `pid` in clock ticks since boot (Linux `/proc`); `None` elsewhere or
/// when it cannot be read. A zombie still has one, so a dead-but-unreaped process looks alive
/// until reaped, which is what a parent waiting on it sees too.
pub fn start_time(pid: u32) -> Option<u64> {
    crate::proc::stat(pid).map(|s| s.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            pid: u32::try_from(i32::MAX).expect("positive"),
            start: None,
        };
        assert!(!gone.is_alive());
    }
}
