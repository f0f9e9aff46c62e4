//! `pwt-proxy`: one local entry point for every worktree.
//!
//! - [`RouteTable::decide`]: the routing rules as a pure function — `/_pwt` status page; the
//!   OAuth callback path, routed by the `state` parameter's slug to a 302 (307 for POST)
//!   whose Location is built from the registry's port and the request's own path and query;
//!   `Host: <slug>.localhost`; `/<slug>/…`; otherwise the main worktree.
//! - [`Proxy`]: the hyper 1 HTTP/1.1 server that applies them: loopback listeners
//!   ([`bind_loopback`]), streaming bodies, WebSocket upgrades, hop-by-hop headers removed
//!   ([`strip_hop_by_hop`]), its own `X-Forwarded-*`, a header-read timeout and a head size
//!   limit. The table is swapped live with [`Proxy::set_table`].
//! - [`caddyfile`]: the same routes for people who keep Caddy.
//!
//! It knows nothing of the registry: the embedding program builds the [`RouteTable`].

mod caddy;
mod page;
mod route;
mod server;

pub use caddy::caddyfile;
pub use page::escape;
pub use route::{Decision, RouteTable, Target, decode_component, query_values, state_prefix};
pub use server::{
    Body, BoxError, LogLine, Proxy, ProxyError, ProxyOptions, bind_loopback, listening,
    strip_hop_by_hop,
};
