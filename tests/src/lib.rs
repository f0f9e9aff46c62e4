//! `pwt-tests`: tests that span crates or check the workspace itself, and the helpers for
//! tests against the real shared services.
//!
//! A missing service skips a test locally (with the reason printed) and fails it when `CI`
//! is set, so CI can never pass by skipping.

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

/// Serializes tests that lease Redis DB indexes on the shared server, across test binaries
/// (the DB indexes are a server-wide resource). Hold the guard for the whole test.
pub fn redis_db_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("pwt-tests-redis-db.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("open the Redis DB test lock");
    f.lock().expect("lock the Redis DB test lock");
    f
}
