//! `pwt-tests`: tests that span crates or check the workspace itself, and the helpers for
//! tests against the real shared services.
//!
//! A missing service skips a test locally (with the reason printed) and fails it when `CI`
//! is set, so CI can never pass by skipping.

mod plain;
pub mod source;

pub use plain::{Running, free_port};

use std::net::TcpStream;
use std::time::Duration;

/// Where the services of this machine are (the README's defaults).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// AMQP with the default guest account (loopback only, as RabbitMQ allows).
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672";
/// The management plugin.
pub const MANAGEMENT_URL: &str = "http://127.0.0.1:15672";
/// Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// True when `port` on loopback accepts connections. When it does not: panics under CI,
/// else prints why the calling test is skipped and returns false.
pub fn service_up(name: &str, port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        return true;
    }
    let why = format!("{name} is not reachable on 127.0.0.1:{port}");
    if std::env::var_os("CI").is_some() {
        panic!("{why}: CI must provide it (.ci/run starts it)");
    }
    eprintln!("skipping: {why}");
    false
}

/// All three services (and RabbitMQ's management API) are up.
pub fn all_services_up() -> bool {
    service_up("PostgreSQL", 5432)
        & service_up("Redis", 6379)
        & service_up("RabbitMQ", 5672)
        & service_up("RabbitMQ management", 15672)
}

/// A name unique to this test run, for resources on the shared servers.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "pwt_t_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A `redis-server` of the test's own, on a free loopback port, stopped when dropped.
///
/// Tests that need Redis DB indexes, a password or special settings use one, so they never
/// touch DBs of the shared server that someone else (a developer's worktrees in db mode) may
/// hold.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one with `extra` arguments (`--requirepass x`, `--databases 4`, …). `None`
    /// (with the reason printed) when `redis-server` is not installed, except under CI,
    /// where that fails the test.
    pub fn start(extra: &[&str]) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir for redis-server");
        for _ in 0..20 {
            let port = free_port();
            let spawned = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("redis-server cannot start: {e}");
                    if std::env::var_os("CI").is_some() {
                        panic!("{why}: CI must provide it");
                    }
                    eprintln!("skipping: {why}");
                    return None;
                }
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken after all: try another
                }
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Self {
                        child,
                        port,
                        _dir: dir,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server never came up on a free port");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A current-thread Tokio runtime, for a test that talks to a service directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
}

/// Parses `KEY='value'` lines (pwt's env files), comments left out.
pub fn dotenv(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("has =");
            (
                k.to_owned(),
                v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
            )
        })
        .collect()
}

/// A directory of a test's own: a HOME with a git identity and `main` as the default
/// branch, a state directory, repositories made with git in a bare environment.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh one.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Self { dir };
        std::fs::create_dir_all(s.home()).expect("home");
        std::fs::write(
            s.home().join(".gitconfig"),
            "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .expect("gitconfig");
        s
    }

    /// Its root.
    pub fn root(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Its HOME.
    pub fn home(&self) -> std::path::PathBuf {
        self.root().join("home")
    }

    /// Its pwt state directory.
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.root().join("state")
    }

    /// `cmd` with git's environment of this sandbox only.
    pub fn git_env(&self, cmd: &mut std::process::Command) {
        cmd.env("HOME", self.home())
            .env("GIT_CONFIG_GLOBAL", self.home().join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1");
    }

    /// Runs git in `dir`; its stdout. Panics with git's words when it fails.
    pub fn git(&self, dir: &std::path::Path, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new("git");
        self.git_env(&mut cmd);
        let out = cmd.current_dir(dir).args(args).output().expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A repository named `name` with one commit and optionally a pwt.toml.
    pub fn repo(&self, name: &str, pwt_toml: Option<&str>) -> std::path::PathBuf {
        let dir = self.root().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        self.git(&dir, &["init", "-q"]);
        std::fs::write(dir.join("README"), "hello\n").expect("write");
        if let Some(t) = pwt_toml {
            std::fs::write(dir.join("pwt.toml"), t).expect("write");
        }
        self.git(&dir, &["add", "."]);
        self.git(&dir, &["commit", "-q", "-m", "init"]);
        std::fs::canonicalize(dir).expect("canonical")
    }
}

/// A pwt.toml with all three services on this machine's servers, names unique to `project`
/// so parallel tests never share a database, vhost or prefix.
pub fn services_toml(project: &str, redis_mode: &str) -> String {
    format!(
        r#"project = "{project}"
[ports]
range = [27000, 28999]
[ports.services]
frontend = {{ env = "FRONTEND_PORT", main = 3000 }}
backend = {{ env = "BACKEND_PORT", main = 5000 }}
[postgres]
url = "{POSTGRES_URL}"
database = "{{{{ project }}}}_{{{{ slug | db_ident }}}}"
main_database = "{project}_main"
[rabbitmq]
url = "{AMQP_URL}"
management_url = "{MANAGEMENT_URL}"
vhost = "/{{{{ project }}}}/{{{{ slug }}}}"
[redis]
url = "{REDIS_URL}"
mode = "{redis_mode}"
prefix = "{{{{ project }}}}:{{{{ slug }}}}:"
"#
    )
}

/// Runs `statement` on the PostgreSQL server at `url`.
pub fn sql(url: &str, statement: &str) {
    use sqlx::Connection as _;
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        sqlx::Executor::execute(&mut c, sqlx::AssertSqlSafe(statement.to_owned()))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    });
}

/// The services' state as async probes, for tests already inside a runtime; the plain
/// functions of the same names wrap them.
pub mod probe {
    use sqlx::Connection as _;

    /// The database `name` exists on this machine's PostgreSQL.
    pub async fn db_exists(name: &str) -> bool {
        let mut c = sqlx::PgConnection::connect(super::POSTGRES_URL)
            .await
            .expect("connect to PostgreSQL");
        let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut c)
            .await
            .expect("query pg_database");
        row.is_some()
    }

    /// The vhost `name` exists on this machine's RabbitMQ (its management API).
    pub async fn vhost_exists(name: &str) -> bool {
        let url = format!(
            "{}/api/vhosts/{}",
            super::MANAGEMENT_URL,
            pwt_core::percent_encode(name)
        );
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-u",
                "guest:guest",
                &url,
            ])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout) == "200"
    }

    async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .expect("redis client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    /// The keys matching `pattern` on the Redis at `url`, sorted.
    pub async fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query_async(&mut redis(url).await)
            .await
            .expect("KEYS");
        keys.sort();
        keys
    }

    /// Sets `key` to `value` on the Redis at `url`.
    pub async fn redis_set(url: &str, key: &str, value: &str) {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut redis(url).await)
            .await
            .expect("SET");
    }
}

/// The database `name` exists on this machine's PostgreSQL.
pub fn db_exists(name: &str) -> bool {
    rt().block_on(probe::db_exists(name))
}

/// The vhost `name` exists on this machine's RabbitMQ (asked through its management API).
pub fn vhost_exists(name: &str) -> bool {
    rt().block_on(probe::vhost_exists(name))
}

/// The keys matching `pattern` on the Redis at `url`, sorted.
pub fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    rt().block_on(probe::redis_keys(url, pattern))
}

/// Sets `key` to `value` on the Redis at `url`.
pub fn redis_set(url: &str, key: &str, value: &str) {
    rt().block_on(probe::redis_set(url, key, value));
}

/// Publishes `body` to `queue` (declared first) on the vhost at `url`, confirmed.
pub async fn amqp_publish(url: &str, queue: &str, body: &[u8]) {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("amqp connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        queue.into(),
        lapin::options::QueueDeclareOptions::default(),
        lapin::types::FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_publish(
        "".into(),
        queue.into(),
        lapin::options::BasicPublishOptions::default(),
        body,
        lapin::BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    conn.close(200, "done".into()).await.expect("close");
}

/// Messages waiting in `queue` of the vhost at `url` (0 when the queue does not exist).
pub async fn amqp_count(url: &str, queue: &str) -> u32 {
    let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("amqp connect");
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..lapin::options::QueueDeclareOptions::default()
    };
    let n = match ch
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
    {
        Ok(q) => q.message_count(),
        Err(_) => 0,
    };
    let _ = conn.close(200, "done".into()).await;
    n
}
