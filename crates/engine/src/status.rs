//! One worktree as it is right now, for a person asking "why does my server not answer" and
//! for an agent asking what it has (`pwt status`, the MCP server's `status` and
//! `environment` tools): its ports and whether each listens, its services and whether each
//! answers with this worktree's resource, what runs for it and what that uses, the last lines
//! its `[processes]` logged, and each variable of its environment with what it is.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

use pwt_provision::Presence;

use crate::error::{Error, ErrorKind, Result};
use crate::output::{EnvVarOut, ResourceState, ServiceOut, StatusOut, WorktreeOut};
use crate::project::{Project, Selector, Target};

/// At most this many lines of a log are shown.
pub const MAX_LOG_LINES: usize = 500;

impl Project {
    /// The worktree of `arg` (branch, slug or path; `None`: the one pwt runs in) as it is
    /// now, with the last `log_lines` lines of each of its process logs (at most
    /// [`MAX_LOG_LINES`]).
    pub fn status(&self, arg: Option<&Selector>, log_lines: usize) -> Result<StatusOut> {
        let m = self.managed(arg)?;
        let mut rows = self.list(true)?;
        let at = rows.iter().position(|r| r.path == m.root).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("{} is not among the worktrees", m.root.display()),
            )
        })?;
        let mut row = rows.swap_remove(at);
        crate::info::measure_usage(std::slice::from_mut(&mut row));
        let services = match &m.target {
            Target::Leased(lease) => self.service_states(lease),
            _ => Vec::new(),
        };
        let logs = row
            .processes
            .iter()
            .filter_map(|(p, _)| {
                let log = p.log.as_deref()?;
                Some((p.name.clone(), tail(log, log_lines.min(MAX_LOG_LINES))))
            })
            .collect();
        Ok(StatusOut {
            worktree: WorktreeOut::from(&row),
            services,
            logs,
        })
    }

    /// Each variable of the worktree's environment with what it is. An `[env]` of the
    /// repository's pwt.toml that needs approval is refused until approved.
    pub fn explained_environment(&self, arg: Option<&Selector>) -> Result<Vec<EnvVarOut>> {
        let (_, env) = self.worktree_environment(arg)?;
        Ok(env
            .iter()
            .map(|(name, value)| EnvVarOut {
                name: name.to_owned(),
                value: value.to_owned(),
                about: pwt_core::describe_variable(&self.config, name),
            })
            .collect())
    }

    /// Drops the database of the worktree of `arg` and makes it again as a copy of the main
    /// worktree's (`CREATE DATABASE … TEMPLATE`), for a fresh start with the main data.
    /// Returns the database's name. Its clients are disconnected; nothing else of the
    /// worktree changes. The main worktree's database is never reset.
    pub fn reset_database(&self, arg: Option<&Selector>) -> Result<String> {
        let m = self.managed(arg)?;
        let Target::Leased(lease) = &m.target else {
            return Err(Error::new(
                ErrorKind::Refused,
                "this is the main worktree: its database is the one others are copied from, never reset",
            ));
        };
        let (Some(pg), Some(db)) = (&self.config.postgres, &lease.resources.database) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the worktree {:?} has no database", lease.branch.as_str()),
            )
            .hint("[postgres] in pwt.toml gives each worktree one"));
        };
        if lease.state != pwt_alloc::LeaseState::Ready {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "the worktree {:?} is {}, not ready",
                    lease.branch.as_str(),
                    lease.state.as_str()
                ),
            ));
        }
        let main = pg
            .main_database
            .clone()
            .unwrap_or_else(|| self.project_name());
        let from = pwt_core::DbName::parse(&main).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                "invalid value for `postgres.main_database`",
            )
            .caused_by(e)
        })?;
        let services = crate::services::Services::new(self)?;
        services
            .block_on(services.reset_database(db, &lease.marker(), &from))
            .unwrap_or(Ok(pwt_provision::Outcome::Absent))
            .map_err(|e| {
                Error::from(e).context(format!(
                    "cannot make {:?} again from the main database {main:?}",
                    db.as_str()
                ))
            })?;
        Ok(db.as_str().to_owned())
    }

    /// What each service says of the lease's resource.
    fn service_states(&self, lease: &pwt_alloc::Lease) -> Vec<ServiceOut> {
        let services = match crate::services::Services::new(self) {
            Ok(s) if s.any() => s,
            _ => return Vec::new(),
        };
        let marker = lease.marker();
        let probed = services
            .block_on(services.probe(&lease.resources))
            .unwrap_or_default();
        probed
            .into_iter()
            .map(|(kind, found)| {
                let (state, detail) = match found {
                    Ok(Presence::Marked(m)) if m == marker => (ResourceState::Ready, None),
                    Ok(Presence::Absent) => (
                        ResourceState::Missing,
                        Some(format!("`pwt up {}` makes it again (empty)", lease.slug)),
                    ),
                    Ok(Presence::Marked(m)) => {
                        (ResourceState::NotOurs, Some(format!("marked {m:?}")))
                    }
                    Ok(Presence::Unmarked) => {
                        (ResourceState::NotOurs, Some("no pwt marker".to_owned()))
                    }
                    Err(e) => (ResourceState::Unreachable, Some(crate::services::chain(&e))),
                };
                ServiceOut {
                    kind,
                    resource: lease.resources.describe(kind).unwrap_or_default(),
                    state,
                    detail,
                }
            })
            .collect()
    }
}

/// The last `n` lines of the file at `path` (reading at most its last 256 KiB).
fn tail(path: &Path, n: usize) -> Vec<String> {
    const WINDOW: u64 = 256 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file
        .seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .is_err()
    {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip_partial = usize::from(len > WINDOW);
    lines[skip_partial.min(lines.len())..]
        .iter()
        .rev()
        .take(n)
        .rev()
        .map(|l| (*l).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_gives_the_last_lines_of_a_big_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("web.log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).expect("write");
        assert_eq!(tail(&log, 2), ["line 99998", "line 99999"]);
        assert_eq!(tail(&log, 0), Vec::<String>::new());
        assert_eq!(tail(&dir.path().join("none"), 3), Vec::<String>::new());
        std::fs::write(&log, "a\nb\n").expect("write");
        assert_eq!(tail(&log, 5), ["a", "b"]);
    }
}
