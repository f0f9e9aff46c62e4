//! The library's error: a kind a program can act on, a message naming what went wrong, the
//! whole chain of causes (down to the service's own words), a hint saying what to do, and,
//! for a set-up that failed, what its rollback undid and what it could not.

use std::fmt;

use pwt_alloc::AllocError;
use pwt_provision::ProvisionError;

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure it is: what a program embedding pwt may branch on (the binary maps
/// it to exit codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is not usable: a branch name, a path, an argument.
    Invalid,
    /// No such worktree, branch or lease.
    NotFound,
    /// It exists already (a branch checked out elsewhere, a lease of the branch).
    Exists,
    /// Going on would lose data pwt does not own: uncommitted work, an edited env file.
    /// Nothing was touched.
    Refused,
    /// The repository's pwt.toml would run something (hooks, processes, an `[env]`) this user
    /// has not approved on this machine. Nothing was done.
    Unapproved,
    /// Another pwt is creating or removing it right now.
    Busy,
    /// No port block, or Redis DB index, is left.
    Exhausted,
    /// A shared service failed or refused.
    Service,
    /// git failed.
    Git,
    /// The registry, its lock or the state directory.
    Registry,
    /// The configuration cannot work.
    Config,
    /// A hook failed.
    Hook,
    /// A file could not be read or written.
    Io,
    /// A teardown could not remove everything; the lease stays `removing`, listing the rest.
    Incomplete,
    /// Interrupted (Ctrl-C); what the run had made was rolled back.
    Cancelled,
}

/// What the rollback of a failed set-up did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rollback {
    /// What it removed again (`database "demo_x"`, `the worktree`).
    pub undone: Vec<crate::events::Released>,
    /// What it could not remove, with why; the lease stays `removing` so `pwt rm` finishes.
    pub stuck: Vec<String>,
}

/// An error of the pwt library.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// `None`: the source's message is this error's (transparent).
    message: Option<String>,
    hint: Option<String>,
    source: Option<BoxError>,
    rollback: Option<Rollback>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: Some(message.into()),
            hint: None,
            source: None,
            rollback: None,
        }
    }

    /// The same error with a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same error caused by `source`. A hint of the source (a pwt error's) is kept when
    /// this one has none.
    #[must_use]
    pub fn caused_by(mut self, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        if self.hint.is_none() {
            self.hint = hint_of(source.as_ref());
        }
        self.source = Some(source);
        self
    }

    /// This error as the cause of a new one of the same kind: `context` becomes the message.
    #[must_use]
    pub fn context(self, context: impl Into<String>) -> Self {
        let kind = self.kind;
        let rollback = self.rollback.clone();
        let mut e = Error::new(kind, context).caused_by(self);
        e.rollback = rollback;
        e
    }

    /// The same error, reporting what a rollback did.
    #[must_use]
    pub(crate) fn with_rollback(mut self, rollback: Rollback) -> Self {
        self.rollback = Some(rollback);
        self
    }

    /// An error whose message is `source`'s own.
    pub(crate) fn transparent(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        let source = source.into();
        Self {
            kind,
            message: None,
            hint: hint_of(source.as_ref()),
            source: Some(source),
            rollback: None,
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What to do about it, if pwt knows.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// What the rollback of a failed set-up did, when there was one.
    pub fn rollback(&self) -> Option<&Rollback> {
        self.rollback.as_ref()
    }

    /// The message, every cause, the rollback and the hint, one per line: the whole story
    /// for a log or a terminal.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        for c in causes(std::error::Error::source(self)) {
            out.push_str(&format!("\n  caused by: {c}"));
        }
        if let Some(r) = &self.rollback {
            out.push_str(&r.describe());
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("\n  hint: {h}"));
        }
        out
    }
}

impl Rollback {
    /// `rolled back: …` and `could not roll back: …` lines.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.undone.is_empty() && self.stuck.is_empty() {
            out.push_str("\n  nothing was left behind");
        }
        if !self.undone.is_empty() {
            out.push_str(&format!(
                "\n  rolled back: {}",
                crate::events::joined(&self.undone)
            ));
        }
        if !self.stuck.is_empty() {
            out.push_str(&format!(
                "\n  could not roll back: {}",
                self.stuck.join("; ")
            ));
        }
        out
    }
}

/// The hint a lower error carries, for the errors that have one.
fn hint_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(p) = e.downcast_ref::<ProvisionError>() {
        return p.hint();
    }
    if let Some(a) = e.downcast_ref::<AllocError>() {
        return a.hint().map(str::to_owned);
    }
    if let Some(x) = e.downcast_ref::<Error>() {
        return x.hint.clone();
    }
    None
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.message, &self.source) {
            (Some(m), _) => f.write_str(m),
            (None, Some(s)) => s.fmt(f),
            (None, None) => f.write_str("unknown error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let own = self
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static));
        if self.message.is_some() {
            own
        } else {
            own.and_then(std::error::Error::source)
        }
    }
}

impl From<AllocError> for Error {
    fn from(e: AllocError) -> Self {
        let kind = match &e {
            AllocError::PortsExhausted { .. } | AllocError::RedisDbsExhausted { .. } => {
                ErrorKind::Exhausted
            }
            AllocError::Git { .. } => ErrorKind::Git,
            _ => ErrorKind::Registry,
        };
        Error::transparent(kind, e)
    }
}

impl From<ProvisionError> for Error {
    fn from(e: ProvisionError) -> Self {
        let kind = match &e {
            ProvisionError::Config { .. } => ErrorKind::Config,
            ProvisionError::NotOurs { .. } => ErrorKind::Exists,
            _ => ErrorKind::Service,
        };
        Error::transparent(kind, e)
    }
}

impl From<pwt_core::TemplateError> for Error {
    fn from(e: pwt_core::TemplateError) -> Self {
        Error::transparent(ErrorKind::Config, e)
    }
}

impl From<pwt_core::ResourceError> for Error {
    fn from(e: pwt_core::ResourceError) -> Self {
        Error::transparent(ErrorKind::Config, e)
    }
}

impl From<pwt_core::EnvError> for Error {
    fn from(e: pwt_core::EnvError) -> Self {
        Error::transparent(ErrorKind::Config, e)
    }
}

impl From<pwt_core::BranchNameError> for Error {
    fn from(e: pwt_core::BranchNameError) -> Self {
        Error::transparent(ErrorKind::Invalid, e)
    }
}

/// The texts of `first` and every cause after it, leaving out one that only repeats the end
/// of the one before (sqlx's "error returned from database: X" is caused by "X").
pub fn causes(first: Option<&(dyn std::error::Error + 'static)>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cause = first;
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.last().is_some_and(|prev| prev.ends_with(&text)) {
            out.push(text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_holds_every_cause_the_rollback_and_the_hint() {
        let root = std::io::Error::other("permission denied to create database");
        let e = Error::new(ErrorKind::Service, "PostgreSQL: CREATE DATABASE failed")
            .caused_by(root)
            .hint("ALTER ROLE x CREATEDB")
            .context("cannot set up the worktree for \"x\"")
            .with_rollback(Rollback {
                undone: vec![crate::events::Released::Worktree],
                stuck: vec![],
            });
        assert_eq!(e.kind(), ErrorKind::Service);
        assert_eq!(e.hint_text(), Some("ALTER ROLE x CREATEDB"));
        let text = e.report();
        for needle in [
            "cannot set up the worktree",
            "caused by: PostgreSQL: CREATE DATABASE failed",
            "caused by: permission denied to create database",
            "rolled back: the worktree",
            "hint: ALTER ROLE x CREATEDB",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
    }

    #[test]
    fn transparent_errors_show_their_source_once() {
        let e: Error = AllocError::RedisDbsExhausted { max: 15 }.into();
        assert_eq!(e.kind(), ErrorKind::Exhausted);
        let text = e.report();
        assert_eq!(text.matches("1-15").count(), 1, "{text}");
        assert!(e.hint_text().is_some());
    }
}
