//! Redis: a key prefix or a DB index per worktree.

use std::time::Duration;

use pwt_core::{RedisPrefix, is_marker, same_owner, with_path};
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;

use crate::error::{ProvisionError, Service, msg, redact};
use crate::{Marked, Outcome, Presence};

/// The key holding pwt's marker: `<prefix>__pwt_owner__` in prefix mode, `__pwt_owner__` in
/// a leased DB.
pub const REDIS_MARKER_KEY: &str = "__pwt_owner__";

/// How many keys one `UNLINK` removes during cleanup.
const BATCH: usize = 500;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `text` with the glob characters of `SCAN MATCH` escaped, so a prefix matches itself only.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The remedy when Redis refused pwt (a password it needs or got wrong, an ACL that does
/// not allow a command), `None` for other errors.
fn refusal(e: &redis::RedisError) -> Option<&'static str> {
    let code = e.code().unwrap_or_default();
    if e.kind() == redis::ErrorKind::AuthenticationFailed || code == "NOAUTH" || code == "WRONGPASS"
    {
        Some(
            "put the password in redis.url: redis://:PASSWORD@host:6379 (or redis://USER:PASSWORD@… with ACLs)",
        )
    } else if code == "NOPERM" {
        Some(
            "let the ACL user run what pwt uses: GET, SET, SCAN, UNLINK, DBSIZE, FLUSHDB, SELECT, INFO (and CONFIG GET in db mode)",
        )
    } else {
        None
    }
}

/// The server.
#[derive(Clone, Debug)]
pub struct Redis {
    url: String,
}

/// What `pwt doctor` reports.
#[derive(Clone, Debug)]
pub struct RedisStatus {
    /// `databases` from `CONFIG GET`, if allowed.
    pub databases: Option<u16>,
    /// Redis Cluster (only prefix mode works there).
    pub cluster: bool,
    /// Server version.
    pub version: String,
}

impl Redis {
    /// The server at `url` (its DB index, if any, is the main worktree's).
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
        }
    }

    /// The URL with the password hidden.
    pub fn display_url(&self) -> String {
        redact(&self.url)
    }

    fn failed(&self, action: impl Into<String>, e: redis::RedisError) -> ProvisionError {
        let action = action.into();
        match refusal(&e) {
            Some(remedy) => ProvisionError::Denied {
                service: Service::Redis,
                url: self.display_url(),
                action,
                remedy: remedy.to_owned(),
                source: Box::new(e),
            },
            None => ProvisionError::Failed {
                service: Service::Redis,
                url: self.display_url(),
                action,
                source: Box::new(e),
            },
        }
    }

    async fn connect(&self, db: Option<u16>) -> Result<MultiplexedConnection, ProvisionError> {
        let url = match db {
            Some(n) => with_path(&self.url, &n.to_string()),
            None => self.url.clone(),
        };
        let unreachable = |source| ProvisionError::Unreachable {
            service: Service::Redis,
            url: redact(&url),
            source,
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| unreachable(Box::new(e)))?;
        match tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) if refusal(&e).is_some() => Err(self.failed("logging in", e)),
            Ok(Err(e)) => Err(unreachable(Box::new(e))),
            Err(_) => Err(unreachable(msg("no answer within 10 s"))),
        }
    }

    /// Every key matching `pattern`, a batch at a time (`SCAN`, never `KEYS`). `each` returns
    /// false to stop early.
    async fn scan(
        &self,
        conn: &mut MultiplexedConnection,
        pattern: &str,
        mut each: impl AsyncFnMut(
            &mut MultiplexedConnection,
            Vec<String>,
        ) -> Result<bool, ProvisionError>,
    ) -> Result<(), ProvisionError> {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(conn)
                .await
                .map_err(|e| self.failed("SCAN", e))?;
            if !each(conn, keys).await? || next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// The marker stored at `key`, if any.
    async fn marker_at(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
    ) -> Result<Option<String>, ProvisionError> {
        conn.get(key).await.map_err(|e| self.failed("GET", e))
    }

    /// Number of keys in the connection's DB.
    async fn dbsize(&self, conn: &mut MultiplexedConnection) -> Result<i64, ProvisionError> {
        redis::cmd("DBSIZE")
            .query_async(conn)
            .await
            .map_err(|e| self.failed("DBSIZE", e))
    }

    /// Claims `what` by setting its marker key, unless another process got there first.
    async fn set_marker(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        marker: &str,
        what: String,
    ) -> Result<Outcome, ProvisionError> {
        let set: bool = conn
            .set_nx(key, marker)
            .await
            .map_err(|e| self.failed("SET NX", e))?;
        if set {
            Ok(Outcome::Created)
        } else {
            Err(self.not_ours(what, "another process claimed it just now".into()))
        }
    }

    fn not_ours(&self, what: String, found: String) -> ProvisionError {
        ProvisionError::NotOurs {
            service: Service::Redis,
            url: self.display_url(),
            what,
            found,
        }
    }

    /// True when any key starts with `prefix`, other than the marker and keys under `spare`.
    async fn any_key(
        &self,
        conn: &mut MultiplexedConnection,
        prefix: &str,
        spare: &[RedisPrefix],
    ) -> Result<bool, ProvisionError> {
        let pattern = format!("{}*", escape_glob(prefix));
        let marker_key = format!("{prefix}{REDIS_MARKER_KEY}");
        let mut found = false;
        self.scan(conn, &pattern, async |_, keys| {
            found = keys
                .iter()
                .any(|k| k != &marker_key && !spare.iter().any(|s| k.starts_with(s.as_str())));
            Ok(!found)
        })
        .await?;
        Ok(found)
    }

    /// What is at `prefix`: nothing, keys without pwt's marker, or its marker.
    pub async fn prefix_presence(&self, prefix: &RedisPrefix) -> Result<Presence, ProvisionError> {
        let mut conn = self.connect(None).await?;
        let key = format!("{}{REDIS_MARKER_KEY}", prefix.as_str());
        Ok(match self.marker_at(&mut conn, &key).await? {
            Some(m) if is_marker(&m) => Presence::Marked(m),
            Some(_) => Presence::Unmarked,
            None if self.any_key(&mut conn, prefix.as_str(), &[]).await? => Presence::Unmarked,
            None => Presence::Absent,
        })
    }

    /// What is in DB `index`: nothing, keys without pwt's marker, or its marker.
    pub async fn db_presence(&self, index: u16) -> Result<Presence, ProvisionError> {
        let mut conn = self.connect(Some(index)).await?;
        Ok(match self.marker_at(&mut conn, REDIS_MARKER_KEY).await? {
            Some(m) if is_marker(&m) => Presence::Marked(m),
            Some(_) => Presence::Unmarked,
            None if self.dbsize(&mut conn).await? > 0 => Presence::Unmarked,
            None => Presence::Absent,
        })
    }

    /// Claims `prefix` by setting its marker key. Refuses when keys with the prefix exist
    /// without this worktree's marker.
    pub async fn claim_prefix(
        &self,
        prefix: &RedisPrefix,
        marker: &str,
    ) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect(None).await?;
        let key = format!("{}{REDIS_MARKER_KEY}", prefix.as_str());
        let current = self.marker_at(&mut conn, &key).await?;
        match current {
            Some(m) if same_owner(&m, marker) => {
                if m != marker {
                    self.set(&mut conn, &key, marker).await?;
                }
                Ok(Outcome::Existed)
            }
            Some(m) => Err(self.not_ours(
                format!("key prefix {:?}", prefix.as_str()),
                format!("its marker is {m:?}"),
            )),
            None => {
                if self.any_key(&mut conn, prefix.as_str(), &[]).await? {
                    return Err(self.not_ours(
                        format!("key prefix {:?}", prefix.as_str()),
                        "keys with it exist and carry no pwt marker".into(),
                    ));
                }
                self.set_marker(
                    &mut conn,
                    &key,
                    marker,
                    format!("key prefix {:?}", prefix.as_str()),
                )
                .await
            }
        }
    }

    /// Removes every key with `prefix` (SCAN MATCH + UNLINK in batches; never KEYS or
    /// FLUSHALL) when its marker is `marker`; the marker key goes last, so an interrupted
    /// cleanup can be finished. Keys under any of `spare` (other worktrees' prefixes that
    /// happen to start with this one) are left alone.
    pub async fn clean_prefix(
        &self,
        prefix: &RedisPrefix,
        marker: &str,
        spare: &[RedisPrefix],
    ) -> Result<Outcome, ProvisionError> {
        if prefix.as_str().is_empty() {
            return Err(ProvisionError::Config {
                service: Service::Redis,
                message: "refusing to clean the empty prefix (the main worktree's keys)".into(),
            });
        }
        let mut conn = self.connect(None).await?;
        let key = format!("{}{REDIS_MARKER_KEY}", prefix.as_str());
        let current = self.marker_at(&mut conn, &key).await?;
        match current {
            None => {
                if self.any_key(&mut conn, prefix.as_str(), spare).await? {
                    Err(self.not_ours(
                        format!("key prefix {:?}", prefix.as_str()),
                        "keys with it exist and carry no pwt marker".into(),
                    ))
                } else {
                    Ok(Outcome::Absent)
                }
            }
            Some(m) if !same_owner(&m, marker) => Err(self.not_ours(
                format!("key prefix {:?}", prefix.as_str()),
                format!("its marker is {m:?}"),
            )),
            Some(_) => {
                let pattern = format!("{}*", escape_glob(prefix.as_str()));
                // Another owner's marker under this prefix (`x-feat-x` under `x-feat`, made by
                // a pwt this one does not know): its keys stay.
                let mut spare = spare.to_vec();
                let marker_pattern = format!("{}*{REDIS_MARKER_KEY}", escape_glob(prefix.as_str()));
                self.scan(&mut conn, &marker_pattern, async |_, keys| {
                    for k in keys.into_iter().filter(|k| k != &key) {
                        if let Some(p) = k
                            .strip_suffix(REDIS_MARKER_KEY)
                            .and_then(|p| RedisPrefix::parse(p).ok())
                        {
                            spare.push(p);
                        }
                    }
                    Ok(true)
                })
                .await?;
                // A multi-key UNLINK on a cluster fails with CROSSSLOT: one key at a time there.
                let size = if self.is_cluster(&mut conn).await {
                    1
                } else {
                    BATCH
                };
                let mut batch: Vec<String> = Vec::with_capacity(size);
                let spared = |k: &str| spare.iter().any(|s| k.starts_with(s.as_str()));
                self.scan(&mut conn, &pattern, async |conn, keys| {
                    batch.extend(keys.into_iter().filter(|k| k != &key && !spared(k)));
                    while batch.len() >= size {
                        let chunk: Vec<String> = batch.drain(..size).collect();
                        self.unlink(conn, &chunk).await?;
                    }
                    Ok(true)
                })
                .await?;
                for chunk in batch.chunks(size) {
                    self.unlink(&mut conn, chunk).await?;
                }
                self.unlink(&mut conn, &[key]).await?;
                Ok(Outcome::Removed)
            }
        }
    }

    async fn is_cluster(&self, conn: &mut MultiplexedConnection) -> bool {
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(conn)
            .await
            .unwrap_or_default();
        info.lines().any(|l| l.trim() == "cluster_enabled:1")
    }

    async fn unlink(
        &self,
        conn: &mut MultiplexedConnection,
        keys: &[String],
    ) -> Result<(), ProvisionError> {
        if keys.is_empty() {
            return Ok(());
        }
        redis::cmd("UNLINK")
            .arg(keys)
            .query_async::<i64>(conn)
            .await
            .map_err(|e| self.failed("UNLINK", e))?;
        Ok(())
    }

    /// Claims DB `index`: it must be empty or already carry this worktree's marker.
    pub async fn claim_db(&self, index: u16, marker: &str) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect(Some(index)).await?;
        let current = self.marker_at(&mut conn, REDIS_MARKER_KEY).await?;
        match current {
            Some(m) if same_owner(&m, marker) => {
                if m != marker {
                    self.set(&mut conn, REDIS_MARKER_KEY, marker).await?;
                }
                Ok(Outcome::Existed)
            }
            Some(m) => Err(self.not_ours(format!("DB {index}"), format!("its marker is {m:?}"))),
            None => {
                let size = self.dbsize(&mut conn).await?;
                if size > 0 {
                    return Err(self.not_ours(
                        format!("DB {index}"),
                        format!("it holds {size} keys and no pwt marker"),
                    ));
                }
                self.set_marker(&mut conn, REDIS_MARKER_KEY, marker, format!("DB {index}"))
                    .await
            }
        }
    }

    /// `FLUSHDB` on DB `index`, only when it carries `marker`.
    pub async fn flush_db(&self, index: u16, marker: &str) -> Result<Outcome, ProvisionError> {
        if index == 0 {
            return Err(ProvisionError::Config {
                service: Service::Redis,
                message: "refusing to flush DB 0 (the main worktree's)".into(),
            });
        }
        let mut conn = self.connect(Some(index)).await?;
        let current = self.marker_at(&mut conn, REDIS_MARKER_KEY).await?;
        match current {
            Some(m) if same_owner(&m, marker) => {
                redis::cmd("FLUSHDB")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| self.failed("FLUSHDB", e))?;
                Ok(Outcome::Removed)
            }
            Some(m) => Err(self.not_ours(format!("DB {index}"), format!("its marker is {m:?}"))),
            None => {
                let size = self.dbsize(&mut conn).await?;
                if size == 0 {
                    Ok(Outcome::Absent)
                } else {
                    Err(self.not_ours(
                        format!("DB {index}"),
                        format!("it holds {size} keys and no pwt marker"),
                    ))
                }
            }
        }
    }

    async fn set(
        &self,
        conn: &mut MultiplexedConnection,
        key: &str,
        value: &str,
    ) -> Result<(), ProvisionError> {
        conn.set::<_, _, ()>(key, value)
            .await
            .map_err(|e| self.failed("SET", e))
    }

    /// Marks `prefix` or DB `index` (whichever `slot` is) with `marker` (its kept form, say)
    /// when it carries the same owner's.
    pub async fn remark(
        &self,
        prefix: Option<&RedisPrefix>,
        index: Option<u16>,
        marker: &str,
    ) -> Result<Outcome, ProvisionError> {
        let mut conn = self.connect(index).await?;
        let key = match prefix {
            Some(p) => format!("{}{REDIS_MARKER_KEY}", p.as_str()),
            None => REDIS_MARKER_KEY.to_owned(),
        };
        match self.marker_at(&mut conn, &key).await? {
            None => Ok(Outcome::Absent),
            Some(m) if same_owner(&m, marker) => {
                self.set(&mut conn, &key, marker).await?;
                Ok(Outcome::Existed)
            }
            Some(m) => Err(self.not_ours(key, format!("its marker is {m:?}"))),
        }
    }

    /// Number of DBs, version and cluster mode.
    pub async fn status(&self) -> Result<RedisStatus, ProvisionError> {
        let mut conn = self.connect(None).await?;
        let databases: Option<u16> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("databases")
            .query_async::<Vec<String>>(&mut conn)
            .await
            .ok()
            .and_then(|v| v.get(1).and_then(|n| n.parse().ok()));
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failed("INFO", e))?;
        let cluster_info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        Ok(RedisStatus {
            databases,
            cluster: field(&cluster_info, "cluster_enabled:") == "1",
            version: field(&info, "redis_version:"),
        })
    }

    /// Prefixes (prefix mode) and DBs (db mode, indexes `1..databases`) carrying a pwt marker.
    pub async fn marked(&self, databases: u16) -> Result<Vec<Marked>, ProvisionError> {
        let mut out = Vec::new();
        let mut conn = self.connect(None).await?;
        let pattern = format!("*{REDIS_MARKER_KEY}");
        self.scan(&mut conn, &pattern, async |conn, keys| {
            for k in keys {
                // An empty prefix would be a DB marker of DB 0: not pwt's to report.
                let Some(prefix) = k.strip_suffix(REDIS_MARKER_KEY).filter(|p| !p.is_empty())
                else {
                    continue;
                };
                let m = self.marker_at(conn, &k).await?;
                if let Some(m) = m.filter(|m| is_marker(m)) {
                    out.push(Marked {
                        name: prefix.to_owned(),
                        marker: m,
                    });
                }
            }
            Ok(true)
        })
        .await?;
        for index in 1..databases {
            let mut c = self.connect(Some(index)).await?;
            let m = self.marker_at(&mut c, REDIS_MARKER_KEY).await?;
            if let Some(m) = m.filter(|m| is_marker(m)) {
                out.push(Marked {
                    name: format!("db {index}"),
                    marker: m,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_escaping() {
        assert_eq!(super::escape_glob("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
        assert_eq!(super::escape_glob("feat-x:"), "feat-x:");
    }
}
