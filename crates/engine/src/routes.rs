//! The proxy's route table, from the registry: `ready` worktrees of this repository by slug,
//! and the main worktree.

use std::future::Future;
use std::time::{Duration, SystemTime};

use pwt_alloc::{LeaseState, State};
use pwt_core::MAIN_SLUG;
use pwt_proxy::{LogLine, Proxy, ProxyError, ProxyOptions, RouteTable, Target};

use crate::error::{Error, ErrorKind, Result};

/// Where the proxy sends a line per request.
pub type LogFn = std::sync::Arc<dyn Fn(LogLine) + Send + Sync>;

use crate::events::{Event, Reporter};
use crate::project::Project;

impl Project {
    /// The route table as the registry stands in `state`.
    pub fn routes(&self, state: &State) -> RouteTable {
        let route = self.config.route_service();
        let worktrees = state
            .of_repo(&self.repo.common_dir)
            .filter(|l| l.state == LeaseState::Ready)
            .filter_map(|l| {
                let port = *l.ports.get(&route)?;
                Some((
                    l.slug.to_string(),
                    Target {
                        slug: l.slug.to_string(),
                        branch: l.branch.to_string(),
                        port,
                    },
                ))
            })
            .collect();
        let main_branch = self
            .repo
            .main_root
            .as_ref()
            .and_then(|root| self.repo.branch_at(root))
            .unwrap_or_else(|| "main".into());
        let main = self
            .config
            .services()
            .get(&route)
            .and_then(|s| s.main)
            .map(|port| Target {
                slug: MAIN_SLUG.into(),
                branch: main_branch,
                port,
            });
        RouteTable {
            worktrees,
            main,
            callback: self.config.proxy.callback.clone(),
            port: self.config.proxy_port(),
            strip_prefix: self.config.proxy.strip_prefix,
            host_only_cookies: self.config.proxy.host_only_cookies,
            https: self.config.proxy.https,
        }
    }
}

impl Project {
    /// Keeps `proxy`'s route table following the registry until `stop` completes: a cheap
    /// stat every 200 ms, a re-read when the file changed, so `pwt new` and `pwt rm` take
    /// effect within a second. A registry that cannot be read keeps the previous routes (one
    /// warning per spell).
    pub async fn follow_routes(
        &self,
        proxy: &Proxy,
        stop: impl Future<Output = ()>,
        reporter: &mut (dyn Reporter + Send),
    ) {
        let file = self.registry.file();
        let stamp_of = |p: &std::path::Path| -> Option<(SystemTime, u64)> {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        };
        let mut stamp = stamp_of(&file);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut warned = false;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => {}
            }
            let now = stamp_of(&file);
            if now == stamp {
                continue;
            }
            stamp = now;
            match self.state() {
                Ok(state) => {
                    proxy.set_table(self.routes(&state));
                    warned = false;
                }
                Err(e) if !warned => {
                    reporter.report(Event::Warning(format!("keeping the previous routes: {e}")));
                    warned = true;
                }
                Err(_) => {}
            }
        }
    }
}

/// The proxy bound to its port, not serving yet ([`Project::bind_proxy`]): the caller can
/// say where it listens before [`BoundProxy::serve`].
pub struct BoundProxy {
    listeners: Vec<std::net::TcpListener>,
    proxy: std::sync::Arc<Proxy>,
    /// The port it listens on (the one asked for, or the one port 0 found).
    pub port: u16,
    /// Each address it listens on, as a URL (`http://127.0.0.1:8080`, `https://[::1]:8080`).
    pub urls: Vec<String>,
}

impl std::fmt::Debug for BoundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundProxy")
            .field("port", &self.port)
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl Project {
    /// The project's proxy, bound: on `listen` (`proxy.listen` for `None`; loopback only,
    /// [`pwt_proxy::listen_port`]), with the worktrees' routes as the registry has them,
    /// HTTPS from the local authority under the state directory when `proxy.https` is on,
    /// each request to `log`.
    pub fn bind_proxy(&self, listen: Option<&str>, log: Option<LogFn>) -> Result<BoundProxy> {
        let listen = listen.unwrap_or(&self.config.proxy.listen);
        let port = pwt_proxy::listen_port(listen).map_err(|e| {
            Error::new(ErrorKind::Invalid, e.to_string())
                .hint("`--listen 127.0.0.1:PORT`, or `[proxy] listen` in pwt.toml")
        })?;
        let tls = if self.config.proxy.https {
            let ca = std::sync::Arc::new(crate::https::local_ca(&self.options.state_dir)?);
            let tls_error = |e: ProxyError| Error::new(ErrorKind::Config, e.to_string());
            Some(ca.server_config().map_err(tls_error)?)
        } else {
            None
        };
        let listeners = pwt_proxy::bind_loopback(port).map_err(|e| {
            Error::new(ErrorKind::Io, e.to_string()).hint(
                "another proxy (or Caddy) may be running; stop it, or listen on 127.0.0.1:OTHER_PORT",
            )
        })?;
        let port = listeners[0].local_addr().map_or(port, |a| a.port());
        pwt_proxy::raise_open_file_limit();
        let options = ProxyOptions {
            public_port: port,
            log,
            tls,
            redirect_http: self.config.proxy.redirect_http,
            ..ProxyOptions::default()
        };
        let scheme = self.config.proxy.scheme();
        let urls = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| format!("{scheme}://{a}"))
            .collect();
        Ok(BoundProxy {
            proxy: Proxy::new(self.routes(&self.state()?), options),
            listeners,
            port,
            urls,
        })
    }
}

impl BoundProxy {
    /// Serves until `stop` completes, its routes following `project`'s registry
    /// ([`Project::follow_routes`]). Call on a multi-threaded Tokio runtime.
    pub async fn serve(
        self,
        project: &Project,
        stop: impl Future<Output = ()>,
        reporter: &mut (dyn Reporter + Send),
    ) {
        for l in self.listeners {
            tokio::spawn(self.proxy.clone().serve(l));
        }
        project.follow_routes(&self.proxy, stop, reporter).await;
    }
}
