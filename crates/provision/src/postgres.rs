//! PostgreSQL: a database per worktree.

use std::time::Duration;

use pwt_core::{DbName, is_marker, same_owner};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Executor as _, Row as _};

use crate::error::{ProvisionError, Service, msg, redact};
use crate::{Marked, Outcome, Pause, Presence};

/// `"name"` with embedded quotes doubled: the only form in which a name reaches SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The server, reached through its maintenance database.
#[derive(Clone)]
pub struct Postgres {
    url: String,
    pause: Option<Pause>,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &self.display_url())
            .finish_non_exhaustive()
    }
}

/// SQLSTATEs pwt tells apart.
mod sqlstate {
    /// `invalid_authorization_specification` (no such role, pg_hba.conf refused it).
    pub const BAD_AUTHORIZATION: &str = "28000";
    /// `invalid_password`.
    pub const BAD_PASSWORD: &str = "28P01";
    /// `insufficient_privilege`.
    pub const NO_PRIVILEGE: &str = "42501";
    /// `object_in_use`: sessions on a template.
    pub const IN_USE: &str = "55006";
    /// `duplicate_database`.
    pub const DUPLICATE: &str = "42P04";
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// What `pwt doctor` reports.
#[derive(Clone, Debug)]
pub struct PgStatus {
    /// `SHOW server_version`.
    pub version: String,
    /// The role pwt connects as.
    pub user: String,
    /// It may create databases.
    pub createdb: bool,
    /// It is a superuser.
    pub superuser: bool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Postgres {
    /// `url` names the maintenance database (usually `postgres`), never a template.
    pub fn new(url: &str) -> Result<Self, ProvisionError> {
        let maintenance = pwt_core::url_path(url).unwrap_or("postgres");
        if maintenance.starts_with("template") {
            return Err(ProvisionError::Config {
                service: Service::Postgres,
                message: format!(
                    "postgres.url connects to {maintenance:?}; pwt never connects to a template (it would block CREATE DATABASE for everyone). Use the `postgres` database"
                ),
            });
        }
        Ok(Self {
            url: url.to_owned(),
            pause: None,
        })
    }

    /// Pauses at `"database-unmarked"` (created, not yet marked) through `pause`.
    pub fn with_pause(mut self, pause: Option<Pause>) -> Self {
        self.pause = pause;
        self
    }

    /// The role in the URL, for hints.
    fn user(&self) -> String {
        url::Url::parse(&self.url)
            .ok()
            .map(|u| u.username().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres".to_owned())
    }

    /// The URL with the password hidden.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    /// The error for `action`, telling a refusal (with its remedy) from other failures.
    fn failed(&self, action: impl Into<String>, e: sqlx::Error) -> ProvisionError {
        let action = action.into();
        let remedy = match sqlstate(&e).as_deref() {
            Some(sqlstate::NO_PRIVILEGE) if action.starts_with("CREATE DATABASE") => format!(
                "let pwt's role create databases: `ALTER ROLE {} CREATEDB;` as a superuser (pwt needs no superuser)",
                quote_ident(&self.user())
            ),
            Some(sqlstate::NO_PRIVILEGE) => format!(
                "pwt's role {} needs to own the databases it manages (it does when it created them); connect as that role in postgres.url",
                quote_ident(&self.user())
            ),
            _ => {
                return ProvisionError::Failed {
                    service: Service::Postgres,
                    url: self.display_url(),
                    action,
                    source: Box::new(e),
                };
            }
        };
        ProvisionError::Denied {
            service: Service::Postgres,
            url: self.display_url(),
            action,
            remedy,
            source: Box::new(e),
        }
    }

    async fn connect(&self) -> Result<PgConnection, ProvisionError> {
        let unreachable = |source| ProvisionError::Unreachable {
            service: Service::Postgres,
            url: self.display_url(),
            source,
        };
        let opts: PgConnectOptions = self
            .url
            .parse()
            .map_err(|e: sqlx::Error| unreachable(Box::new(e)))?;
        let opts = opts.application_name("pwt");
        match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => match sqlstate(&e).as_deref() {
                Some(sqlstate::BAD_PASSWORD | sqlstate::BAD_AUTHORIZATION) => {
                    Err(ProvisionError::Denied {
                        service: Service::Postgres,
                        url: self.display_url(),
                        action: format!("logging in as {}", quote_ident(&self.user())),
                        remedy: "check the user and password in postgres.url (and that pg_hba.conf lets that role in from here)".into(),
                        source: Box::new(e),
                    })
                }
                Some(_) => Err(self.failed("connecting", e)),
                None => Err(unreachable(Box::new(e))),
            },
            Err(_) => Err(unreachable(msg("no answer within 10 s"))),
        }
    }

    /// Connects and takes the session advisory lock of `db`'s name, waited for up to a
    /// minute. Creating, marking and dropping a database all hold it, so a drop waits for a
    /// `CREATE DATABASE` still running on the server for a pwt that was killed meanwhile: the
    /// server finishes the statement and only then ends that session, releasing the lock.
    async fn connect_locked(&self, db: &DbName) -> Result<PgConnection, ProvisionError> {
        let mut conn = self.connect().await?;
        let key = i64::from_le_bytes(
            pwt_core::stable_hash(format!("pwt database {}", db.as_str()).as_bytes()).to_le_bytes(),
        );
        let lock = sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(key)
            .execute(&mut conn);
        match tokio::time::timeout(Duration::from_secs(60), lock).await {
            Ok(Ok(_)) => Ok(conn),
            Ok(Err(e)) => Err(self.failed(format!("locking the name {:?}", db.as_str()), e)),
            Err(_) => Err(ProvisionError::Failed {
                service: Service::Postgres,
                url: self.display_url(),
                action: format!("locking the name {:?}", db.as_str()),
                source: msg("another session held it for a minute"),
            }),
        }
    }

    /// `None` when the database does not exist, else its comment.
    async fn marker_of(
        &self,
        conn: &mut PgConnection,
        db: &str,
    ) -> Result<Option<Option<String>>, ProvisionError> {
        let row = sqlx::query(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
        )
        .bind(db)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.failed("reading pg_database", e))?;
        Ok(row.map(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
    }

    fn not_ours(&self, db: &str, found: Option<String>) -> ProvisionError {
        ProvisionError::NotOurs {
            service: Service::Postgres,
            url: self.display_url(),
            what: format!("database {db:?}"),
            found: found.map_or("it has no pwt marker".to_owned(), |m| {
                format!("its comment is {m:?}")
            }),
        }
    }

    /// Creates `db` (a copy of `template` when given) marked with `marker`. One statement
    /// per call, outside any transaction, as `CREATE DATABASE` requires.
    pub async fn create(
        &self,
        db: &DbName,
        template: Option<&DbName>,
        marker: &str,
    ) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        match self.marker_of(&mut conn, db.as_str()).await? {
            Some(Some(m)) if same_owner(&m, marker) => {
                if m != marker {
                    // Kept data taken back: marked as in use again.
                    self.comment(&mut conn, db, marker).await?;
                }
                return Ok(Outcome::Existed);
            }
            Some(found) => return Err(self.not_ours(db.as_str(), found)),
            None => {}
        }
        let mut sql = format!("CREATE DATABASE {}", quote_ident(db.as_str()));
        if let Some(t) = template {
            sql.push_str(&format!(" TEMPLATE {}", quote_ident(t.as_str())));
        }
        if let Err(e) = conn.execute(AssertSqlSafe(sql)).await {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned());
            return Err(match (code.as_deref(), template) {
                (Some(sqlstate::IN_USE), Some(t)) => self.clone_blocked(&mut conn, t).await,
                // Someone created it since we looked.
                (Some(sqlstate::DUPLICATE), _) => {
                    let found = self.marker_of(&mut conn, db.as_str()).await?.flatten();
                    self.not_ours(db.as_str(), found)
                }
                _ => self.failed(format!("CREATE DATABASE {}", quote_ident(db.as_str())), e),
            });
        }
        if let Some(p) = &self.pause {
            p("database-unmarked");
        }
        let comment = format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(db.as_str()),
            quote_literal(marker)
        );
        if let Err(e) = conn.execute(AssertSqlSafe(comment)).await {
            // Unmarked, it would be neither ours nor droppable later: undo now.
            let _ = conn
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {}",
                    quote_ident(db.as_str())
                )))
                .await;
            return Err(self.failed("marking the new database", e));
        }
        let _ = conn.close().await;
        Ok(Outcome::Created)
    }

    async fn clone_blocked(&self, conn: &mut PgConnection, source: &DbName) -> ProvisionError {
        let rows = sqlx::query(
            "SELECT pid, coalesce(application_name, ''), coalesce(usename::text, '') FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(source.as_str())
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        let sessions: Vec<String> = rows
            .iter()
            .map(|r| {
                let pid: i32 = r.try_get(0).unwrap_or_default();
                let app: String = r.try_get(1).unwrap_or_default();
                let user: String = r.try_get(2).unwrap_or_default();
                let app = if app.is_empty() {
                    "no application name".to_owned()
                } else {
                    app
                };
                format!("pid {pid} ({app}, user {user})")
            })
            .collect();
        ProvisionError::CloneBlocked {
            url: self.display_url(),
            source_db: source.to_string(),
            sessions: if sessions.is_empty() {
                "they closed since".into()
            } else {
                sessions.join(", ")
            },
        }
    }

    /// Makes `db` (carrying `marker`, or absent) again as a copy of `template`, losing
    /// nothing until the copy exists: the copy is made under a name of its own (marked, so a
    /// kill leaves nothing `pwt gc` would not find), then `db` is dropped (its clients
    /// disconnected) and the copy renamed to it.
    pub async fn replace_from(
        &self,
        db: &DbName,
        template: &DbName,
        marker: &str,
    ) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        match self.marker_of(&mut conn, db.as_str()).await? {
            None => {}
            Some(Some(m)) if same_owner(&m, marker) => {}
            Some(found) => return Err(self.not_ours(db.as_str(), found)),
        }
        let copy = DbName::parse(&format!(
            "pwt_reset_{:016x}",
            pwt_core::stable_hash(db.as_str().as_bytes())
        ))
        .map_err(|e| ProvisionError::Config {
            service: Service::Postgres,
            message: e.to_string(),
        })?;
        self.force_drop(&mut conn, &copy).await?;
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote_ident(copy.as_str()),
            quote_ident(template.as_str())
        );
        if let Err(e) = conn.execute(AssertSqlSafe(sql)).await {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned());
            return Err(match code.as_deref() {
                Some(sqlstate::IN_USE) => self.clone_blocked(&mut conn, template).await,
                _ => self.failed(
                    format!(
                        "CREATE DATABASE {} TEMPLATE {}",
                        quote_ident(copy.as_str()),
                        quote_ident(template.as_str())
                    ),
                    e,
                ),
            });
        }
        self.comment(&mut conn, &copy, marker).await?;
        self.force_drop(&mut conn, db).await?;
        let rename = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(copy.as_str()),
            quote_ident(db.as_str())
        );
        conn.execute(AssertSqlSafe(rename)).await.map_err(|e| {
            self.failed(
                format!("renaming the copy {:?} to {:?}", copy.as_str(), db.as_str()),
                e,
            )
        })?;
        let _ = conn.close().await;
        Ok(Outcome::Created)
    }

    /// Drops `db` if it carries `marker`, disconnecting its clients (`WITH (FORCE)`).
    pub async fn drop(&self, db: &DbName, marker: &str) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        match self.marker_of(&mut conn, db.as_str()).await? {
            None => Ok(Outcome::Absent),
            Some(Some(m)) if same_owner(&m, marker) => {
                self.force_drop(&mut conn, db).await?;
                let _ = conn.close().await;
                Ok(Outcome::Removed)
            }
            Some(found) => Err(self.not_ours(db.as_str(), found)),
        }
    }

    /// What is at `db`: nothing, an unmarked database, or a marked one.
    pub async fn presence(&self, db: &DbName) -> Result<Presence, ProvisionError> {
        // Under the name's lock: a database another pwt is creating is seen marked, never
        // between its `CREATE DATABASE` and its comment.
        let mut conn = self.connect_locked(db).await?;
        let found = self.marker_of(&mut conn, db.as_str()).await?;
        let _ = conn.close().await;
        Ok(match found {
            None => Presence::Absent,
            Some(Some(m)) if is_marker(&m) => Presence::Marked(m),
            Some(_) => Presence::Unmarked,
        })
    }

    /// Drops `db` when it carries `marker`, or no comment at all: for a set-up that recorded
    /// it was about to create `db` (after seeing it absent) and was killed between
    /// `CREATE DATABASE` and marking it. Anything else is not touched.
    pub async fn drop_created(&self, db: &DbName, marker: &str) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        let outcome = match self.marker_of(&mut conn, db.as_str()).await? {
            None => Outcome::Absent,
            Some(Some(m)) if !same_owner(&m, marker) => {
                return Err(self.not_ours(db.as_str(), Some(m)));
            }
            Some(_) => {
                self.force_drop(&mut conn, db).await?;
                Outcome::Removed
            }
        };
        let _ = conn.close().await;
        Ok(outcome)
    }

    async fn force_drop(&self, conn: &mut PgConnection, db: &DbName) -> Result<(), ProvisionError> {
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(db.as_str())
        );
        conn.execute(AssertSqlSafe(sql))
            .await
            .map_err(|e| self.failed(format!("DROP DATABASE {}", quote_ident(db.as_str())), e))?;
        Ok(())
    }

    async fn comment(
        &self,
        conn: &mut PgConnection,
        db: &DbName,
        marker: &str,
    ) -> Result<(), ProvisionError> {
        let sql = format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_ident(db.as_str()),
            quote_literal(marker)
        );
        conn.execute(AssertSqlSafe(sql))
            .await
            .map_err(|e| self.failed("marking the database", e))?;
        Ok(())
    }

    /// Marks `db` with `marker` (say, its kept form) when it carries the same owner's marker.
    pub async fn remark(&self, db: &DbName, marker: &str) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        let outcome = match self.marker_of(&mut conn, db.as_str()).await? {
            None => Outcome::Absent,
            Some(Some(m)) if same_owner(&m, marker) => {
                self.comment(&mut conn, db, marker).await?;
                Outcome::Existed
            }
            Some(found) => return Err(self.not_ours(db.as_str(), found)),
        };
        let _ = conn.close().await;
        Ok(outcome)
    }

    /// Every database's name.
    pub async fn database_names(&self) -> Result<Vec<String>, ProvisionError> {
        let mut conn = self.connect().await?;
        let rows: Vec<(String,)> = sqlx::query_as("SELECT datname::text FROM pg_database")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| self.failed("listing databases", e))?;
        let _ = conn.close().await;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    /// Drops `db` when it carries no pwt marker: for the test databases a framework derived
    /// from a worktree's database (they carry none; their name makes them the worktree's).
    /// One with a pwt marker is some worktree's own database (`<db>_test` is also the
    /// database of a branch `…-test`): it is never dropped as a test database.
    pub async fn drop_derived(&self, db: &DbName) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect_locked(db).await?;
        let outcome = match self.marker_of(&mut conn, db.as_str()).await? {
            None => Outcome::Absent,
            Some(Some(m)) if is_marker(&m) => Outcome::Absent,
            Some(_) => {
                self.force_drop(&mut conn, db).await?;
                Outcome::Removed
            }
        };
        let _ = conn.close().await;
        Ok(outcome)
    }

    /// Databases carrying a pwt marker.
    pub async fn marked(&self) -> Result<Vec<Marked>, ProvisionError> {
        let mut conn = self.connect().await?;
        let rows = sqlx::query(
            "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE shobj_description(oid, 'pg_database') LIKE 'pwt:%'",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| self.failed("listing databases", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let name: String = r.try_get(0).ok()?;
                let marker: String = r.try_get(1).ok()?;
                is_marker(&marker).then_some(Marked { name, marker })
            })
            .collect())
    }

    /// Version and privileges of the role pwt uses.
    pub async fn status(&self) -> Result<PgStatus, ProvisionError> {
        let mut conn = self.connect().await?;
        let row = sqlx::query(
            "SELECT current_setting('server_version'), current_user::text, rolcreatedb, rolsuper FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(|e| self.failed("reading the role's privileges", e))?;
        Ok(PgStatus {
            version: row.try_get(0).unwrap_or_default(),
            user: row.try_get(1).unwrap_or_default(),
            createdb: row.try_get(2).unwrap_or(false),
            superuser: row.try_get(3).unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\";DROP DATABASE prod;--"),
            "\"x\"\";DROP DATABASE prod;--\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn refuses_template_maintenance_db() {
        assert!(Postgres::new("postgres://u@h/template1").is_err());
        assert!(Postgres::new("postgres://u@h/postgres").is_ok());
        assert!(Postgres::new("postgres://u@h").is_ok());
    }
}
