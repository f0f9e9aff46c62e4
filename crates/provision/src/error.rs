//! Provisioning errors: each names the service, the URL (password hidden) and what to do.

use std::fmt;

/// A boxed source error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shared services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// PostgreSQL.
    Postgres,
    /// RabbitMQ (management API and AMQP).
    RabbitMq,
    /// Redis.
    Redis,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "PostgreSQL",
            Self::RabbitMq => "RabbitMQ",
            Self::Redis => "Redis",
        })
    }
}

/// Everything that can go wrong talking to a service. The message names the service, its
/// URL (password hidden) and what pwt was doing; the service's own words are the
/// [`source`](std::error::Error::source); [`ProvisionError::hint`] says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Cannot connect.
    #[error("{service} at {url} is unreachable")]
    Unreachable {
        /// Which service.
        service: Service,
        /// Where (password hidden).
        url: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The service answered, and refused: wrong credentials, or a missing privilege.
    #[error("{service} at {url}: {action} was refused")]
    Denied {
        /// Which service.
        service: Service,
        /// Where.
        url: String,
        /// What pwt was doing.
        action: String,
        /// What to do about it.
        remedy: String,
        /// The service's own words (`password authentication failed`, `NOAUTH`, the 401
        /// body, `permission denied to create database`).
        #[source]
        source: BoxError,
    },
    /// A resource with pwt's name exists without pwt's marker.
    #[error(
        "{service} at {url}: {what} already exists and is not this worktree's ({found}); pwt neither adopts nor drops it"
    )]
    NotOurs {
        /// Which service.
        service: Service,
        /// Where.
        url: String,
        /// The resource (`database "demo_x"`).
        what: String,
        /// What marks it instead.
        found: String,
    },
    /// `CREATE DATABASE … TEMPLATE` refused because of sessions on the source.
    #[error(
        "PostgreSQL at {url}: cannot clone database {source_db:?}: it has open sessions: {sessions}"
    )]
    CloneBlocked {
        /// Where.
        url: String,
        /// The main database.
        source_db: String,
        /// `pid 123 (psql, user postgres)`, …
        sessions: String,
    },
    /// An operation failed.
    #[error("{service} at {url}: {action} failed")]
    Failed {
        /// Which service.
        service: Service,
        /// Where.
        url: String,
        /// What pwt was doing.
        action: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The configuration cannot work.
    #[error("{service}: {message}")]
    Config {
        /// Which service.
        service: Service,
        /// What is wrong.
        message: String,
    },
}

impl ProvisionError {
    /// The service the error is about.
    pub fn service(&self) -> Service {
        match self {
            Self::Unreachable { service, .. }
            | Self::Denied { service, .. }
            | Self::NotOurs { service, .. }
            | Self::Failed { service, .. }
            | Self::Config { service, .. } => *service,
            Self::CloneBlocked { .. } => Service::Postgres,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Unreachable { .. } => {
                "is it running? `pwt doctor` checks every service".to_owned()
            }
            Self::Denied { remedy, .. } => remedy.clone(),
            Self::NotOurs { .. } => "drop or rename it yourself if it is stale, or change the name template in pwt.toml".to_owned(),
            Self::CloneBlocked { .. } => "close them (stop the main worktree's app) and retry, or set `postgres.clone_from_main = false`".to_owned(),
            Self::Failed { .. } | Self::Config { .. } => return None,
        })
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// A plain error with a message, for sources that are not errors themselves.
#[derive(Debug)]
pub struct Message(pub String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

pub(crate) fn msg(s: impl Into<String>) -> BoxError {
    Box::new(Message(s.into()))
}
