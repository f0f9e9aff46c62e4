//! The HTTP/1.1 server: loopback listeners, forwarding with streaming bodies, WebSocket
//! upgrades, hop-by-hop hygiene, forwarding headers, timeouts and limits.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::page;
use crate::route::{Decision, RouteTable, Target};

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Response bodies: streamed from upstream, or a page of ours.
pub type Body = BoxBody<Bytes, BoxError>;

/// One line of the access log. The query string is never included: for the callback it
/// holds the OAuth `code`.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// Method.
    pub method: String,
    /// Host header.
    pub host: String,
    /// Path without the query.
    pub path: String,
    /// Where it went (`feat-x:20001`, `redirect feat-x:20001`, `status page`, …).
    pub route: String,
    /// Response status.
    pub status: u16,
    /// Time to the response head (a streamed body may take longer).
    pub elapsed: Duration,
}

/// Tunables.
#[derive(Clone)]
pub struct ProxyOptions {
    /// A client must send its whole request head within this time (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head; more is answered with 431.
    pub max_header_bytes: usize,
    /// Connecting to a worktree's server.
    pub connect_timeout: Duration,
    /// The port the proxy listens on, for links in pages.
    pub public_port: u16,
    /// Receives one line per request.
    pub log: Option<Arc<dyn Fn(LogLine) + Send + Sync>>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(2),
            public_port: 8080,
            log: None,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// Binds `port` on 127.0.0.1 and ::1. Refuses, naming the address, when either is taken; a
/// machine without IPv6 gets the IPv4 listener alone.
pub fn bind_loopback(port: u16) -> Result<Vec<std::net::TcpListener>, ProxyError> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let l4 = std::net::TcpListener::bind(v4).map_err(|e| ProxyError::Bind {
        addr: v4,
        reason: e.to_string(),
    })?;
    let port = l4.local_addr().map(|a| a.port()).unwrap_or(port);
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let mut out = vec![l4];
    match std::net::TcpListener::bind(v6) {
        Ok(l6) => out.push(l6),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(97) => {
        }
        Err(e) => {
            return Err(ProxyError::Bind {
                addr: v6,
                reason: e.to_string(),
            });
        }
    }
    for l in &out {
        l.set_nonblocking(true).map_err(|e| ProxyError::Bind {
            addr: v4,
            reason: e.to_string(),
        })?;
    }
    Ok(out)
}

/// The proxy: a route table that can be swapped while it runs, and a pooled client.
pub struct Proxy {
    table: RwLock<Arc<RouteTable>>,
    options: ProxyOptions,
    client: Client<HttpConnector, Incoming>,
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Forwarding headers a client could spoof; the proxy sets its own.
const FORWARDING: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
];

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The protocol a request asks to upgrade to (`Connection: upgrade` + `Upgrade: X`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

fn html(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// True when something accepts connections on 127.0.0.1:`port` (or ::1).
pub async fn listening(port: u16, within: Duration) -> bool {
    let try_one = |addr: SocketAddr| async move {
        matches!(
            tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await,
            Ok(Ok(_))
        )
    };
    try_one(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
        || try_one(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await
}

fn listening_blocking(port: u16) -> bool {
    let t = Duration::from_millis(100);
    std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), t).is_ok()
        || std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), t)
            .is_ok()
}

impl Proxy {
    /// A proxy with `table`.
    pub fn new(table: RouteTable, options: ProxyOptions) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(Self {
            table: RwLock::new(Arc::new(table)),
            options,
            client,
        })
    }

    /// Swaps in a new route table; requests already in flight keep the old one.
    pub fn set_table(&self, table: RouteTable) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    /// The current route table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Accepts connections on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: std::net::TcpListener) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(_) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            let header_timeout = self.options.header_read_timeout;
            let max_head = self.options.max_header_bytes;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_header_size(max_head);
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let start = std::time::Instant::now();
        let table = self.table();
        let method = req.method().to_string();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned);
        let path = req.uri().path().to_owned();
        let decision = table.decide(&method, host.as_deref(), &path, req.uri().query());
        let port = self.options.public_port;
        let (route, resp) = match decision {
            Decision::Status => (
                "status page".to_owned(),
                html(
                    StatusCode::OK,
                    page::status(&table, port, &listening_blocking),
                ),
            ),
            Decision::NoRoute => (
                "no route".to_owned(),
                html(
                    StatusCode::NOT_FOUND,
                    page::no_route(&table, port, &listening_blocking),
                ),
            ),
            Decision::Reject { reason } => (
                "callback rejected".to_owned(),
                html(
                    StatusCode::BAD_REQUEST,
                    page::reject(&reason, &table, port, &listening_blocking),
                ),
            ),
            Decision::Redirect {
                target,
                status,
                location,
            } => (
                format!("redirect {}:{}", target.slug, target.port),
                self.redirect(&target, status, &location, &table).await,
            ),
            Decision::Forward(target) => (
                format!("{}:{}", target.slug, target.port),
                self.forward(req, &target, peer).await,
            ),
        };
        if let Some(log) = &self.options.log {
            log(LogLine {
                method,
                host: host.unwrap_or_default(),
                path,
                route,
                status: resp.status().as_u16(),
                elapsed: start.elapsed(),
            });
        }
        resp
    }

    /// A callback's redirect to a worktree, or a page saying why not.
    async fn redirect(
        &self,
        target: &Target,
        status: u16,
        location: &str,
        table: &RouteTable,
    ) -> Response<Body> {
        if !listening(target.port, self.options.connect_timeout).await {
            return html(StatusCode::BAD_GATEWAY, page::bad_gateway(target));
        }
        match HeaderValue::from_str(location) {
            Ok(loc) => {
                let mut r = html(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND),
                    String::new(),
                );
                r.headers_mut().insert(header::LOCATION, loc);
                r
            }
            Err(_) => html(
                StatusCode::BAD_REQUEST,
                page::reject(
                    "the callback URL is malformed",
                    table,
                    self.options.public_port,
                    &listening_blocking,
                ),
            ),
        }
    }

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        target: &Target,
        peer: SocketAddr,
    ) -> Response<Body> {
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let original_host = req.headers().get(header::HOST).cloned();
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        for name in FORWARDING {
            headers.remove(*name);
        }
        if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if let Some(h) = original_host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), h);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        if let Some(proto) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        match format!("http://127.0.0.1:{}{pq}", target.port).parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return html(StatusCode::BAD_REQUEST, page::bad_gateway(target)),
        }
        *req.version_mut() = Version::HTTP_11;
        let mut resp = match self.client.request(req).await {
            Ok(r) => r,
            Err(_) => return html(StatusCode::BAD_GATEWAY, page::bad_gateway(target)),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    if let (Ok(client), Ok(upstream)) =
                        tokio::join!(client_upgrade, upstream_upgrade)
                    {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        } else {
            strip_hop_by_hop(resp.headers_mut());
        }
        resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())
    }
}
