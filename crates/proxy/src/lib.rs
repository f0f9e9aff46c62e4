//! `pwt-proxy`: one local entry point for every worktree.
//!
//! - [`RouteTable::decide`]: the routing rules as a pure function — a `Host` that is not a
//!   loopback name gets 421; `/_pwt` status page; `Host: <slug>.localhost` (the callback too,
//!   once the browser is back where its login began); the OAuth callback path, routed by a
//!   state the proxy [`Learned`] from a worktree's authorization redirect (back to the
//!   [`Origin`] the login began on), else by the state's slug prefix to
//!   `http://localhost:<port>`, the state read from the query or a form_post body; `/<slug>/…`
//!   (optionally stripped); otherwise the main worktree.
//! - [`Proxy`]: the hyper 1 HTTP/1.1 server that applies them: loopback listeners
//!   ([`bind_loopback`]), streaming bodies, WebSocket upgrades, hop-by-hop headers removed
//!   ([`strip_hop_by_hop`]), its own `X-Forwarded-*`, a header-read timeout and a head size
//!   limit. The table is swapped live with [`Proxy::set_table`].
//! - [`caddyfile`]: the same routes for people who keep Caddy.
//!
//! It knows nothing of the registry: the embedding program builds the [`RouteTable`].

mod caddy;
mod cookie;
mod page;
mod route;
mod server;
mod tls;

pub use caddy::caddyfile;
pub use cookie::host_only;
pub use page::escape;
pub use route::{
    Decision, Learned, Origin, Req, RouteTable, Target, authorization_state, decode_component,
    host_port, is_loopback_host, origin_of, query_values, state_prefix,
};
pub use server::{
    Body, BoxError, LogLine, Proxy, ProxyError, ProxyOptions, bind_loopback, listen_port,
    listening, raise_open_file_limit, strip_hop_by_hop,
};
pub use tls::{CA_CERT, CA_NAME, LocalCa};
