//! `pwt-alloc`: the machine-wide lease registry and race-free allocation.
//!
//! - [`Registry`]: `registry.json` in the state directory, changed only while holding an
//!   `flock` on `registry.lock` ([`LockGuard`]), replaced atomically; corrupt or newer files
//!   are refused, never reset (version 1 files migrate). [`Lease`] is one worktree's hold on
//!   ports and resources, typed: [`LeaseState`], [`Journal`] (what a set-up is creating),
//!   [`Leftover`] (what a teardown left), [`Owner`] (pid and start time, so a reused pid is
//!   not mistaken for a live pwt), [`Kept`] data and reconcile's [`Claim`]s.
//! - [`allocate_ports`]: a block per worktree, preferred by hash of (repo, slug), found by
//!   linear probing, skipping leased ports, ports declared in env files
//!   ([`scan_env_files`], the cooperative scan) and ports something listens on
//!   ([`port_is_free`], IPv4 and IPv6).
//! - [`Repo`]: the repository's identity and worktree list, read with git2.
//!
//! Synchronous on purpose: the lock is held for milliseconds and never across a network
//! call, so there is nothing to await.

mod atomic;
mod claims;
mod error;
mod lease;
mod lock;
mod owner;
mod ports;
pub mod proc;
mod registry;
mod repo;
mod scan;
mod v1;

pub use atomic::{
    TEMP_MARK, remove_stale_temps, temp_of, temp_path, write_atomic, write_atomic_with,
};
pub use claims::{Claimant, PortClaims};
pub use error::AllocError;
pub use lease::{Claim, Journal, Kept, Lease, LeaseState, Leftover, RecentPorts, compose_name};
pub use lock::{LockGuard, machine_dir, machine_lock};
pub use owner::{Owner, process_alive, start_time};
pub use ports::{PortRequest, allocate_ports, port_is_free};
pub use registry::{
    FORMAT_VERSION, Fault, LOCK_FILE, Locked, REGISTRY_FILE, Registry, RegistryOptions, State, now,
};
pub use repo::{Repo, WorktreeEntry};
pub use scan::{Declared, scan_env_files};
