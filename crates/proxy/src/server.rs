//! The HTTP/1.1 server: loopback listeners, forwarding with streaming bodies, WebSocket
//! upgrades, hop-by-hop hygiene, forwarding headers, timeouts and limits.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited, combinators::BoxBody};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::page;
use crate::route::{Decision, Learned, Req, RouteTable, Target, authorization_state, origin_of};

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
    /// An idle pooled connection to a worktree's server is closed after this.
    pub upstream_idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle_timeout: Duration,
    /// Largest form_post body read at the callback path; more is answered with 413.
    pub max_form_bytes: usize,
    /// How long a learned OAuth state is kept.
    pub state_ttl: Duration,
    /// How many learned states are kept at most (the oldest go first).
    pub max_states: usize,
    /// HTTPS on the same port as HTTP (a connection that opens with a TLS handshake gets
    /// TLS): the configuration of [`crate::LocalCa::server_config`].
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With `tls`, a plain HTTP request is redirected to HTTPS (308) instead of served.
    pub redirect_http: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(2),
            public_port: 8080,
            log: None,
            upstream_idle_timeout: Duration::from_secs(15),
            body_idle_timeout: Duration::from_secs(30),
            max_form_bytes: 64 * 1024,
            state_ttl: Duration::from_secs(600),
            max_states: 10_000,
            tls: None,
            redirect_http: false,
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
    /// The local certificate authority or the TLS configuration.
    #[error("HTTPS: {0}")]
    Tls(String),
    /// A listen address the proxy will not take: not `HOST:PORT`, or not loopback.
    #[error("{0}")]
    Listen(String),
}

/// The port of a listen address (`127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`; port
/// 0 for any free one). Only loopback: the proxy serves this machine alone. And only the
/// addresses it binds together (127.0.0.1 and ::1, which `localhost` and `*.localhost`
/// resolve to): another 127.x address would be a promise it does not keep.
pub fn listen_port(listen: &str) -> Result<u16, ProxyError> {
    let (host, port) = listen.rsplit_once(':').ok_or_else(|| {
        ProxyError::Listen(format!(
            "invalid listen address {listen:?}: write HOST:PORT, e.g. 127.0.0.1:8080"
        ))
    })?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(ProxyError::Listen(format!(
            "refusing to listen on {host}: the proxy binds loopback only (127.0.0.1, ::1, localhost)"
        )));
    }
    if !matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return Err(ProxyError::Listen(format!(
            "cannot listen on {host} only: the proxy binds 127.0.0.1 and ::1 together, which `localhost` and `*.localhost` resolve to (write 127.0.0.1:{port})"
        )));
    }
    port.parse()
        .map_err(|_| ProxyError::Listen(format!("invalid port in listen address {listen:?}")))
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

/// The proxy: a route table that can be swapped while it runs, a pooled client, the OAuth
/// states it learned, and which loopback each worktree's server listens on.
pub struct Proxy {
    table: RwLock<Arc<RouteTable>>,
    options: ProxyOptions,
    client: Client<HttpConnector, Body>,
    learned: Mutex<LearnedStates>,
    families: RwLock<HashMap<u16, IpAddr>>,
    /// The ports this proxy listens on: never a worktree's upstream (it would call itself).
    own_ports: RwLock<Vec<u16>>,
    /// Worktrees that left the route table while this proxy ran, with when: their names get
    /// a page saying so.
    removed: Mutex<HashMap<String, (String, Instant)>>,
}

/// How many times one request may pass through pwt's proxy (a worktree's server may call
/// another worktree through it; a loop through some server is cut off here).
const MAX_HOPS: u32 = 8;
/// The header that counts the passes.
const HOPS: &str = "x-pwt-hops";
/// How many removed worktrees are remembered.
const MAX_REMOVED: usize = 1000;

/// States seen going to an authorization endpoint: single use, expiring, bounded.
#[derive(Default)]
struct LearnedStates {
    by_state: HashMap<String, (Learned, Instant)>,
    order: VecDeque<String>,
}

impl LearnedStates {
    fn learn(&mut self, state: String, learned: Learned, ttl: Duration, max: usize) {
        let now = Instant::now();
        while self.order.len() >= max.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.by_state.remove(&old);
            }
        }
        // First writer wins: another worktree sending the same state never takes over a
        // pending login (the same one again only renews it).
        match self.by_state.get(&state) {
            Some((had, until)) if had.slug != learned.slug && *until > now => {}
            Some(_) => {
                self.by_state.insert(state, (learned, now + ttl));
            }
            None => {
                self.by_state.insert(state.clone(), (learned, now + ttl));
                self.order.push_back(state);
            }
        }
        // Forget what expired, oldest first.
        while let Some(front) = self.order.front() {
            match self.by_state.get(front) {
                Some((_, until)) if *until > now => break,
                _ => {
                    let old = self.order.pop_front().expect("front exists");
                    self.by_state.remove(&old);
                }
            }
        }
    }

    /// What was learned of `state`, left in place (a `HEAD` uses up nothing).
    fn peek(&self, state: &str) -> Option<Learned> {
        let (learned, until) = self.by_state.get(state)?;
        (*until > Instant::now()).then(|| learned.clone())
    }

    fn take(&mut self, state: &str) -> Option<Learned> {
        let (learned, until) = self.by_state.remove(state)?;
        self.order.retain(|s| s != state);
        (until > Instant::now()).then_some(learned)
    }
}

/// A request body that fails when it sends nothing for `timeout` (a stalled upload ties up
/// a worktree's server thread otherwise).
struct IdleTimeout {
    inner: Incoming,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for IdleTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err("the request body stalled".into()))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft limit of open files to the hard one, where the system allows: every
/// proxied connection holds two. Returns the limit now in force.
pub fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    let (Some(current), Some(max)) = (now.current, now.maximum) else {
        // Unlimited already.
        return now.current.or(Some(u64::MAX));
    };
    if current < max {
        let want = Rlimit {
            current: Some(max),
            maximum: Some(max),
        };
        if setrlimit(Resource::Nofile, want).is_ok() {
            return Some(max);
        }
    }
    Some(current)
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
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    // Scheme look-alikes frameworks read (Rack checks X-Forwarded-Ssl before the Proto).
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
];

/// True for a client header the proxy's own forwarding headers replace: one of
/// [`FORWARDING`], also written with `_` for `-` (CGI-style servers merge the two).
fn is_forwarding(name: &HeaderName) -> bool {
    let dashed = name.as_str().replace('_', "-");
    FORWARDING.contains(&dashed.as_str())
}

/// Removes hop-by-hop headers and every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        // `Connection: Host` never takes the Host away from the worktree's server.
        .filter(|n| *n != header::HOST)
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
            // Without a timer the idle timeout is never enforced.
            .pool_timer(TokioTimer::new())
            // An app's response may carry many Set-Cookie fields (hyper's default is 100);
            // the head's size stays bounded by the read buffer.
            .http1_max_headers(1000)
            .pool_idle_timeout(options.upstream_idle_timeout)
            .build(connector);
        Arc::new(Self {
            table: RwLock::new(Arc::new(table)),
            options,
            client,
            learned: Mutex::new(LearnedStates::default()),
            families: RwLock::new(HashMap::new()),
            own_ports: RwLock::new(Vec::new()),
            removed: Mutex::new(HashMap::new()),
        })
    }

    /// Swaps in a new route table; requests already in flight keep the old one. Worktrees
    /// that are gone from it are remembered (with when), those back again forgotten.
    pub fn set_table(&self, table: RouteTable) {
        let old = self.table();
        {
            let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
            for (slug, t) in &old.worktrees {
                if !table.worktrees.contains_key(slug) {
                    removed.insert(slug.clone(), (t.branch.clone(), Instant::now()));
                }
            }
            removed.retain(|slug, _| !table.worktrees.contains_key(slug));
            if removed.len() > MAX_REMOVED {
                let mut by_age: Vec<(String, Instant)> = removed
                    .iter()
                    .map(|(k, (_, at))| (k.clone(), *at))
                    .collect();
                by_age.sort_by_key(|(_, at)| *at);
                for (k, _) in by_age.iter().take(removed.len() - MAX_REMOVED) {
                    removed.remove(k);
                }
            }
        }
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    /// The current route table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Accepts connections on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: std::net::TcpListener) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        if let Ok(addr) = listener.local_addr() {
            self.own_ports
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(addr.port());
        }
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
            tokio::spawn(self.clone().connection(stream, peer));
        }
    }

    /// Serves one connection: TLS when it opens with a handshake and HTTPS is on (HTTP/2
    /// or HTTP/1.1 as the client chose by ALPN), else HTTP/1.1.
    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let tls = match &self.options.tls {
            Some(config) if starts_tls(&stream, self.options.header_read_timeout).await => {
                config.clone()
            }
            _ => return self.serve_http1(TokioIo::new(stream), peer, false).await,
        };
        let accept = tokio_rustls::TlsAcceptor::from(tls).accept(stream);
        let Ok(Ok(stream)) = tokio::time::timeout(self.options.header_read_timeout, accept).await
        else {
            return;
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let proxy = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer, true).await) }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new()).max_header_list_size(
                u32::try_from(self.options.max_header_bytes).unwrap_or(u32::MAX),
            );
            let _ = builder.serve_connection(io, service).await;
        } else {
            self.serve_http1(io, peer, true).await;
        }
    }

    /// HTTP/1.1 on `io` (with upgrades, for WebSockets); `tls`: it came over TLS.
    async fn serve_http1<I>(self: Arc<Self>, io: TokioIo<I>, peer: SocketAddr, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let header_timeout = self.options.header_read_timeout;
        let max_head = self.options.max_header_bytes;
        let proxy = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, peer, tls).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_header_size(max_head);
        let _ = builder.serve_connection(io, service).with_upgrades().await;
    }

    /// Answers one request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        let start = Instant::now();
        let table = self.table();
        let method = req.method().to_string();
        let host_count = req.headers().get_all(header::HOST).iter().count();
        let first_host = req.headers().get(header::HOST).cloned();
        // An absolute-form target's authority is the host (RFC 9112 3.2.2), whatever `Host`
        // says; two `Host` fields are a malformed request.
        let host = match req.uri().authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => first_host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned),
        };
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let mut req = req;
        req.extensions_mut().insert(Tls(tls));
        let (route, resp) = if let Some(to_https) = self.to_https(tls, host.as_deref(), &req) {
            ("to https".to_owned(), to_https)
        } else if host_count > 1 {
            ("bad request".to_owned(), two_hosts())
        } else {
            match self.read_form(req, &table, &path).await {
                Err(resp) => ("callback refused".to_owned(), resp),
                Ok((req, form)) => {
                    let navigate = req
                        .headers()
                        .get("sec-fetch-mode")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"navigate"));
                    let facts = Req {
                        method: &method,
                        host: host.as_deref(),
                        path: &path,
                        query: query.as_deref(),
                        form: form.as_deref(),
                        port: self.options.public_port,
                        navigate,
                        tls,
                    };
                    // A HEAD (a link checker, `curl -I`) uses up no login.
                    let head = method == "HEAD";
                    let decision = table.decide(&facts, &mut |s| {
                        if head {
                            self.peek_state(s)
                        } else {
                            self.take_state(s)
                        }
                    });
                    self.answer(decision, req, &table, host.as_deref(), peer)
                        .await
                }
            }
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

    /// With `redirect_http`, a plain request to one of the proxy's names goes to HTTPS (308:
    /// same method and body).
    fn to_https(
        &self,
        tls: bool,
        host: Option<&str>,
        req: &Request<Incoming>,
    ) -> Option<Response<Body>> {
        if tls || self.options.tls.is_none() || !self.options.redirect_http {
            return None;
        }
        let host = host.filter(|h| crate::route::is_loopback_host(h))?;
        // The name from Host, the port this proxy's own (never one a Host header names).
        let name = crate::route::exact_name(host)?;
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let location =
            HeaderValue::from_str(&format!("https://{name}:{}{pq}", self.options.public_port))
                .ok()?;
        let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
        *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
        resp.headers_mut().insert(header::LOCATION, location);
        Some(resp)
    }

    fn peek_state(&self, state: &str) -> Option<Learned> {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peek(state)
    }

    fn take_state(&self, state: &str) -> Option<Learned> {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(state)
    }

    /// The request with its body ready to forward: a form_post callback's body read (it
    /// holds the state), any other body streamed with an idle timeout.
    async fn read_form(
        &self,
        req: Request<Incoming>,
        table: &RouteTable,
        path: &str,
    ) -> Result<(Request<Body>, Option<String>), Response<Body>> {
        let form_post = path == table.callback
            && req.method() == hyper::Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
        let timeout = self.options.body_idle_timeout;
        if !form_post {
            let req = req.map(|inner| {
                IdleTimeout {
                    inner,
                    timeout,
                    sleep: Box::pin(tokio::time::sleep(timeout)),
                }
                .boxed()
            });
            return Ok((req, None));
        }
        let (parts, body) = req.into_parts();
        let limit = self.options.max_form_bytes;
        let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
        let bytes = match read {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => {
                return Err(html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    page::reject_plain(&format!(
                        "the callback's form body is larger than {} KiB",
                        limit / 1024
                    )),
                ));
            }
            Err(_) => {
                return Err(html(
                    StatusCode::REQUEST_TIMEOUT,
                    page::reject_plain("the callback's form body stalled"),
                ));
            }
        };
        let form = String::from_utf8_lossy(&bytes).into_owned();
        let body = Full::new(bytes).map_err(|e| match e {}).boxed();
        Ok((Request::from_parts(parts, body), Some(form)))
    }

    async fn answer(
        self: &Arc<Self>,
        decision: Decision,
        req: Request<Body>,
        table: &RouteTable,
        host: Option<&str>,
        peer: SocketAddr,
    ) -> (String, Response<Body>) {
        let port = self.options.public_port;
        match decision {
            Decision::Misdirected => ("misdirected".to_owned(), misdirected()),
            Decision::Status => (
                "status page".to_owned(),
                html(
                    StatusCode::OK,
                    page::status(table, port, &listening_blocking),
                ),
            ),
            Decision::NoRoute => (
                "no route".to_owned(),
                html(
                    StatusCode::NOT_FOUND,
                    page::no_route(table, port, &listening_blocking),
                ),
            ),
            Decision::UnknownWorktree { slug } => {
                let removed = self
                    .removed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&slug)
                    .map(|(branch, at)| (branch.clone(), at.elapsed()));
                (
                    "unknown worktree".to_owned(),
                    html(
                        StatusCode::NOT_FOUND,
                        page::unknown_worktree(&slug, removed, table, port, &listening_blocking),
                    ),
                )
            }
            Decision::ToSlugHost { target, location } => {
                let mut r = html(StatusCode::FOUND, String::new());
                if let Ok(loc) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, loc);
                }
                (format!("to {}.localhost", target.slug), r)
            }
            Decision::Reject { reason } => (
                "callback rejected".to_owned(),
                html(
                    StatusCode::BAD_REQUEST,
                    page::reject(&reason, table, port, &listening_blocking),
                ),
            ),
            Decision::Redirect {
                target,
                status,
                location,
                keep,
            } => {
                if let Some((state, learned)) = keep {
                    self.learn(state, learned);
                }
                (
                    format!("redirect {}:{}", target.slug, target.port),
                    self.redirect(&target, status, &location, table).await,
                )
            }
            Decision::Forward { target, path } => (
                format!("{}:{}", target.slug, target.port),
                self.forward(req, &target, path, host, peer).await,
            ),
        }
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

    /// Which loopback the worktree's server at `port` listens on: remembered, else tried
    /// (IPv4 first, then IPv6; Node and Vite bound to `localhost` often take `::1` only).
    async fn upstream_ip(&self, port: u16) -> IpAddr {
        if let Some(ip) = self
            .families
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&port)
        {
            return *ip;
        }
        let within = self.options.connect_timeout;
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let connect = tokio::net::TcpStream::connect(SocketAddr::new(ip, port));
            if let Ok(Ok(_)) = tokio::time::timeout(within, connect).await {
                self.families
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(port, ip);
                return ip;
            }
        }
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    fn forget_upstream(&self, port: u16) {
        self.families
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
    }

    /// The proxy's own forwarding headers, replacing whatever the client sent: the
    /// browser's origin for frameworks that build absolute URLs.
    fn forwarding_headers(
        &self,
        headers: &mut HeaderMap,
        host: Option<&str>,
        peer: SocketAddr,
        tls: bool,
    ) {
        let proto = if tls { "https" } else { "http" };
        strip_hop_by_hop(headers);
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_forwarding(n))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
        let ip = peer.ip().to_string();
        let port = host
            .and_then(crate::route::host_port)
            .unwrap_or(self.options.public_port)
            .to_string();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-forwarded-for", &ip);
        set("x-forwarded-proto", proto);
        set("x-forwarded-port", &port);
        let for_ = if peer.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip.clone()
        };
        match host {
            Some(h) => {
                set("x-forwarded-host", h);
                set(
                    "forwarded",
                    &format!("for={for_};host=\"{h}\";proto={proto}"),
                );
            }
            None => set("forwarded", &format!("for={for_};proto={proto}")),
        }
    }

    /// How many times the request passed through pwt's proxy; a 508 page when forwarding
    /// it would call the proxy itself (the route port is the proxy's own) or it went round
    /// too many times already.
    fn hops(&self, req: &Request<Body>, target: &Target) -> Result<u32, Box<Response<Body>>> {
        let own = target.port == self.options.public_port
            || self
                .own_ports
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&target.port);
        let hops: u32 = req
            .headers()
            .get(HOPS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if own || hops >= MAX_HOPS {
            return Err(Box::new(html(
                StatusCode::LOOP_DETECTED,
                page::loop_detected(target, own),
            )));
        }
        Ok(hops)
    }

    async fn forward(
        &self,
        mut req: Request<Body>,
        target: &Target,
        path: Option<String>,
        host: Option<&str>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let hops = match self.hops(&req, target) {
            Ok(n) => n,
            Err(loop_page) => return *loop_page,
        };
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let tls = req.extensions().get::<Tls>().is_some_and(|t| t.0);
        self.forwarding_headers(req.headers_mut(), host, peer, tls);
        req.headers_mut().insert(
            HeaderName::from_static(HOPS),
            HeaderValue::from(hops.saturating_add(1)),
        );
        if let Some(proto) = &upgrade {
            let headers = req.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, proto.clone());
        }
        let pq = match (&path, req.uri().query()) {
            (Some(p), Some(q)) => format!("{p}?{q}"),
            (Some(p), None) => p.clone(),
            (None, _) => req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
        };
        if format!("http://127.0.0.1{pq}")
            .parse::<hyper::Uri>()
            .is_err()
        {
            return html(StatusCode::BAD_REQUEST, page::bad_gateway(target));
        }
        *req.version_mut() = Version::HTTP_11;
        // A bodiless request can be sent again when the memo of the server's loopback was
        // stale (it restarted on the other one): nothing of it reached anyone.
        let again = req.body().is_end_stream().then(|| {
            let mut copy = Request::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
            *copy.method_mut() = req.method().clone();
            *copy.headers_mut() = req.headers().clone();
            *copy.version_mut() = Version::HTTP_11;
            copy
        });
        let mut resp = match self.send(req, target.port, &pq).await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                self.forget_upstream(target.port);
                let retried = match again {
                    Some(copy) => self.send(copy, target.port, &pq).await.ok(),
                    None => None,
                };
                match retried {
                    Some(r) => r,
                    None => {
                        self.forget_upstream(target.port);
                        return html(StatusCode::BAD_GATEWAY, page::bad_gateway(target));
                    }
                }
            }
            Err(_) => return html(StatusCode::BAD_GATEWAY, page::upstream_failed(target)),
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                splice(client_upgrade, hyper::upgrade::on(&mut resp));
            }
        } else {
            let status = resp.status();
            self.finish(resp.headers_mut(), status, target, host, tls);
        }
        resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed())
    }

    /// A worktree's response head on its way back: hop-by-hop headers gone, a login's
    /// state learned from a redirect, cookies kept home.
    fn finish(
        &self,
        headers: &mut HeaderMap,
        status: StatusCode,
        target: &Target,
        host: Option<&str>,
        tls: bool,
    ) {
        strip_hop_by_hop(headers);
        if status.is_redirection() {
            self.learn_from(headers, target, host, tls);
        }
        if self.table().host_only_cookies
            && let Some(host) = host
        {
            keep_cookies_home(headers, host);
        }
    }

    /// Sends `req` to the worktree's server at `port` (whichever loopback it listens on).
    async fn send(
        &self,
        mut req: Request<Body>,
        port: u16,
        pq: &str,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let authority = match self.upstream_ip(port).await {
            IpAddr::V6(_) => format!("[::1]:{port}"),
            IpAddr::V4(_) => format!("127.0.0.1:{port}"),
        };
        if let Ok(uri) = format!("http://{authority}{pq}").parse() {
            *req.uri_mut() = uri;
        }
        self.client.request(req).await
    }

    /// A redirect to an authorization endpoint with the registered redirect URI: remember
    /// its state for this worktree and the origin the browser is on.
    fn learn_from(&self, headers: &HeaderMap, target: &Target, host: Option<&str>, tls: bool) {
        let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
            return;
        };
        let table = self.table();
        let ports = [table.port, self.options.public_port];
        let Some(state) = authorization_state(&table, location, &ports) else {
            return;
        };
        let Some(origin) = origin_of(host, &target.slug) else {
            return;
        };
        self.learn(
            state,
            Learned {
                slug: target.slug.clone(),
                origin,
                tls,
            },
        );
    }

    /// Remembers `state` as `learned`'s, within the configured lifetime and bound.
    fn learn(&self, state: String, learned: Learned) {
        self.learned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .learn(
                state,
                learned,
                self.options.state_ttl,
                self.options.max_states,
            );
    }
}

/// Whether a request came over TLS (a request extension).
#[derive(Clone, Copy, Debug)]
struct Tls(bool);

/// True when the connection's first byte is a TLS handshake record (0x16), waiting at most
/// `within` for it.
async fn starts_tls(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0] == 0x16
    )
}

/// Each `Set-Cookie` whose `Domain` names home made host-only for `host`.
fn keep_cookies_home(headers: &mut HeaderMap, host: &str) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|text| crate::cookie::host_only(text, host))
                .and_then(|new| HeaderValue::from_str(&new).ok())
                .unwrap_or_else(|| v.clone())
        })
        .collect();
    headers.remove(header::SET_COOKIE);
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
}

/// 400 for a request with two `Host` fields (RFC 9112 3.2): which one a worktree's server
/// would believe is anyone's guess.
/// Copies bytes both ways between an upgraded client connection and the upgraded upstream
/// one (a WebSocket), until either side closes.
fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        if let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
}

fn two_hosts() -> Response<Body> {
    let mut r = html(
        StatusCode::BAD_REQUEST,
        page::reject_plain("the request has more than one Host header"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 421 for a `Host` that is not a loopback name: no route, no status page, nothing about the
/// worktrees (a page on a foreign origin that rebinds its name to 127.0.0.1 learns nothing).
fn misdirected() -> Response<Body> {
    let text = "421 Misdirected Request: pwt's proxy serves localhost, *.localhost, 127.0.0.1 and [::1] only\n";
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::listen_port;

    #[test]
    fn only_the_loopback_addresses_the_proxy_binds_are_taken() {
        for (listen, port) in [
            ("127.0.0.1:8080", 8080),
            ("[::1]:8081", 8081),
            ("localhost:0", 0),
        ] {
            assert_eq!(listen_port(listen).expect(listen), port);
        }
        for (listen, says) in [
            ("0.0.0.0:8080", "loopback only"),
            ("192.168.1.2:80", "loopback only"),
            ("127.0.0.2:8080", "127.0.0.1 and ::1 together"),
            ("8080", "HOST:PORT"),
            ("127.0.0.1:http", "invalid port"),
        ] {
            let e = listen_port(listen).expect_err(listen).to_string();
            assert!(e.contains(says), "{listen}: {e}");
        }
    }
}
