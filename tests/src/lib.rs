//! `pwt-tests`: tests that span crates or check the workspace itself, and the helpers for
//! tests against the real shared services.
//!
//! A missing service skips a test locally (with the reason printed) and fails it when `CI`
//! is set, so CI can never pass by skipping.

pub mod source;

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

/// A port nothing listens on right now (the kernel's choice for port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
