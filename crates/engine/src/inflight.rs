//! Set-ups and teardowns under way in this process, by repository and branch. A lease a pwt
//! works on names that pwt's pid as its owner, and another process finds it busy; two calls
//! of one process (threads of a program embedding the engine, an MCP server's calls) share a
//! pid, so they are told apart here: the second is refused as busy, never let take over
//! what the first is doing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, ErrorKind, Result};

static UNDER_WAY: Mutex<BTreeSet<(PathBuf, String)>> = Mutex::new(BTreeSet::new());

fn under_way() -> MutexGuard<'static, BTreeSet<(PathBuf, String)>> {
    // A panic elsewhere leaves the set as it was: still right.
    UNDER_WAY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's turn at a branch, let go when dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    key: (PathBuf, String),
}

impl Turn {
    /// Takes the turn at `branch` of the repository `repo`, or refuses as busy when another
    /// call of this process has it (`doing`: what this call is about to do, for the
    /// message).
    pub(crate) fn take(repo: &Path, branch: &str, doing: &str) -> Result<Self> {
        let key = (repo.to_owned(), branch.to_owned());
        if !under_way().insert(key.clone()) {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "branch {branch:?} is busy: another call in this process (pid {}) is setting it up or removing it; not {doing} it meanwhile",
                    std::process::id()
                ),
            )
            .hint("wait for that call to finish, then try again"));
        }
        Ok(Self { key })
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        under_way().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_at_a_time_per_branch_and_the_turn_goes_with_its_guard() {
        let repo = Path::new("/repo/.git");
        let first = Turn::take(repo, "a", "setting up").expect("free");
        let e = Turn::take(repo, "a", "removing").expect_err("taken");
        assert_eq!(e.kind(), ErrorKind::Busy);
        assert!(
            e.to_string().contains("another call in this process"),
            "{e}"
        );
        Turn::take(repo, "b", "setting up").expect("another branch is free");
        Turn::take(Path::new("/other/.git"), "a", "setting up").expect("another repository");
        drop(first);
        Turn::take(repo, "a", "setting up").expect("free again");
    }
}
