//! The proxy's route table, from the registry: `ready` worktrees of this repository by slug,
//! and the main worktree.

use std::future::Future;
use std::time::{Duration, SystemTime};

use pwt_alloc::{LeaseState, State};
use pwt_core::MAIN_SLUG;
use pwt_proxy::{Proxy, RouteTable, Target};

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
