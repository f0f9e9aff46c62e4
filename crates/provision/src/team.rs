//! The team store: which holder (`user@host`, a repository, a branch) holds which name on
//! the shared servers, in tables of a PostgreSQL everyone reaches. A claim is an `INSERT`
//! guarded by the primary key (kind, server, name), so two people or machines never hold
//! the same database name, vhost, Redis prefix or DB index, whatever their registries say.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _, Row as _};

use crate::error::{ProvisionError, Service, msg, redact};

/// The store's format; a newer one is refused.
pub const TEAM_VERSION: i32 = 1;

/// Who holds something.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// `user@host`.
    pub holder: String,
    /// The repository (its git common dir, as that machine names it).
    pub repo: String,
    /// The branch.
    pub branch: String,
}

/// One row of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Which service.
    pub kind: pwt_core::ResourceKind,
    /// The server it lives on (its URL without password or path).
    pub server: String,
    /// The name (a Redis DB index as `db N`).
    pub name: String,
    /// Who holds it.
    pub who: Holder,
    /// Since when (`YYYY-MM-DD HH:MM`).
    pub since: String,
}

/// The store.
#[derive(Clone, Debug)]
pub struct TeamStore {
    url: String,
}

const SETUP: &[&str] = &[
    "CREATE SCHEMA IF NOT EXISTS pwt_team",
    "CREATE TABLE IF NOT EXISTS pwt_team.meta (key text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pwt_team.holds (
        kind text NOT NULL, server text NOT NULL, name text NOT NULL,
        holder text NOT NULL, repo text NOT NULL, branch text NOT NULL,
        since timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (kind, server, name))",
    "INSERT INTO pwt_team.meta (key, value) VALUES ('version', '1') ON CONFLICT (key) DO NOTHING",
];

impl TeamStore {
    /// The store at `url` (a PostgreSQL database pwt may create a schema in).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
        }
    }

    /// The URL, password hidden.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    fn failed(&self, action: &str, e: sqlx::Error) -> ProvisionError {
        ProvisionError::Failed {
            service: Service::Postgres,
            url: format!("{} (the team store)", self.display_url()),
            action: action.to_owned(),
            source: Box::new(e),
        }
    }

    /// Connects, creating the tables on first use (once, under an advisory lock, however
    /// many pwt start at once) and refusing a store a newer pwt made.
    async fn connect(&self) -> Result<PgConnection, ProvisionError> {
        let url = format!("{} (the team store)", self.display_url());
        let unreachable = |source| ProvisionError::Unreachable {
            service: Service::Postgres,
            url: url.clone(),
            source,
        };
        let opts: PgConnectOptions = self.url.parse().map_err(|e: sqlx::Error| ProvisionError::Config {
            service: Service::Postgres,
            message: format!("team.url {:?} is not a PostgreSQL URL ({e}): write it as postgres://user@host:5432/database", self.display_url()),
        })?;
        let mut conn = match tokio::time::timeout(
            Duration::from_secs(10),
            opts.application_name("pwt").connect(),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let remedy = match e.as_database_error().and_then(|d| d.code()).as_deref() {
                    Some("3D000") => format!(
                        "create the team store's database once (`createdb {}` against that server), or point [team] url at an existing database",
                        pwt_core::url_path(&self.url).unwrap_or("pwt")
                    ),
                    Some("28000" | "28P01") => {
                        "check the role and password in [team] url (or PWT_TEAM__URL)".to_owned()
                    }
                    _ => return Err(unreachable(Box::new(e))),
                };
                return Err(ProvisionError::Denied {
                    service: Service::Postgres,
                    url,
                    action: "connecting".into(),
                    remedy,
                    source: Box::new(e),
                });
            }
            Err(_) => return Err(unreachable(msg("no answer within 10 s"))),
        };
        let version: Option<(String,)> =
            match sqlx::query_as("SELECT value FROM pwt_team.meta WHERE key = 'version'")
                .fetch_optional(&mut conn)
                .await
            {
                Ok(v) => v,
                // No schema or table yet: the first use creates them.
                Err(e)
                    if matches!(
                        e.as_database_error().and_then(|d| d.code()).as_deref(),
                        Some("42P01" | "3F000")
                    ) =>
                {
                    None
                }
                Err(e) => return Err(self.failed("reading the team store's version", e)),
            };
        let version = match version {
            Some((v,)) => v,
            None => {
                self.create_tables(&mut conn).await?;
                TEAM_VERSION.to_string()
            }
        };
        if version.parse::<i32>().unwrap_or(i32::MAX) > TEAM_VERSION {
            return Err(ProvisionError::Config {
                service: Service::Postgres,
                message: format!(
                    "the team store at {} has format {version}, newer than this pwt understands ({TEAM_VERSION}): upgrade pwt",
                    self.display_url()
                ),
            });
        }
        Ok(conn)
    }

    async fn create_tables(&self, conn: &mut PgConnection) -> Result<(), ProvisionError> {
        let mut tx = conn
            .begin()
            .await
            .map_err(|e| self.failed("creating the team store", e))?;
        sqlx::query("SELECT pg_advisory_xact_lock(7275871) ")
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed("creating the team store", e))?;
        for statement in SETUP {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.failed("creating the team store", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.failed("creating the team store", e))
    }

    /// Claims each (kind, server, name) for `who`. Returns those someone else holds
    /// (claims of `who` itself are fine).
    pub async fn claim(
        &self,
        items: &[(String, String, String)],
        who: &Holder,
    ) -> Result<Vec<(String, String, String)>, ProvisionError> {
        let mut conn = self.connect().await?;
        let mut held = Vec::new();
        for (kind, server, name) in items {
            let inserted = sqlx::query(
                "INSERT INTO pwt_team.holds (kind, server, name, holder, repo, branch) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, server, name) DO NOTHING",
            )
            .bind(kind).bind(server).bind(name)
            .bind(&who.holder).bind(&who.repo).bind(&who.branch)
            .execute(&mut conn)
            .await
            .map_err(|e| self.failed("claiming a name", e))?
            .rows_affected();
            if inserted == 1 {
                continue;
            }
            let row = sqlx::query("SELECT holder, repo, branch FROM pwt_team.holds WHERE kind = $1 AND server = $2 AND name = $3")
                .bind(kind).bind(server).bind(name)
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| self.failed("reading a claim", e))?;
            let mine = row.is_some_and(|r| {
                r.try_get::<String, _>(0).ok().as_deref() == Some(who.holder.as_str())
                    && r.try_get::<String, _>(1).ok().as_deref() == Some(who.repo.as_str())
                    && r.try_get::<String, _>(2).ok().as_deref() == Some(who.branch.as_str())
            });
            if !mine {
                held.push((kind.clone(), server.clone(), name.clone()));
            }
        }
        let _ = conn.close().await;
        Ok(held)
    }

    /// Lets go of what `who` holds among `items`; nobody else's.
    pub async fn release(
        &self,
        items: &[(String, String, String)],
        who: &Holder,
    ) -> Result<(), ProvisionError> {
        let mut conn = self.connect().await?;
        for (kind, server, name) in items {
            sqlx::query("DELETE FROM pwt_team.holds WHERE kind = $1 AND server = $2 AND name = $3 AND holder = $4 AND repo = $5 AND branch = $6")
                .bind(kind).bind(server).bind(name)
                .bind(&who.holder).bind(&who.repo).bind(&who.branch)
                .execute(&mut conn)
                .await
                .map_err(|e| self.failed("releasing a claim", e))?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// Everything held, by anyone.
    pub async fn holds(&self) -> Result<Vec<Hold>, ProvisionError> {
        let mut conn = self.connect().await?;
        let rows = sqlx::query(
            "SELECT kind, server, name, holder, repo, branch, to_char(since, 'YYYY-MM-DD HH24:MI') FROM pwt_team.holds ORDER BY holder, repo, branch, kind",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| self.failed("listing the team store", e))?;
        let _ = conn.close().await;
        let get =
            |r: &sqlx::postgres::PgRow, i: usize| r.try_get::<String, _>(i).unwrap_or_default();
        // A kind this pwt does not know (a newer pwt's) is left out.
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(Hold {
                    kind: get(r, 0).parse().ok()?,
                    server: get(r, 1),
                    name: get(r, 2),
                    who: Holder {
                        holder: get(r, 3),
                        repo: get(r, 4),
                        branch: get(r, 5),
                    },
                    since: get(r, 6),
                })
            })
            .collect())
    }
}
