//! `pwt-alloc`: the machine-wide lease registry and race-free allocation.
//!
//! - [`Registry`]: `registry.json` in the state directory, changed only while holding an
//!   `flock` on `registry.lock` ([`LockGuard`]), replaced atomically; corrupt or newer files
//!   are refused, never reset. [`Lease`] is one worktree's hold on ports and resources.
//! - [`allocate_ports`]: a block per worktree, preferred by hash of (repo, slug), found by
//!   linear probing, skipping leased ports, ports declared in env files
//!   ([`scan_env_files`], the cooperative scan) and ports something listens on
//!   ([`port_is_free`], IPv4 and IPv6).
//! - [`Repo`]: the repository's identity and worktree list, read with git2.
//!
//! Synchronous on purpose: the lock is held for milliseconds and never across a network
//! call, so there is nothing to await.

mod error;
mod lock;
mod ports;
mod registry;
mod repo;
mod scan;

pub use error::AllocError;
pub use lock::LockGuard;
pub use ports::{PortRequest, allocate_ports, port_is_free};
pub use registry::{
    FORMAT_VERSION, Fault, KeptData, LOCK_FILE, Lease, LeaseState, Locked, REGISTRY_FILE,
    RecentPorts, Registry, RegistryOptions, State, now,
};
pub use repo::{Repo, WorktreeEntry};
pub use scan::{Declared, scan_env_files};

/// True while a process with this pid exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission; it sends nothing.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
