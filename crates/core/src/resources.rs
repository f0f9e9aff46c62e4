//! The names of a worktree's provisioned resources, its ownership marker, and the variables
//! that tell the app where they are.

use crate::config::{Config, RedisMode};
use crate::env::Environment;
use crate::hash::{hex_prefix, stable_hash_parts};
use crate::names::{DbName, NameError, RedisPrefix, Vhost};
use crate::template::{TemplateContext, TemplateError, Templates};

/// Which of the shared services a resource lives on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A PostgreSQL database.
    Database,
    /// A RabbitMQ vhost.
    Vhost,
    /// A Redis key prefix or DB index.
    Redis,
}

impl ResourceKind {
    /// All kinds, in the order pwt names them.
    pub const ALL: [ResourceKind; 3] = [Self::Database, Self::Vhost, Self::Redis];

    /// Lowercase name, as in the registry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Vhost => "vhost",
            Self::Redis => "redis",
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ResourceKind {
    type Err = String;

    /// `database`, `vhost` or `redis`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown resource kind {s:?} (database, vhost or redis)"))
    }
}

/// Where a worktree's Redis data lives: under a key prefix, or in a DB index of its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisSlot {
    /// Every key starts with this prefix (prefix mode, and db mode on a Redis Cluster).
    Prefix(RedisPrefix),
    /// A leased DB index, 1..N-1 (db mode).
    Db(u16),
}

impl RedisSlot {
    /// The prefix, in prefix mode.
    pub fn prefix(&self) -> Option<&RedisPrefix> {
        match self {
            Self::Prefix(p) => Some(p),
            Self::Db(_) => None,
        }
    }

    /// The DB index, in db mode.
    pub fn db(&self) -> Option<u16> {
        match self {
            Self::Prefix(_) => None,
            Self::Db(n) => Some(*n),
        }
    }
}

impl std::fmt::Display for RedisSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Prefix(p) => write!(f, "key prefix {:?}", p.as_str()),
            Self::Db(n) => write!(f, "DB {n}"),
        }
    }
}

/// A worktree's resources on the shared services. `None` where the service is not
/// configured (or, for Redis in db mode, before an index is leased).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// PostgreSQL database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DbName>,
    /// RabbitMQ vhost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<Vhost>,
    /// Redis key prefix or DB index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSlot>,
}

impl Resources {
    /// True when there is nothing.
    pub fn is_empty(&self) -> bool {
        self.database.is_none() && self.vhost.is_none() && self.redis.is_none()
    }

    /// The kinds present.
    pub fn kinds(&self) -> Vec<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .filter(|k| self.has(*k))
            .collect()
    }

    /// True when the resource of `kind` is named.
    pub fn has(&self, kind: ResourceKind) -> bool {
        match kind {
            ResourceKind::Database => self.database.is_some(),
            ResourceKind::Vhost => self.vhost.is_some(),
            ResourceKind::Redis => self.redis.is_some(),
        }
    }

    /// Only the resources of `kinds`.
    pub fn only(&self, kinds: &[ResourceKind]) -> Resources {
        Resources {
            database: self
                .database
                .clone()
                .filter(|_| kinds.contains(&ResourceKind::Database)),
            vhost: self
                .vhost
                .clone()
                .filter(|_| kinds.contains(&ResourceKind::Vhost)),
            redis: self
                .redis
                .clone()
                .filter(|_| kinds.contains(&ResourceKind::Redis)),
        }
    }

    /// The resource of `kind` for messages: `database "demo_x"`, `vhost "/x"`,
    /// `key prefix "x:"`, `DB 3`.
    pub fn describe(&self, kind: ResourceKind) -> Option<String> {
        match kind {
            ResourceKind::Database => self
                .database
                .as_ref()
                .map(|d| format!("database {:?}", d.as_str())),
            ResourceKind::Vhost => self
                .vhost
                .as_ref()
                .map(|v| format!("vhost {:?}", v.as_str())),
            ResourceKind::Redis => self.redis.as_ref().map(ToString::to_string),
        }
    }

    /// The Redis key prefix, in prefix mode.
    pub fn redis_prefix(&self) -> Option<&RedisPrefix> {
        self.redis.as_ref().and_then(RedisSlot::prefix)
    }

    /// The Redis DB index, in db mode.
    pub fn redis_db(&self) -> Option<u16> {
        self.redis.as_ref().and_then(RedisSlot::db)
    }
}

/// A name template that does not give a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// The template does not render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// It renders to something the service would refuse.
    #[error("`{key}` renders to an unusable name: {source}")]
    Name {
        /// The configuration key.
        key: &'static str,
        /// Why.
        #[source]
        source: NameError,
    },
}

/// Renders the resource name templates for one worktree. In db mode the Redis slot stays
/// `None`: an index is leased, not named.
pub fn resource_names(
    config: &Config,
    ctx: &TemplateContext,
    templates: &Templates,
) -> Result<Resources, ResourceError> {
    let mut out = Resources::default();
    if let Some(pg) = &config.postgres {
        let name = templates.render("postgres.database", &pg.database, ctx)?;
        let default = pg.database == crate::config::PostgresConfig::default().database;
        out.database = Some(database_name(&name, default)?);
    }
    if let Some(mq) = &config.rabbitmq {
        let name = templates.render("rabbitmq.vhost", &mq.vhost, ctx)?;
        out.vhost = Some(Vhost::parse(&name).map_err(|source| ResourceError::Name {
            key: "rabbitmq.vhost",
            source,
        })?);
    }
    if config
        .redis
        .as_ref()
        .is_some_and(|r| r.mode == RedisMode::Prefix)
    {
        out.redis = redis_prefix_name(config, ctx, templates)?.map(RedisSlot::Prefix);
    }
    Ok(out)
}

/// Whether `name` derives from `db` by `pattern` (`test_{db}`, `test_{db}_*` with `*` one or
/// more digits, `{db}_test`).
fn derives(name: &str, db: &str, pattern: &str) -> bool {
    let p = pattern.replace("{db}", db);
    match p.split_once('*') {
        None => name == p,
        Some((head, tail)) => name
            .strip_prefix(head)
            .and_then(|r| r.strip_suffix(tail))
            .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// The test databases that exist among `existing` and derive from `db` by one of
/// `patterns`, none of them one of `protect` (the main worktree's database, every database a
/// worktree leases) and none that derives as well from another database of `existing`
/// (`test_x_2` is `test_<x>_2` of `x`, but also `test_<x_2>` of a worktree whose database is
/// `x_2`: whose it is cannot be told, so it is spared).
pub fn derived_databases<'a>(
    db: &str,
    patterns: &[String],
    existing: &'a [String],
    protect: &[&str],
) -> Vec<&'a str> {
    let from = |name: &str, base: &str| patterns.iter().any(|p| derives(name, base, p));
    existing
        .iter()
        .map(String::as_str)
        .filter(|n| *n != db && !protect.contains(n))
        .filter(|n| from(n, db))
        .filter(|n| {
            !existing
                .iter()
                .any(|other| other != db && other != n && from(n, other))
        })
        .collect()
}

/// The databases `name` could be a test database of, by `patterns` (for `test_x_2`: `x`
/// and `x_2`).
pub fn test_database_bases(name: &str, patterns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = patterns
        .iter()
        .filter_map(|p| {
            let (head, _) = p.split_once("{db}")?;
            let rest = name.strip_prefix(head)?;
            Some(
                (1..=rest.len())
                    .filter(|i| rest.is_char_boundary(*i))
                    .map(|i| &rest[..i])
                    .filter(|b| derives(name, b, p))
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The longest database name pwt gives: frameworks derive test databases from it (Django's
/// `test_<db>` and `test_<db>_<N>`, Rails' `<db>_test`), which must still fit PostgreSQL's 63
/// bytes, or they are cut and two worktrees' test databases become one.
pub const DB_NAME_MAX: usize = 50;

/// A rendered database name as pwt uses it: the default template's, when longer than
/// [`DB_NAME_MAX`], is cut and given a hash of the whole name (so two long names stay two);
/// a custom template's that long is an error naming the fix.
fn database_name(name: &str, default: bool) -> Result<DbName, ResourceError> {
    let named = |source| ResourceError::Name {
        key: "postgres.database",
        source,
    };
    if name.len() <= DB_NAME_MAX {
        return DbName::parse(name).map_err(named);
    }
    if default {
        let hex = hex_prefix(crate::hash::mixed_hash(name.as_bytes()), 8);
        let mut cut = DB_NAME_MAX - hex.len() - 1;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        return DbName::parse(&format!("{}_{hex}", &name[..cut])).map_err(named);
    }
    Err(named(NameError {
        kind: "database name",
        value: name.to_owned(),
        reason: "it is longer than 50 bytes, which leaves no room for the test databases frameworks derive from it (Django's test_<db>_<N>, Rails' <db>_test) within PostgreSQL's 63; make `postgres.database` shorter (the default template cuts long names to 50 bytes with a hash)",
    }))
}

/// The Redis key prefix of a worktree (prefix mode, or the fallback on a Redis Cluster),
/// `None` when Redis is not configured.
pub fn redis_prefix_name(
    config: &Config,
    ctx: &TemplateContext,
    templates: &Templates,
) -> Result<Option<RedisPrefix>, ResourceError> {
    let Some(r) = &config.redis else {
        return Ok(None);
    };
    let name = templates.render("redis.prefix", &r.prefix, ctx)?;
    if name.is_empty() {
        return Err(ResourceError::Name {
            key: "redis.prefix",
            source: NameError {
                kind: "Redis key prefix",
                value: name,
                reason: "it is empty, which is the main worktree's key space",
            },
        });
    }
    RedisPrefix::parse(&name)
        .map(Some)
        .map_err(|source| ResourceError::Name {
            key: "redis.prefix",
            source,
        })
}

/// The slug used to re-render names that collide with another worktree's (of any
/// repository on the machine): the slug plus six hex digits of (repository, branch).
pub fn disambiguated_slug(slug: &str, repo_key: &str, branch: &str) -> String {
    let hex = hex_prefix(
        stable_hash_parts(&[repo_key.as_bytes(), branch.as_bytes()]),
        6,
    );
    format!("{slug}-{hex}")
}

/// The `n`th slug tried for names someone else holds: `n` = 1 is [`disambiguated_slug`];
/// later ones also hash `n` and who asks (`holder`), so people racing for one branch's names
/// walk apart.
pub fn disambiguated_slug_nth(
    slug: &str,
    repo_key: &str,
    branch: &str,
    holder: &str,
    n: u32,
) -> String {
    if n <= 1 {
        return disambiguated_slug(slug, repo_key, branch);
    }
    let hex = hex_prefix(
        stable_hash_parts(&[
            repo_key.as_bytes(),
            branch.as_bytes(),
            holder.as_bytes(),
            &n.to_le_bytes(),
        ]),
        6,
    );
    format!("{slug}-{hex}")
}

/// The ownership marker stored with every resource pwt creates (database comment, vhost
/// description, Redis marker key): `pwt:`, 8 hex digits of the repository, 8 of (repository,
/// slug). pwt drops a resource only when the marker is exactly this; the repository part
/// lets `pwt gc` look for orphans of one repository without touching any other's.
pub fn owner_marker(repo_key: &str, slug: &str) -> String {
    let both = stable_hash_parts(&[repo_key.as_bytes(), slug.as_bytes()]);
    format!("{}{}", repo_marker_prefix(repo_key), hex_prefix(both, 8))
}

/// [`owner_marker`] of one registry: the second part also hashes the registry's identity
/// (`registry`, a hash of its state directory), so two registries on one repository (two
/// HOMEs, say) never take each other's resources for their own. An empty `registry` gives
/// [`owner_marker`], which the first release wrote.
pub fn registry_marker(repo_key: &str, slug: &str, registry: &str) -> String {
    if registry.is_empty() {
        return owner_marker(repo_key, slug);
    }
    let all = stable_hash_parts(&[repo_key.as_bytes(), slug.as_bytes(), registry.as_bytes()]);
    format!("{}{}", repo_marker_prefix(repo_key), hex_prefix(all, 8))
}

/// The part of [`owner_marker`] shared by all worktrees of a repository.
pub fn repo_marker_prefix(repo_key: &str) -> String {
    let repo = stable_hash_parts(&[repo_key.as_bytes()]);
    format!("pwt:{}", hex_prefix(repo, 8))
}

/// True for markers pwt writes (for finding orphans), kept ones included.
pub fn is_marker(s: &str) -> bool {
    s.strip_prefix("pwt:")
        .map(|h| h.strip_suffix(KEPT).unwrap_or(h))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

const KEPT: &str = ":kept";

/// The marker of data kept by `pwt rm --keep-data`: the resource says so itself, so no
/// registry (another HOME, a lost one) mistakes it for an orphan.
pub fn kept_marker(marker: &str) -> String {
    format!("{}{KEPT}", base_marker(marker))
}

/// The marker without its kept mark.
pub fn base_marker(marker: &str) -> &str {
    marker.strip_suffix(KEPT).unwrap_or(marker)
}

/// True for a kept marker.
pub fn is_kept_marker(marker: &str) -> bool {
    is_marker(marker) && marker.ends_with(KEPT)
}

/// True when `found` is `marker`, kept or not: the same owner.
pub fn same_owner(found: &str, marker: &str) -> bool {
    base_marker(found) == base_marker(marker)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with its path replaced by `/` + `encoded_path` (query kept).
pub fn with_path(url: &str, encoded_path: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{encoded_path}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` with its host and port replaced by `host_port` (`postgres:5432`); user,
/// password, path and query kept.
pub fn with_host_port(url: &str, host_port: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let end = rest
        .find(['/', '?'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..end];
    let userinfo = authority.rfind('@').map_or("", |i| &authority[..=i]);
    format!(
        "{}{userinfo}{host_port}{}",
        &url[..authority_start],
        &url[end..]
    )
}

/// The first path segment of a URL, decoded loosely (the maintenance database's name).
pub fn url_path(url: &str) -> Option<&str> {
    let base = url.split('?').next().unwrap_or(url);
    let after = &base[base.find("://").map_or(0, |i| i + 3)..];
    after
        .split_once('/')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// What the main worktree uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worktree<'a> {
    /// The main worktree: main database, vhost `/`, empty prefix or DB 0.
    Main,
    /// A leased worktree with its resources.
    Leased(&'a Resources),
}

/// Adds `DATABASE_NAME`, `DATABASE_URL`, `RABBITMQ_VHOST` (and `RABBITMQ_VHOST_ENCODED`),
/// `RABBITMQ_URL`, `REDIS_KEY_PREFIX` or `REDIS_DB`, and `REDIS_URL` for the configured
/// services; with `[docker]`, each URL also as containers on the shared network reach it
/// (`CONTAINER_DATABASE_URL`, …) and the network (`PWT_NETWORK`).
pub fn service_variables(
    config: &Config,
    project: &str,
    worktree: Worktree<'_>,
    env: &mut Environment,
) -> Result<(), crate::env::EnvError> {
    let names = match worktree {
        Worktree::Leased(n) => Some(n),
        Worktree::Main => None,
    };
    if let Some(pg) = &config.postgres {
        let db = match names.and_then(|n| n.database.as_ref()) {
            Some(d) => d.as_str().to_owned(),
            None => pg
                .main_database
                .clone()
                .unwrap_or_else(|| project.to_owned()),
        };
        env.set("DATABASE_NAME", db.clone())?;
        let url = with_path(&pg.url, &percent_encode(&db));
        if let Some(d) = &config.docker {
            env.set("CONTAINER_DATABASE_URL", with_host_port(&url, &d.postgres))?;
        }
        env.set("DATABASE_URL", url)?;
    }
    if let Some(mq) = &config.rabbitmq {
        let vhost = names
            .and_then(|n| n.vhost.as_ref())
            .map_or("/".to_owned(), |v| v.as_str().to_owned());
        env.set("RABBITMQ_VHOST", vhost.clone())?;
        env.set("RABBITMQ_VHOST_ENCODED", percent_encode(&vhost))?;
        let url = with_path(&mq.url, &percent_encode(&vhost));
        if let Some(d) = &config.docker {
            env.set("CONTAINER_RABBITMQ_URL", with_host_port(&url, &d.rabbitmq))?;
        }
        env.set("RABBITMQ_URL", url)?;
    }
    if let Some(r) = &config.redis {
        // A leased worktree says which it got (a prefix also in `db` mode on a Redis
        // Cluster); the main worktree follows the configured mode.
        let leased_prefix = names.and_then(|n| n.redis_prefix());
        let leased_db = names.and_then(|n| n.redis_db());
        let prefix_mode =
            leased_prefix.is_some() || (leased_db.is_none() && r.mode == RedisMode::Prefix);
        let url = if prefix_mode {
            let prefix = leased_prefix.map_or(String::new(), |p| p.as_str().to_owned());
            env.set("REDIS_KEY_PREFIX", prefix)?;
            r.url.clone()
        } else {
            // The main worktree's index is the one its URL selects (`redis://h/2`), else 0.
            let main_db = url_path(&r.url)
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            let db = leased_db.unwrap_or(main_db);
            env.set("REDIS_DB", db.to_string())?;
            with_path(&r.url, &db.to_string())
        };
        if let Some(d) = &config.docker {
            env.set("CONTAINER_REDIS_URL", with_host_port(&url, &d.redis))?;
        }
        env.set("REDIS_URL", url)?;
    }
    if config.docker.is_some() {
        env.set("PWT_NETWORK", config.infra.network.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PostgresConfig, RabbitmqConfig, RedisConfig};
    use std::collections::BTreeMap;

    fn ctx(slug: &str) -> TemplateContext {
        TemplateContext {
            branch: slug.into(),
            slug: slug.into(),
            repo: "demo".into(),
            project: "demo".into(),
            ports: BTreeMap::new(),
            vars: Default::default(),
        }
    }

    #[test]
    fn a_url_moves_to_another_host_and_port_keeping_the_rest() {
        for (url, to, want) in [
            (
                "postgres://u:p%40ss@127.0.0.1:15432/db?sslmode=disable",
                "postgres:5432",
                "postgres://u:p%40ss@postgres:5432/db?sslmode=disable",
            ),
            (
                "redis://localhost:6379/3",
                "redis:6379",
                "redis://redis:6379/3",
            ),
            ("redis://localhost", "redis:6379", "redis://redis:6379"),
            (
                "amqp://guest:guest@[::1]:5672/%2Ffeat",
                "rabbitmq:5672",
                "amqp://guest:guest@rabbitmq:5672/%2Ffeat",
            ),
            ("redis://h?x=a@b", "r:1", "redis://r:1?x=a@b"),
        ] {
            assert_eq!(with_host_port(url, to), want, "{url}");
        }
    }

    fn full() -> Config {
        Config {
            postgres: Some(PostgresConfig {
                url: "postgres://demo:demo@localhost:5432/postgres?sslmode=disable".into(),
                main_database: Some("demo".into()),
                ..PostgresConfig::default()
            }),
            rabbitmq: Some(RabbitmqConfig {
                url: "amqp://demo:demo@localhost:5672".into(),
                ..RabbitmqConfig::default()
            }),
            redis: Some(RedisConfig::default()),
            ..Config::default()
        }
    }

    #[test]
    fn seed_names_and_variables() {
        let c = full();
        let names =
            resource_names(&c, &ctx("feature-notifications"), &Templates::new()).expect("names");
        assert_eq!(
            names.database.as_ref().map(DbName::as_str),
            Some("demo_feature_notifications")
        );
        assert_eq!(
            names.vhost.as_ref().map(Vhost::as_str),
            Some("/feature-notifications")
        );
        assert_eq!(
            names.redis_prefix().map(RedisPrefix::as_str),
            Some("pwt:feature-notifications:")
        );
        let mut env = Environment::default();
        service_variables(&c, "demo", Worktree::Leased(&names), &mut env).expect("vars");
        assert_eq!(
            env.get("DATABASE_URL"),
            Some("postgres://demo:demo@localhost:5432/demo_feature_notifications?sslmode=disable")
        );
        assert_eq!(
            env.get("RABBITMQ_URL"),
            Some("amqp://demo:demo@localhost:5672/%2Ffeature-notifications")
        );
        assert_eq!(
            env.get("REDIS_KEY_PREFIX"),
            Some("pwt:feature-notifications:")
        );
        let mut main = Environment::default();
        service_variables(&c, "demo", Worktree::Main, &mut main).expect("vars");
        assert_eq!(main.get("DATABASE_NAME"), Some("demo"));
        assert_eq!(main.get("RABBITMQ_VHOST"), Some("/"));
        assert_eq!(
            main.get("RABBITMQ_URL"),
            Some("amqp://demo:demo@localhost:5672/%2F")
        );
        assert_eq!(main.get("REDIS_KEY_PREFIX"), Some(""));
    }

    #[test]
    fn db_mode_variables() {
        let mut c = full();
        c.redis = Some(RedisConfig {
            mode: RedisMode::Db,
            ..RedisConfig::default()
        });
        let mut names = resource_names(&c, &ctx("x"), &Templates::new()).expect("names");
        assert_eq!(names.redis, None);
        names.redis = Some(RedisSlot::Db(7));
        let mut env = Environment::default();
        service_variables(&c, "demo", Worktree::Leased(&names), &mut env).expect("vars");
        assert_eq!(env.get("REDIS_DB"), Some("7"));
        assert_eq!(env.get("REDIS_URL"), Some("redis://localhost:6379/7"));
    }

    #[test]
    fn derived_test_databases() {
        let patterns = PostgresConfig::default().test_databases;
        let existing: Vec<String> = [
            "demo_x",
            "test_demo_x",
            "test_demo_x_1",
            "test_demo_x_12",
            "test_demo_x_a",
            "demo_x_test",
            "test_demo_xy",
            "test_demo",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            derived_databases("demo_x", &patterns, &existing, &[]),
            [
                "test_demo_x",
                "test_demo_x_1",
                "test_demo_x_12",
                "demo_x_test"
            ]
        );
        assert!(derived_databases("demo_x", &patterns, &existing, &["test_demo_x"]).len() == 3);
        // `test_demo_x_2` could be `test_<demo_x>_2` or `test_<demo_x_2>`: with a database
        // `demo_x_2` it is spared; `demo_x_test` is also the database of a branch `x-test`.
        let live: Vec<String> = ["demo_x", "demo_x_2", "test_demo_x_2", "test_demo_x"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            derived_databases("demo_x", &patterns, &live, &[]),
            ["test_demo_x"]
        );
        assert_eq!(
            test_database_bases("test_demo_x_2", &patterns),
            ["demo_x", "demo_x_2"]
        );
        assert_eq!(test_database_bases("demo_x_test", &patterns), ["demo_x"]);
        assert!(test_database_bases("demo_x", &patterns).is_empty());
    }

    #[test]
    fn long_default_names_leave_room_for_test_databases() {
        let mut c = full();
        c.project = None;
        let long = "feature-reporting-dashboard-with-a-very-long-name-indeed";
        let ctx = TemplateContext {
            project: "accdj_customer_portal_backend".into(),
            ..ctx(long)
        };
        let a = resource_names(&c, &ctx, &Templates::new())
            .expect("names")
            .database
            .expect("db");
        assert!(a.as_str().len() <= DB_NAME_MAX, "{a}");
        assert!(format!("test_{a}_12").len() <= 63);
        let other = TemplateContext {
            slug: format!("{long}-2"),
            ..ctx.clone()
        };
        let b = resource_names(&c, &other, &Templates::new())
            .expect("names")
            .database
            .expect("db");
        assert_ne!(a, b, "two long names made one");
        // A custom template that long is an error that says what to do.
        if let Some(pg) = c.postgres.as_mut() {
            pg.database = "{{ project }}_{{ slug | db_ident }}".into();
        }
        let e = resource_names(&c, &ctx, &Templates::new()).expect_err("too long");
        assert!(e.to_string().contains("test databases"), "{e}");
    }

    #[test]
    fn bad_names_are_errors_naming_the_key() {
        let mut c = full();
        if let Some(pg) = c.postgres.as_mut() {
            pg.database = "{{ slug }}{{ slug }}".into();
        }
        let e = resource_names(&c, &ctx(&"a".repeat(40)), &Templates::new()).expect_err("too long");
        assert!(e.to_string().contains("postgres.database"), "{e}");
    }

    #[test]
    fn urls_and_markers() {
        assert_eq!(with_path("redis://h:1", "3"), "redis://h:1/3");
        assert_eq!(with_path("redis://h:1/0", "3"), "redis://h:1/3");
        assert_eq!(
            with_path("postgres://u:p@h/db?x=1", "n"),
            "postgres://u:p@h/n?x=1"
        );
        assert_eq!(url_path("postgres://u@h:5432/postgres?x"), Some("postgres"));
        assert_eq!(url_path("postgres://u@h:5432"), None);
        assert_eq!(percent_encode("/a b%"), "%2Fa%20b%25");
        let m = owner_marker("/r/.git", "feat-x");
        assert!(is_marker(&m), "{m}");
        assert_eq!(m, "pwt:bd7f787422631dd2");
        assert!(m.starts_with(&repo_marker_prefix("/r/.git")));
        assert_ne!(m, owner_marker("/other/.git", "feat-x"));
        let r = registry_marker("/r/.git", "feat-x", "0123abcd");
        assert!(is_marker(&r) && r.starts_with(&repo_marker_prefix("/r/.git")));
        assert_ne!(r, m);
        assert_ne!(r, registry_marker("/r/.git", "feat-x", "ffff0000"));
        assert_eq!(registry_marker("/r/.git", "feat-x", ""), m);
        assert!(!is_marker("pwt:xyz"));
        let k = kept_marker(&m);
        assert!(is_marker(&k) && is_kept_marker(&k) && !is_kept_marker(&m));
        assert!(same_owner(&k, &m) && same_owner(&m, &k));
        assert_eq!(base_marker(&k), m);
        assert_eq!(disambiguated_slug("x", "/r/.git", "X").len(), 8);
    }
}
