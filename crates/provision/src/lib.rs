//! `pwt-provision`: per-worktree resources on shared infrastructure.
//!
//! - [`Postgres`]: a database per worktree, created from the maintenance database (never a
//!   template) with a quoted identifier, optionally cloned from the main database, marked
//!   with `COMMENT ON DATABASE … 'pwt:…'`, dropped `WITH (FORCE)` only when the marker
//!   matches.
//! - [`RabbitMq`]: a vhost per worktree through the management HTTP API (percent-encoded,
//!   its description holding pwt's marker), permissions for the configured user, and an AMQP
//!   round trip with lapin that proves it works.
//! - [`Redis`]: a key prefix (cleanup by `SCAN MATCH` + `UNLINK` in batches, never `KEYS` or
//!   `FLUSHALL`) or a DB index (`FLUSHDB` only on a DB holding pwt's marker key).
//!
//! - [`TeamStore`]: who holds which name on the shared servers, in PostgreSQL tables
//!   guarded by a unique key, for people and machines sharing them.
//!
//! Every operation is idempotent and reports an [`Outcome`]; a resource that has pwt's name
//! but not its marker is a [`ProvisionError::NotOurs`], never adopted and never dropped.

mod error;
mod http;
mod postgres;
mod rabbitmq;
mod redis;
mod team;

pub use error::{BoxError, ProvisionError, Service, redact};
pub use postgres::{PgStatus, Postgres, quote_ident, quote_literal};
pub use rabbitmq::{RabbitMq, RabbitStatus};
pub use redis::{REDIS_MARKER_KEY, Redis, RedisStatus, escape_glob};
pub use team::{Hold, Holder, TEAM_VERSION, TeamStore};

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This call created it (so a rollback of this run removes it).
    Created,
    /// It was there already, with this worktree's marker.
    Existed,
    /// This call removed it.
    Removed,
    /// There was nothing to remove.
    Absent,
}

/// What is at a resource's name right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Nothing.
    Absent,
    /// Something without a pwt marker (or, for Redis, keys and no marker).
    Unmarked,
    /// Something carrying this marker.
    Marked(String),
}

/// A pause at a named moment inside an operation, for crash tests: the embedding program
/// sleeps there so a test can kill it at exactly that moment. Off unless set.
pub type Pause = std::sync::Arc<dyn Fn(&'static str) + Send + Sync>;

/// A resource found by its pwt marker (for `pwt gc` and `pwt doctor`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marked {
    /// Its name (database, vhost, key prefix, or `db N`).
    pub name: String,
    /// Its marker.
    pub marker: String,
}
