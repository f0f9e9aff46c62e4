//! The policy of approvals, as types: what a command uses of a repository's pwt.toml
//! ([`Gate`]), what of it needs approving ([`Approval`]), and what happens when it is not
//! approved ([`Approvals`]). `trust.rs` applies them.

use std::sync::Arc;

/// What happens when a repository's pwt.toml would run something this user has not
/// approved on this machine (its `[hooks]`, `[processes]`, an `[env]` that says more than
/// pwt sets itself). The engine asks this policy itself before it runs any of it, in every
/// set-up, teardown and start of processes: a program embedding it cannot run an
/// unapproved hook by forgetting a call.
#[derive(Clone, Default)]
pub enum Approvals {
    /// Refuse ([`crate::ErrorKind::Unapproved`], nothing done): the default.
    #[default]
    Refuse,
    /// Ask: the callback is shown what needs approving; `true` approves it (remembered, as
    /// `pwt trust` would).
    Ask(Arc<dyn Fn(&Approval) -> bool + Send + Sync>),
    /// Go ahead without asking (automation: `--yes`, `PWT_TRUST_HOOKS=1`).
    Trust,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Refuse => "Refuse",
            Self::Ask(_) => "Ask(..)",
            Self::Trust => "Trust",
        })
    }
}

/// What a command is about to use of the repository's pwt.toml. One approval covers the
/// whole file; a command needs it only when it uses something of the file that needs it.
#[derive(Clone, Copy, Debug)]
pub struct Gate {
    /// It runs its `[hooks]`.
    pub hooks: bool,
    /// It starts its `[processes]`, or acts on its `[mcp] allow`.
    pub processes: bool,
    /// It writes or hands out the environment: an `[env]` counts even without commands,
    /// since direnv and mise load the env files into every shell of the worktree, where
    /// `GIT_CONFIG_*` or `BASH_ENV` run code.
    pub env: bool,
}

impl Gate {
    /// All the file says: to show it and approve it as a whole (`pwt trust`).
    pub const ALL: Self = Self {
        hooks: true,
        processes: true,
        env: true,
    };
}

impl Approval {
    /// What it is, for a message: `would run commands`, …
    pub fn what(&self) -> &'static str {
        match (self.commands, self.env) {
            (true, true) => {
                "would run commands, and set variables that every shell in the worktree loads (direnv, mise),"
            }
            (true, false) => "would run commands",
            _ => {
                "would set variables that every shell in the worktree loads (direnv, mise), and that can make a shell, git or a runtime run code,"
            }
        }
    }
}

/// What needs approving before a command goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// One line per command or variable, control characters removed (what is approved is
    /// what was seen).
    pub shown: String,
    /// What the approval is of.
    pub key: String,
    /// It covers commands (hooks, processes).
    pub commands: bool,
    /// It covers `[env]` entries (those that say more than pwt sets itself).
    pub env: bool,
}
