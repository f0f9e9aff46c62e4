//! How a worktree is shown: the JSON object (stable schema, documented in the README) and the
//! human summary printed by `new` and `up`.

use std::path::Path;
use std::time::Duration;

use pwt_alloc::Lease;
use serde_json::{Value, json};

use crate::output::{Style, printable};
use crate::paths::display_path;
use crate::services;
use crate::session::Session;

/// One port of a worktree.
pub struct PortInfo {
    /// Service name.
    pub name: String,
    /// Variable that carries it.
    pub env: String,
    /// Port number.
    pub port: u16,
    /// Something accepts connections on it right now.
    pub listening: Option<bool>,
}

/// Everything `list` and the summaries show of one worktree.
pub struct WorktreeInfo {
    /// Branch (or `(detached)`).
    pub branch: String,
    /// Slug (`main` for the main worktree).
    pub slug: String,
    /// Root.
    pub path: std::path::PathBuf,
    /// `ready`, `creating`, `removing`, `main`, `unmanaged`, or `missing` when the directory
    /// is gone.
    pub state: String,
    /// Ports.
    pub ports: Vec<PortInfo>,
    /// `http://<slug>.localhost:<proxy port>`.
    pub url: Option<String>,
    /// Teardown leftovers.
    pub leftover: Vec<String>,
    /// PostgreSQL database.
    pub database: Option<String>,
    /// RabbitMQ vhost.
    pub vhost: Option<String>,
    /// Redis key prefix (prefix mode).
    pub redis_prefix: Option<String>,
    /// Redis DB index (db mode).
    pub redis_db: Option<u16>,
    /// Repository common dir.
    pub repo: std::path::PathBuf,
}

impl Session {
    /// Info of a leased worktree.
    pub fn lease_info(&self, lease: &Lease, probe: bool) -> WorktreeInfo {
        lease_info(self.config(), lease, probe)
    }
}

/// Info of a lease, given the configuration that names its ports.
pub fn lease_info(config: &pwt_core::Config, lease: &Lease, probe: bool) -> WorktreeInfo {
    let services = config.services();
    let proxy_port = pwt_core::proxy_port(&config.proxy.listen).unwrap_or(8080);
    let exists = lease.path.exists();
    WorktreeInfo {
        branch: lease.branch.clone(),
        slug: lease.slug.to_string(),
        path: lease.path.clone(),
        state: if exists {
            lease.state.as_str().to_owned()
        } else {
            "missing".to_owned()
        },
        ports: lease
            .ports
            .iter()
            .map(|(name, port)| PortInfo {
                name: name.clone(),
                env: services
                    .get(name)
                    .map(|s| s.env.clone())
                    .unwrap_or_default(),
                port: *port,
                listening: probe.then(|| listening(*port)),
            })
            .collect(),
        url: Some(format!("http://{}.localhost:{proxy_port}", lease.slug)),
        leftover: lease.leftover.clone(),
        repo: lease.repo.clone(),
        database: lease.resources.get(services::DATABASE).cloned(),
        vhost: lease.resources.get(services::VHOST).cloned(),
        redis_prefix: lease.resources.get(services::REDIS_PREFIX).cloned(),
        redis_db: lease.redis_db,
    }
}

impl WorktreeInfo {
    /// The JSON object.
    pub fn to_json(&self) -> Value {
        let ports: serde_json::Map<String, Value> = self
            .ports
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    json!({
                        "port": p.port,
                        "env": p.env,
                        "url": format!("http://localhost:{}", p.port),
                        "listening": p.listening,
                    }),
                )
            })
            .collect();
        json!({
            "branch": self.branch,
            "slug": self.slug,
            "path": self.path,
            "state": self.state,
            "ports": ports,
            "url": self.url,
            "leftover": self.leftover,
            "repo": self.repo,
            "database": self.database,
            "vhost": self.vhost,
            "redis_prefix": self.redis_prefix,
            "redis_db": self.redis_db,
        })
    }

    /// `db demo_x · vhost /x · redis x:` for tables.
    pub fn data_cell(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.database {
            parts.push(format!("db {d}"));
        }
        if let Some(v) = &self.vhost {
            parts.push(format!("vhost {v}"));
        }
        if let Some(p) = &self.redis_prefix {
            parts.push(format!("redis {p}"));
        }
        if let Some(n) = self.redis_db {
            parts.push(format!("redis db {n}"));
        }
        printable(&parts.join(" · "))
    }

    /// The multi-line summary of `new` / `up`.
    pub fn print_summary(&self, style: Style, cwd: &Path, files: &[String], verb: &str) {
        println!(
            "{} {} {}",
            style.green("✓"),
            style.bold(&printable(&self.branch)),
            style.dim(&format!("{verb} (slug {})", self.slug))
        );
        let mut rows: Vec<(String, String)> = vec![("path".into(), display_path(&self.path, cwd))];
        for p in &self.ports {
            rows.push((
                p.name.clone(),
                format!("http://localhost:{}  {}", p.port, style.dim(&p.env)),
            ));
        }
        if let Some(url) = &self.url {
            rows.push(("proxy".into(), url.clone()));
        }
        if let Some(d) = &self.database {
            rows.push(("database".into(), printable(d)));
        }
        if let Some(v) = &self.vhost {
            rows.push(("vhost".into(), printable(v)));
        }
        if let Some(p) = &self.redis_prefix {
            rows.push(("redis".into(), format!("key prefix {}", printable(p))));
        }
        if let Some(n) = self.redis_db {
            rows.push(("redis".into(), format!("DB {n}")));
        }
        if !files.is_empty() {
            rows.push(("env".into(), files.join(", ")));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("  {k:<width$}  {v}");
        }
    }
}

/// True when something accepts connections on `port` at 127.0.0.1 or ::1.
pub fn listening(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    let t = Duration::from_millis(200);
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), t).is_ok()
        || TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), t).is_ok()
}
