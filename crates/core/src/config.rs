//! Configuration types: what `pwt.toml`, the user config and `PWT_*` variables deserialize
//! into. Loading and layering live in the engine (`pwt::LoadedConfig`); this module only
//! defines and validates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of the port pwt creates when `[ports.services]` is empty.
pub const DEFAULT_SERVICE: &str = "app";

/// The whole configuration, after all layers are merged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Project name used in templates; defaults to the repository directory name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Where worktrees go.
    pub worktree: WorktreeConfig,
    /// Port allocation.
    pub ports: PortsConfig,
    /// A PostgreSQL database per worktree; absent means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresConfig>,
    /// A RabbitMQ vhost per worktree; absent means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitmqConfig>,
    /// Redis isolation per worktree; absent means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisConfig>,
    /// Extra environment variables, each value a template.
    pub env: BTreeMap<String, String>,
    /// The env files pwt writes into each worktree.
    pub files: FilesConfig,
    /// Commands run in the worktree at set-up and teardown.
    pub hooks: HooksConfig,
    /// `[processes]`: what `pwt dev` starts in the worktree (name → shell command).
    pub processes: BTreeMap<String, String>,
    /// The local reverse proxy.
    pub proxy: ProxyConfig,
    /// A team store: who holds which name on the shared servers; absent means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamConfig>,
    /// The shared services in Docker Compose (`pwt infra`).
    pub infra: InfraConfig,
    /// Each worktree's app in Docker Compose: container-side variables and `.env.docker`;
    /// absent means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerConfig>,
    /// `pwt mcp`: the tools that change things, off unless named here.
    pub mcp: McpConfig,
    /// Limits on what each worktree's `[processes]` may use, and the free memory below which
    /// `pwt dev` starts no more.
    pub limits: LimitsConfig,
}

/// `[mcp]`: what the MCP server (`pwt mcp`) lets an agent change. Reading is always on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// The groups of lifecycle tools to offer: `processes` (start and stop the worktree's
    /// `[processes]`), `up` (`pwt up`), `reset-database` (the worktree's database made
    /// again from the main worktree's), `worktrees` (create and remove worktrees).
    pub allow: Vec<McpTools>,
}

/// A group of the MCP server's lifecycle tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpTools {
    /// `start_processes`, `stop_processes`.
    Processes,
    /// `up`.
    Up,
    /// `reset_database`.
    ResetDatabase,
    /// `create_worktree`, `remove_worktree`.
    Worktrees,
}

impl McpTools {
    /// Every group.
    pub const ALL: [McpTools; 4] = [
        Self::Processes,
        Self::Up,
        Self::ResetDatabase,
        Self::Worktrees,
    ];

    /// Its name in `[mcp] allow` and `pwt mcp --allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processes => "processes",
            Self::Up => "up",
            Self::ResetDatabase => "reset-database",
            Self::Worktrees => "worktrees",
        }
    }
}

impl std::str::FromStr for McpTools {
    type Err = String;

    /// By [`McpTools::as_str`]'s name; the error lists the groups.
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Self::ALL.iter().map(|g| g.as_str()).collect();
                format!("{s:?} is no group of tools; there are {}", all.join(", "))
            })
    }
}

/// `[limits]`: what each worktree's `[processes]` may use (through the kernel's cgroups,
/// where this machine lets pwt make them), and a floor of free memory for `pwt dev`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Memory all of a worktree's processes may use together (`512M`, `2G`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPUs they may use together (`1.5` = one and a half cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// `pwt dev` starts nothing while the machine has less memory available than this
    /// (`1G`), naming the worktrees that use the most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_free_memory: Option<String>,
}

impl LimitsConfig {
    /// `memory` in bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref().and_then(|m| parse_size(m).ok())
    }

    /// `min_free_memory` in bytes.
    pub fn min_free_bytes(&self) -> Option<u64> {
        self.min_free_memory
            .as_deref()
            .and_then(|m| parse_size(m).ok())
    }
}

/// `512M`, `2G`, `1.5G`, `1048576` (bytes; K, M, G, T are powers of 1024, an optional `i`
/// or `B` after them is allowed).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix(['i']).unwrap_or(t);
    let (number, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is no size: write it like 512M or 2G"))?;
    let bytes = value * 2f64.powi(shift);
    if !(value.is_finite() && value > 0.0 && bytes < 1.0e18) {
        return Err(format!("{text:?} is no size: write it like 512M or 2G"));
    }
    Ok(bytes as u64)
}

/// `[infra]`: how `pwt infra` runs the shared services in Docker Compose. The ports it
/// publishes are those of the service URLs (`postgres.url`, `rabbitmq.url`,
/// `rabbitmq.management_url`, `redis.url`), on 127.0.0.1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfraConfig {
    /// The Compose project's name.
    pub project: String,
    /// The network the services are on, which each worktree's app project joins.
    pub network: String,
    /// The PostgreSQL image.
    pub postgres_image: String,
    /// The RabbitMQ image (with the management plugin).
    pub rabbitmq_image: String,
    /// The Redis image.
    pub redis_image: String,
    /// How long `pwt infra up` waits for every service to answer, in seconds.
    pub timeout: u64,
}

impl Default for InfraConfig {
    fn default() -> Self {
        Self {
            project: "pwt".into(),
            network: "pwt".into(),
            postgres_image: "postgres:16-alpine".into(),
            rabbitmq_image: "rabbitmq:3-management-alpine".into(),
            redis_image: "redis:7-alpine".into(),
            timeout: 180,
        }
    }
}

/// `[docker]`: each worktree's app as a Compose project of its own on the shared network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The env file for containers (`docker run --env-file`, Compose `env_file:`): the
    /// worktree's environment with the URLs containers use.
    pub env_file: FileSetting,
    /// How a container reaches PostgreSQL: `host:port` on the shared network.
    pub postgres: String,
    /// How a container reaches RabbitMQ (AMQP).
    pub rabbitmq: String,
    /// How a container reaches Redis.
    pub redis: String,
}

/// Default name of the env file for containers.
pub const DOCKER_ENV_FILE: &str = ".env.docker";

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            env_file: FileSetting::Name(DOCKER_ENV_FILE.into()),
            postgres: "postgres:5432".into(),
            rabbitmq: "rabbitmq:5672".into(),
            redis: "redis:6379".into(),
        }
    }
}

/// `[team]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeamConfig {
    /// The PostgreSQL database that keeps the team's leases (a schema `pwt_team` in it);
    /// default: `postgres.url`'s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl Config {
    /// The team store's URL, when there is a `[team]` section.
    pub fn team_url(&self) -> Option<String> {
        let team = self.team.as_ref()?;
        team.url
            .clone()
            .or_else(|| self.postgres.as_ref().map(|p| p.url.clone()))
    }
}

/// `[worktree]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorktreeConfig {
    /// Template of the worktree path, relative to the main worktree.
    pub path: String,
}

impl Default for WorktreeConfig {
    fn default() -> Self {
        Self {
            path: "../{{ repo }}.{{ slug }}".into(),
        }
    }
}

/// `[ports]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortsConfig {
    /// Inclusive range ports are leased from.
    pub range: [u16; 2],
    /// One port per named service.
    pub services: BTreeMap<String, PortService>,
}

impl Default for PortsConfig {
    fn default() -> Self {
        Self {
            range: [20000, 29999],
            services: BTreeMap::new(),
        }
    }
}

/// One named port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortService {
    /// The environment variable that carries it.
    pub env: String,
    /// The port the main worktree uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<u16>,
}

/// `[postgres]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL of the maintenance database.
    pub url: String,
    /// Template of the database name.
    pub database: String,
    /// The main worktree's database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_database: Option<String>,
    /// Copy the main database's data into each new database.
    pub clone_from_main: bool,
    /// The test databases frameworks derive from a worktree's database, which go with it:
    /// `{db}` is its name, `*` one or more digits.
    pub test_databases: Vec<String>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@localhost:5432/postgres".into(),
            database: "{{ project | db_ident }}_{{ slug | db_ident }}".into(),
            main_database: None,
            clone_from_main: false,
            test_databases: vec!["test_{db}".into(), "test_{db}_*".into(), "{db}_test".into()],
        }
    }
}

/// `[rabbitmq]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitmqConfig {
    /// AMQP URL (user, password, host, port).
    pub url: String,
    /// Management HTTP API base URL.
    pub management_url: String,
    /// Template of the vhost name.
    pub vhost: String,
}

impl Default for RabbitmqConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@localhost:5672".into(),
            management_url: "http://localhost:15672".into(),
            vhost: "/{{ slug }}".into(),
        }
    }
}

/// How a worktree's Redis data is kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// A key prefix per worktree.
    Prefix,
    /// A leased DB index per worktree.
    Db,
}

/// `[redis]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Redis URL.
    pub url: String,
    /// `prefix` or `db`.
    pub mode: RedisMode,
    /// Template of the key prefix (prefix mode).
    pub prefix: String,
    /// DB count used when `CONFIG GET databases` is not allowed.
    pub databases: u16,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://localhost:6379".into(),
            mode: RedisMode::Prefix,
            prefix: "pwt:{{ slug }}:".into(),
            databases: 16,
        }
    }
}

/// A file setting: `false` turns the file off, a string names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileSetting {
    /// `true` / `false`.
    Enabled(bool),
    /// A file name relative to the worktree root.
    Name(String),
}

impl FileSetting {
    /// The file name, or `None` when turned off; `true` means `default`.
    pub fn name<'a>(&'a self, default: &'a str) -> Option<&'a str> {
        match self {
            Self::Enabled(false) => None,
            Self::Enabled(true) => Some(default),
            Self::Name(n) => Some(n),
        }
    }
}

/// Default name of the dotenv file.
pub const DOTENV_FILE: &str = ".env.worktree";
/// Default name of the mise file.
pub const MISE_FILE: &str = ".mise.local.toml";

/// `[files]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// The dotenv file.
    pub dotenv: FileSetting,
    /// The mise file.
    pub mise: FileSetting,
    /// Gitignored files of the main worktree copied into each new one (gitignore patterns,
    /// as in `.worktreeinclude`, which is read too).
    pub copy: Vec<String>,
    /// Gitignored files or directories of the main worktree linked into each new one.
    pub link: Vec<String>,
    /// Ignored files `pwt rm` will not delete without `--force` (file-name patterns).
    pub keep: Vec<String>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            dotenv: FileSetting::Name(DOTENV_FILE.into()),
            mise: FileSetting::Name(MISE_FILE.into()),
            copy: Vec::new(),
            link: Vec::new(),
            keep: vec![".env*".into(), "*.sqlite3".into()],
        }
    }
}

impl FilesConfig {
    /// The env files that are turned on, as (kind, file name).
    pub fn enabled(&self) -> Vec<(EnvFileKind, &str)> {
        let mut out = Vec::new();
        if let Some(n) = self.dotenv.name(DOTENV_FILE) {
            out.push((EnvFileKind::Dotenv, n));
        }
        if let Some(n) = self.mise.name(MISE_FILE) {
            out.push((EnvFileKind::Mise, n));
        }
        out
    }
}

impl Config {
    /// Every env file that is turned on, as (kind, file name): `[files]`'s and, with
    /// `[docker]`, the containers'.
    pub fn env_files(&self) -> Vec<(EnvFileKind, &str)> {
        let mut out = self.files.enabled();
        if let Some(n) = self
            .docker
            .as_ref()
            .and_then(|d| d.env_file.name(DOCKER_ENV_FILE))
        {
            out.push((EnvFileKind::Docker, n));
        }
        out
    }
}

/// The formats pwt writes env files in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvFileKind {
    /// `KEY='value'` lines.
    Dotenv,
    /// A `.mise.local.toml` `[env]` table.
    Mise,
    /// Docker's env-file format (`KEY=value`, nothing quoted), with container-side URLs.
    Docker,
}

/// `[hooks]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Run in the new worktree after it is provisioned.
    #[serde(rename = "post-create")]
    pub post_create: Vec<String>,
    /// Run in the worktree before it is torn down.
    #[serde(rename = "pre-remove")]
    pub pre_remove: Vec<String>,
}

/// `[proxy]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Loopback address and port the proxy listens on.
    pub listen: String,
    /// The port name that `<slug>.localhost` reaches; defaults to the first service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The one OAuth redirect path.
    pub callback: String,
    /// Path routes `/<slug>/…` reach the worktree without the `/<slug>` prefix.
    pub strip_prefix: bool,
    /// A cookie a worktree's app sets for `Domain=localhost` (or its own host, or a parent)
    /// is made host-only for the worktree's host: the browser keeps it, and only for that
    /// worktree. `false` passes cookies as the app sent them.
    pub host_only_cookies: bool,
    /// HTTPS on the proxy's port too, with certificates from a local authority of this
    /// user's (`pwt proxy trust` makes browsers trust it): `PWT_URL` and the OAuth
    /// redirect URI are `https://`.
    pub https: bool,
    /// With `https`, plain HTTP requests are redirected to HTTPS instead of served.
    pub redirect_http: bool,
}

impl ProxyConfig {
    /// `https` with `https = true`, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            route: None,
            callback: "/auth/callback".into(),
            strip_prefix: false,
            host_only_cookies: true,
            https: false,
            redirect_http: false,
        }
    }
}

/// A configuration value that parses but makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `ports.range`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// True for names a shell and every dotenv reader accept as a variable name.
pub fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Config {
    /// The port services in use: the configured ones, or one `app` port in `PORT`.
    pub fn services(&self) -> BTreeMap<String, PortService> {
        if self.ports.services.is_empty() {
            BTreeMap::from([(
                DEFAULT_SERVICE.to_owned(),
                PortService {
                    env: "PORT".into(),
                    main: Some(3000),
                },
            )])
        } else {
            self.ports.services.clone()
        }
    }

    /// The service `<slug>.localhost` reaches.
    pub fn route_service(&self) -> String {
        self.proxy.route.clone().unwrap_or_else(|| {
            let services = self.services();
            // Prefer a service literally called frontend, as in the seed workflow.
            if services.contains_key("frontend") {
                "frontend".into()
            } else {
                services
                    .keys()
                    .next()
                    .cloned()
                    .expect("services() is never empty")
            }
        })
    }

    /// The port the proxy listens on (`proxy.listen`), which every worktree's URLs name.
    pub fn proxy_port(&self) -> u16 {
        crate::env::proxy_port(&self.proxy.listen).unwrap_or(crate::env::DEFAULT_PROXY_PORT)
    }

    /// Checks what serde cannot: ranges, names, references between keys.
    fn validate_processes(&self) -> Result<(), ConfigError> {
        for (name, command) in &self.processes {
            let fine = !name.is_empty()
                && name.len() <= 40
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fine {
                return Err(bad(
                    "processes",
                    format!(
                        "{name:?} is not a process name: use letters, digits, - and _ (at most 40)"
                    ),
                ));
            }
            if command.trim().is_empty() {
                return Err(bad(format!("processes.{name}"), "the command is empty"));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (key, size) in [
            ("limits.memory", &l.memory),
            ("limits.min_free_memory", &l.min_free_memory),
        ] {
            if let Some(s) = size {
                parse_size(s).map_err(|e| bad(key, e))?;
            }
        }
        if let Some(cpu) = l.cpu
            && !(cpu.is_finite() && (0.01..=1024.0).contains(&cpu))
        {
            return Err(bad(
                "limits.cpu",
                format!("{cpu} CPUs: give a number from 0.01 to 1024"),
            ));
        }
        if l.memory
            .as_deref()
            .and_then(|m| parse_size(m).ok())
            .is_some_and(|b| b < 4 << 20)
        {
            return Err(bad(
                "limits.memory",
                "below 4M nothing starts: give at least 4M",
            ));
        }
        Ok(())
    }

    /// Each env file a name of its own.
    fn validate_env_files(&self) -> Result<(), ConfigError> {
        let files = self.env_files();
        for (i, (_, name)) in files.iter().enumerate() {
            if files[..i].iter().any(|(_, n)| n == name) {
                return Err(bad(
                    "docker.env_file",
                    format!(
                        "{name:?} is already another env file of pwt's: each needs a name of its own (the formats differ)"
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_env_files()?;
        self.validate_ports()?;
        self.validate_processes()?;
        self.validate_limits()?;
        let services = self.services();
        if let Some(route) = &self.proxy.route
            && !services.contains_key(route)
        {
            let known: Vec<_> = services.keys().map(String::as_str).collect();
            return Err(bad(
                "proxy.route",
                format!("{route:?} is not a service; known: {}", known.join(", ")),
            ));
        }
        if !self.proxy.callback.starts_with('/') {
            return Err(bad(
                "proxy.callback",
                "the callback path must start with '/'",
            ));
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                return Err(bad(
                    format!("env.{key}"),
                    "not a valid environment variable name",
                ));
            }
        }
        if let Some(p) = &self.project {
            let ok = p.len() <= 50
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(
                    "project",
                    format!(
                        "{p:?} is not a project name: 1 to 50 letters, digits, '_', '.' or '-', starting with a letter or digit (it names databases, Compose projects and markers, and reaches hooks as COMPOSE_PROJECT_NAME)"
                    ),
                ));
            }
        }
        if self.worktree.path.trim().is_empty() {
            return Err(bad("worktree.path", "the path template is empty"));
        }
        self.validate_services()
    }

    /// Hooks, the services' sections, the team store.
    fn validate_services(&self) -> Result<(), ConfigError> {
        for (key, hooks) in [
            ("hooks.post-create", &self.hooks.post_create),
            ("hooks.pre-remove", &self.hooks.pre_remove),
        ] {
            if hooks.iter().any(|h| h.trim().is_empty()) {
                return Err(bad(key, "a hook command is empty"));
            }
        }
        if let Some(pg) = &self.postgres
            && let Some(wrong) = pg.test_databases.iter().find(|p| !p.contains("{db}"))
        {
            return Err(bad(
                "postgres.test_databases",
                format!(
                    "{wrong:?} does not name the worktree's database: write `{{db}}` in it, as in \"test_{{db}}\""
                ),
            ));
        }
        if self.team.is_some() && self.team_url().is_none() {
            return Err(bad(
                "team.url",
                "the team store needs a PostgreSQL: set `team.url`, or configure [postgres] (its url is the default)",
            ));
        }
        if let Some(r) = &self.redis
            && r.databases < 2
        {
            return Err(bad(
                "redis.databases",
                "needs at least 2 (DB 0 stays the main worktree's)",
            ));
        }
        Ok(())
    }

    /// `[ports]`: the range and each service's name, variable and main port.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let [lo, hi] = self.ports.range;
        if lo == 0 || lo > hi {
            return Err(bad(
                "ports.range",
                format!(
                    "[{lo}, {hi}] is empty or starts at 0; write [low, high] with 0 < low <= high"
                ),
            ));
        }
        if lo < 1024 {
            return Err(bad(
                "ports.range",
                format!(
                    "[{lo}, {hi}] reaches below 1024: those ports are the system's (only root may listen on them); choose a range like [20000, 29999]"
                ),
            ));
        }
        let services = self.services();
        let span = usize::from(hi - lo) + 1;
        if span < services.len() {
            return Err(bad(
                "ports.range",
                format!(
                    "[{lo}, {hi}] holds {span} ports, fewer than the {} services",
                    services.len()
                ),
            ));
        }
        let mut seen_env = BTreeMap::new();
        for (name, svc) in &services {
            let key = format!("ports.services.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad(key, "service names use a-z, 0-9, '_' and '-'"));
            }
            if !is_env_name(&svc.env) {
                return Err(bad(
                    format!("{key}.env"),
                    format!("{:?} is not a valid environment variable name", svc.env),
                ));
            }
            // A port's variable holds a number: a name like GIT_CONFIG_GLOBAL, PYTHONPATH or
            // PWT_CONFIG would make a committed pwt.toml point programs at files it carries.
            if !svc.env.contains("PORT") || svc.env.starts_with("PWT_") {
                return Err(bad(
                    format!("{key}.env"),
                    format!(
                        "{:?}: a port's variable must have PORT in its name (FRONTEND_PORT, DJANGO_PORT), and not start with PWT_; use [env] to give the port another name (`NAME = \"{{{{ ports.{name} }}}}\"`)",
                        svc.env
                    ),
                ));
            }
            if let Some(other) = seen_env.insert(svc.env.clone(), name.clone()) {
                return Err(bad(
                    format!("{key}.env"),
                    format!("{} is already used by service {other}", svc.env),
                ));
            }
            if svc.main == Some(0) {
                return Err(bad(
                    format!("{key}.main"),
                    "port 0 means \"any port\"; give a real port",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_with_one_port() {
        let c = Config::default();
        c.validate().expect("defaults are valid");
        assert_eq!(c.services().len(), 1);
        assert_eq!(c.route_service(), DEFAULT_SERVICE);
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        c.ports.range = [30000, 20000];
        assert_eq!(c.validate().expect_err("bad").key, "ports.range");
        let mut c = Config::default();
        c.proxy.route = Some("nope".into());
        assert_eq!(c.validate().expect_err("bad").key, "proxy.route");
        let mut c = Config::default();
        c.ports.services.insert(
            "web".into(),
            PortService {
                env: "1X".into(),
                main: None,
            },
        );
        assert_eq!(c.validate().expect_err("bad").key, "ports.services.web.env");
    }

    #[test]
    fn file_settings() {
        assert_eq!(FileSetting::Enabled(false).name("x"), None);
        assert_eq!(FileSetting::Enabled(true).name("x"), Some("x"));
        assert_eq!(FileSetting::Name("y".into()).name("x"), Some("y"));
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "G", "-1G", "0", "lots", "1e30", "NaNG", "inf"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
