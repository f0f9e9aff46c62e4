//! One worktree's hold on machine and server resources, typed: its state, its owner while a
//! pwt works on it, the journal of what a set-up is creating, and what a teardown left.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pwt_core::{BranchName, ResourceKind, Resources, Slug};
use serde::{Deserialize, Serialize};

use crate::owner::Owner;

/// Where a lease is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// Allocated; the worktree and resources are being made (see [`Journal`]).
    Creating,
    /// Everything is in place.
    Ready,
    /// Teardown started; [`Lease::leftover`] says what is still there.
    Removing,
}

impl LeaseState {
    /// Lowercase name, as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Removing => "removing",
        }
    }
}

/// Something a teardown has not removed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Leftover {
    /// The PostgreSQL database.
    Database,
    /// The RabbitMQ vhost.
    Vhost,
    /// The Redis keys or DB.
    Redis,
    /// The worktree directory.
    Worktree,
}

impl Leftover {
    /// The leftover of a resource kind.
    pub fn of(kind: ResourceKind) -> Self {
        match kind {
            ResourceKind::Database => Self::Database,
            ResourceKind::Vhost => Self::Vhost,
            ResourceKind::Redis => Self::Redis,
        }
    }

    /// The resource kind, for data leftovers.
    pub fn kind(self) -> Option<ResourceKind> {
        match self {
            Self::Database => Some(ResourceKind::Database),
            Self::Vhost => Some(ResourceKind::Vhost),
            Self::Redis => Some(ResourceKind::Redis),
            Self::Worktree => None,
        }
    }

    /// Lowercase name, as in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Vhost => "vhost",
            Self::Redis => "redis",
            Self::Worktree => "worktree",
        }
    }
}

/// What a set-up in progress has done or is doing, written before each outside effect so
/// that whatever a kill leaves, reconcile can undo exactly it and nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Journal {
    /// `git worktree add` was started at the lease's path (empty or absent before), so the
    /// directory and git's record of it are this set-up's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub worktree: bool,
    /// The branch did not exist before: this set-up creates it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub branch: bool,
    /// `git worktree add` finished, with HEAD at this commit: from then on, changes or new
    /// commits in the worktree are someone's work, which an undo never discards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_out: Option<String>,
    /// Resources found absent and about to be created by this set-up. A database named
    /// here that exists without a marker was created by it and killed before marking.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub creating: Vec<ResourceKind>,
    /// Resources taken over from data kept by `pwt rm --keep-data`: an undo keeps them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<ResourceKind>,
}

impl Journal {
    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One worktree's hold on ports and shared resources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The repository's git common dir (canonical): the repository's identity.
    pub repo: PathBuf,
    /// Branch checked out in the worktree.
    pub branch: BranchName,
    /// The worktree's slug, unique within the repository.
    pub slug: Slug,
    /// The ownership marker its resources carry; `None` in leases of the first release,
    /// whose marker derives from repository and slug alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// The worktree root.
    pub path: PathBuf,
    /// Project name at the time of leasing.
    pub project: String,
    /// Leased ports by service name.
    pub ports: BTreeMap<String, u16>,
    /// Database, vhost and Redis slot, named when leased (before they exist).
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Life-cycle state.
    pub state: LeaseState,
    /// The pwt creating or removing it, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// What a set-up in progress is creating.
    #[serde(default, skip_serializing_if = "Journal::is_empty")]
    pub journal: Journal,
    /// Hash of what pwt last wrote to each env file, by file name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// The post-create hooks have not run to the end yet: a set-up is on its way to them,
    /// was killed before them, or they failed and the set-up was kept
    /// (`--keep-on-failure`). The next `pwt up` runs them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_hooks: bool,
    /// The main worktree's files (`files.copy`, `files.link`, `.worktreeinclude`) have not
    /// been brought yet: the next `pwt up` brings them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_files: bool,
    /// What teardown could not remove yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftover: Vec<Leftover>,
    /// Resources a teardown in progress keeps (`pwt rm --keep-data`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<ResourceKind>,
    /// The identity (`device:inode`) of the worktree directory a teardown in progress is
    /// removing: one resumed after a kill deletes that directory, never another made at
    /// the same path since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_id: Option<String>,
    /// Its Compose project name (`COMPOSE_PROJECT_NAME`) when `<project>-<slug>` was
    /// already another checkout's (two clones of one repository): that name with a suffix
    /// of this repository's. `None`: `<project>-<slug>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

impl Lease {
    /// Its Compose project name as Compose labels its containers: `compose`, or
    /// `<project>-<slug>`, lowercase, keeping what Compose v1 keeps (letters, digits, `-`,
    /// `_`).
    pub fn compose_project(&self) -> String {
        let name = self
            .compose
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.project, self.slug));
        compose_name(&name)
    }

    /// The marker of its resources.
    pub fn marker(&self) -> String {
        self.marker.clone().unwrap_or_else(|| {
            pwt_core::owner_marker(&self.repo.to_string_lossy(), self.slug.as_str())
        })
    }

    /// True while a live pwt other than this process works on it.
    pub fn busy(&self) -> Option<&Owner> {
        self.owner
            .as_ref()
            .filter(|o| self.state != LeaseState::Ready && !o.is_me() && o.is_alive())
    }

    /// True when a set-up or teardown was started by a pwt that is gone.
    pub fn interrupted(&self) -> bool {
        self.state != LeaseState::Ready && self.owner.as_ref().is_none_or(|o| !o.is_alive())
    }
}

/// Data left in place on purpose by `pwt rm --keep-data`: not an orphan for `pwt gc` (until
/// `pwt gc --kept`), and found again by `pwt new` of the same branch. Never dropped to make
/// room, unlike [`RecentPorts`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kept {
    /// Repository common dir.
    pub repo: PathBuf,
    /// Branch.
    pub branch: BranchName,
    /// The slug their marker derives from.
    pub slug: Slug,
    /// Their marker (`None`: derived from repository and slug, as the first release did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// What is kept.
    pub resources: Resources,
    /// Unix seconds.
    pub kept_at: u64,
}

impl Kept {
    /// The marker of the kept resources (in its kept form on the servers).
    pub fn marker(&self) -> String {
        self.marker.clone().unwrap_or_else(|| {
            pwt_core::owner_marker(&self.repo.to_string_lossy(), self.slug.as_str())
        })
    }
}

/// Ports a branch held last time, so it gets them back when they are free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentPorts {
    /// Repository common dir.
    pub repo: PathBuf,
    /// Branch.
    pub branch: BranchName,
    /// Ports by service.
    pub ports: BTreeMap<String, u16>,
}

/// Resources a reconcile (`pwt gc`) is dropping right now: a set-up that would name one of
/// them picks another name while the claim's owner lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Repository common dir of the pwt that claims them.
    pub repo: PathBuf,
    /// Their marker.
    pub marker: String,
    /// What is being dropped.
    pub resources: Resources,
    /// Who drops them.
    pub owner: Owner,
}

/// A name as Compose v1 labels a project with it: lowercase letters, digits, `-` and `_`.
pub fn compose_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
