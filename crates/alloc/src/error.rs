//! The errors of the allocator.

use std::path::PathBuf;

/// Everything that can go wrong while reading, locking or changing the registry.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What pwt was doing.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The registry does not parse; it is left as it is.
    #[error("the registry {path} is corrupt ({detail}); pwt left it untouched")]
    Corrupt {
        /// The registry file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// Written by a newer pwt.
    #[error(
        "the registry {path} has format version {found}, newer than this pwt understands ({supported}); pwt left it untouched"
    )]
    FutureVersion {
        /// The registry file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// Another process kept the lock for too long.
    #[error("timed out after {seconds} s waiting for the lock {path}{holder}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long pwt waited.
        seconds: u64,
        /// ` (held by pid N)` when known.
        holder: String,
    },
    /// No block of free ports left in the range.
    #[error("no {needed} free ports left in the range {lo}-{hi}: every block is leased or in use")]
    PortsExhausted {
        /// Ports per worktree.
        needed: usize,
        /// Range start.
        lo: u16,
        /// Range end.
        hi: u16,
    },
    /// No free Redis DB index left.
    #[error("all Redis DB indexes 1-{max} are leased or held by someone else")]
    RedisDbsExhausted {
        /// Highest index.
        max: u16,
    },
    /// git2 could not read the repository.
    #[error("cannot read the git repository at {path}")]
    Git {
        /// Where pwt looked.
        path: PathBuf,
        /// git2's error.
        #[source]
        source: git2::Error,
    },
}

impl AllocError {
    /// What to do about it.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::Corrupt { .. } => {
                "inspect or move the file away, then run `pwt doctor --rebuild` in each repository to rebuild it from the worktrees' env files"
            }
            Self::FutureVersion { .. } => "upgrade pwt",
            Self::LockTimeout { .. } => "another pwt is running; if it is stuck, stop it",
            Self::PortsExhausted { .. } => {
                "remove worktrees you no longer need (`pwt list`, `pwt rm`, `pwt gc`) or widen `ports.range`"
            }
            Self::RedisDbsExhausted { .. } => {
                "remove worktrees you no longer need, raise `databases` in redis.conf, or use `redis.mode = \"prefix\"`"
            }
            Self::Io { .. } | Self::Git { .. } => return None,
        })
    }
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> AllocError {
    let path = path.into();
    move |source| AllocError::Io {
        action,
        path,
        source,
    }
}
