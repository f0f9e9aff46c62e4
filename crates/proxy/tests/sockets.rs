//! The proxy on real sockets: routing, OAuth callbacks, hop-by-hop hygiene, spoofed
//! forwarding headers, request framing, slow and oversized clients, upstream down, port
//! taken, WebSocket upgrades.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pwt_proxy::{Proxy, ProxyOptions, RouteTable, Target, bind_loopback};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// What an upstream saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// A worktree's dev server: answers `<name> <path>`, echoes POST bodies, upgrades
/// WebSockets to an echo, and records every request.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: Arc<AtomicUsize>,
    /// Connections open right now.
    open: Arc<AtomicUsize>,
}

async fn upstream(name: &'static str) -> Upstream {
    upstream_on(name, std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)).await
}

/// An upstream listening on `ip` only. `/redirect?to=URL` answers a 302 to URL.
async fn upstream_on(name: &'static str, ip: std::net::IpAddr) -> Upstream {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (s2, c2, o2) = (seen.clone(), count.clone(), open.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (seen, count, open) = (s2.clone(), c2.clone(), o2.clone());
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let (seen, count) = (seen.clone(), count.clone());
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let headers = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                            .collect::<BTreeMap<_, _>>();
                        let path = req.uri().to_string();
                        if let Some((_, to)) = path.split_once("/redirect?to=") {
                            let to = pwt_proxy::decode_component(to).unwrap_or_default();
                            seen.lock().expect("lock").push(Seen {
                                path: path.clone(),
                                headers,
                                body: vec![],
                            });
                            return Ok(Response::builder()
                                .status(302)
                                .header("location", to)
                                .body(Full::new(Bytes::new()))
                                .expect("response"));
                        }
                        if path == "/many-cookies" {
                            let mut b = Response::builder();
                            for i in 0..150 {
                                b = b.header("set-cookie", format!("c{i}=1; Domain=localhost"));
                            }
                            return Ok(b.body(Full::new(Bytes::new())).expect("response"));
                        }
                        if path == "/cookies" {
                            return Ok(Response::builder()
                                .header("set-cookie", "sid=1; Domain=localhost; Path=/; HttpOnly")
                                .header("set-cookie", "theme=dark; Domain=example.com")
                                .header("set-cookie", "plain=1; Path=/")
                                .body(Full::new(Bytes::new()))
                                .expect("response"));
                        }
                        if headers.get("upgrade").map(String::as_str) == Some("websocket") {
                            let key = headers
                                .get("sec-websocket-key")
                                .cloned()
                                .unwrap_or_default();
                            let on = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                let Ok(io) = on.await else { return };
                                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                                    TokioIo::new(io),
                                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                                    None,
                                )
                                .await;
                                while let Some(Ok(m)) = ws.next().await {
                                    if m.is_close() {
                                        break;
                                    }
                                    if ws.send(m).await.is_err() {
                                        break;
                                    }
                                }
                                let _ = ws.close(None).await;
                            });
                            let accept =
                                tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                                    key.as_bytes(),
                                );
                            let resp = Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "websocket")
                                .header("sec-websocket-accept", accept)
                                .body(Full::new(Bytes::new()))
                                .expect("response");
                            seen.lock().expect("lock").push(Seen {
                                path,
                                headers,
                                body: vec![],
                            });
                            return Ok::<_, hyper::Error>(resp);
                        }
                        let body = req.into_body().collect().await?.to_bytes().to_vec();
                        seen.lock().expect("lock").push(Seen {
                            path: path.clone(),
                            headers,
                            body: body.clone(),
                        });
                        let mut text = format!("{name} {path}").into_bytes();
                        if !body.is_empty() {
                            text.extend_from_slice(b" body=");
                            text.extend_from_slice(&body);
                        }
                        Ok(Response::builder()
                            .header("connection", "keep-alive, x-upstream-private")
                            .header("x-upstream-private", "1")
                            .header("keep-alive", "timeout=5")
                            .body(Full::new(Bytes::from(text)))
                            .expect("response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Upstream {
        port,
        seen,
        count,
        open,
    }
}

fn target(slug: &str, port: u16) -> Target {
    Target {
        slug: slug.into(),
        branch: format!("feature/{slug}"),
        port,
    }
}

/// A proxy on an ephemeral loopback port with `table`.
async fn start(table: RouteTable, options: ProxyOptions) -> (u16, Arc<Proxy>) {
    let listeners = bind_loopback(0).expect("bind");
    let port = listeners[0].local_addr().expect("addr").port();
    let proxy = Proxy::new(
        table,
        ProxyOptions {
            public_port: port,
            ..options
        },
    );
    for l in listeners {
        tokio::spawn(proxy.clone().serve(l));
    }
    (port, proxy)
}

fn table(worktrees: &[(&str, u16)], main: Option<u16>) -> RouteTable {
    RouteTable {
        worktrees: worktrees
            .iter()
            .map(|(s, p)| (s.to_string(), target(s, *p)))
            .collect(),
        main: main.map(|p| target("main", p)),
        callback: "/auth/callback".into(),
        port: 8080,
        strip_prefix: false,
        host_only_cookies: true,
        https: false,
    }
}

/// Sends raw bytes, returns everything read until the server closes or `wait` passes.
async fn raw(port: u16, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(port: u16, host: &str, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw(port, req.as_bytes(), Duration::from_secs(5)).await
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn routes_each_worktree_and_the_main_one() {
    let (a, b, m) = (
        upstream("a").await,
        upstream("b").await,
        upstream("main").await,
    );
    let (port, proxy) = start(
        table(&[("feat-a", a.port), ("feat-b", b.port)], Some(m.port)),
        ProxyOptions::default(),
    )
    .await;
    assert!(
        get(port, &format!("feat-a.localhost:{port}"), "/x")
            .await
            .ends_with("a /x")
    );
    assert!(
        get(port, &format!("feat-b.localhost:{port}"), "/")
            .await
            .ends_with("b /")
    );
    assert!(
        get(port, "localhost", "/feat-b/assets/app.js")
            .await
            .ends_with("b /feat-b/assets/app.js")
    );
    assert!(
        get(port, "localhost", "/other")
            .await
            .ends_with("main /other")
    );
    // Live: a new table routes a new worktree at once; a removed one's name says it was
    // removed (and never reaches another worktree's app).
    let c = upstream("c").await;
    proxy.set_table(table(
        &[("feat-a", a.port), ("feat-c", c.port)],
        Some(m.port),
    ));
    assert!(get(port, "feat-c.localhost", "/").await.ends_with("c /"));
    let gone = get(port, "feat-b.localhost", "/").await;
    assert!(
        gone.starts_with("HTTP/1.1 404") && gone.contains("was removed"),
        "{gone}"
    );
    assert_eq!(
        m.count.load(Ordering::SeqCst),
        1,
        "main saw the removed one's request"
    );
    // Both loopback families listen.
    let mut s = TcpStream::connect(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port))).await;
    if let Ok(s) = s.as_mut() {
        s.write_all(b"GET / HTTP/1.1\r\nHost: feat-a.localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        assert!(out.ends_with("a /"), "{out}");
    }
    let status = get(port, "localhost", "/_pwt").await;
    assert!(
        status.contains("feat-a") && status.contains(&format!("http://feat-a.localhost:{port}/")),
        "{status}"
    );
}

#[tokio::test]
async fn a_request_that_would_come_back_to_the_proxy_is_cut_off() {
    // A route to the proxy's own port: answered at once, never forwarded to itself.
    let listeners = bind_loopback(0).expect("bind");
    let port = listeners[0].local_addr().expect("addr").port();
    let proxy = Proxy::new(
        table(&[("self", port)], None),
        ProxyOptions {
            public_port: 8080,
            ..ProxyOptions::default()
        },
    );
    for l in listeners {
        tokio::spawn(proxy.clone().serve(l));
    }
    let resp = get(port, "self.localhost", "/").await;
    assert!(resp.starts_with("HTTP/1.1 508"), "{resp}");
    // A loop through a server behind it (it sends every request back to the proxy) ends
    // after a few passes, not with the proxy's file descriptors.
    let (port, _p) = start(table(&[], None), ProxyOptions::default()).await;
    let bouncer = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let bounce_port = bouncer.local_addr().expect("addr").port();
    let passes = Arc::new(AtomicUsize::new(0));
    let seen = passes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = bouncer.accept().await else {
                break;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                // Pass the request on to the proxy as it came, headers and all (asking it
                // to close, so the answer's end is the connection's).
                let mut buf = vec![0u8; 8192];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let text = String::from_utf8_lossy(&buf[..n]).replacen(
                    "\r\n",
                    "\r\nConnection: close\r\n",
                    1,
                );
                let mut up = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .expect("connect");
                let _ = up.write_all(text.as_bytes()).await;
                let mut out = Vec::new();
                let _ = up.read_to_end(&mut out).await;
                let _ = stream.write_all(&out).await;
            });
        }
    });
    _p.set_table(table(&[("loop", bounce_port)], None));
    let resp = raw(
        port,
        b"GET / HTTP/1.1\r\nHost: loop.localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(resp.contains("508"), "{resp}");
    assert!(
        passes.load(Ordering::SeqCst) <= 9,
        "{} passes",
        passes.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn oauth_callback_goes_only_to_registered_worktrees() {
    let a = upstream("a").await;
    let (port, _p) = start(
        table(&[("feat-x", a.port), ("down", 1)], None),
        ProxyOptions::default(),
    )
    .await;
    let q = "code=abc%2B%2F&state=feat-x~R&iss=https%3A%2F%2Fidp.example";
    let r = get(port, "localhost", &format!("/auth/callback?{q}")).await;
    assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    assert_eq!(
        header(&r, "location"),
        Some(format!("http://localhost:{}/auth/callback?{q}", a.port).as_str())
    );
    // form_post: 307 so the browser re-posts the body.
    let post = "POST /auth/callback?state=feat-x~R HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\nConnection: close\r\n\r\ncode=abc".to_string();
    let r = raw(port, post.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 307"), "{r}");
    for bad in [
        "",
        "?code=1",
        "?state=",
        "?state=feat-x~a&state=feat-x~b",
        "?state=feat-x@evil.com~R",
        "?state=//evil.com~R",
        "?state=http:%2F%2Fevil.com~R",
        "?state=feat-x%0d%0aSet-Cookie:a=b~R",
        "?state=..%2F..~R",
        "?state=%3Cscript%3Ealert(1)%3C/script%3E",
    ] {
        let r = get(port, "localhost", &format!("/auth/callback{bad}")).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{bad}: {r}");
        assert_eq!(header(&r, "location"), None, "{bad}");
        assert_eq!(
            header(&r, "content-security-policy").map(|v| v.starts_with("default-src 'none'")),
            Some(true)
        );
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert!(!r.contains("<script>"), "{bad}: unescaped");
        assert!(
            !r.to_ascii_lowercase().contains("set-cookie:a=b\r"),
            "{bad}"
        );
    }
    // A registered worktree whose server is down: a 502 page, not a redirect.
    let r = get(port, "localhost", "/auth/callback?code=1&state=down~R").await;
    assert!(
        r.starts_with("HTTP/1.1 502") && header(&r, "location").is_none(),
        "{r}"
    );
    assert!(r.contains("port 1"), "{r}");
}

#[tokio::test]
async fn logs_never_hold_the_code() {
    let a = upstream("a").await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let options = ProxyOptions {
        log: Some(Arc::new(move |l| {
            l2.lock().expect("lock").push(format!("{l:?}"))
        })),
        ..ProxyOptions::default()
    };
    let (port, _p) = start(table(&[("feat-x", a.port)], Some(a.port)), options).await;
    get(
        port,
        "localhost",
        "/auth/callback?code=SECRETCODE&state=feat-x~R",
    )
    .await;
    get(
        port,
        "localhost",
        "/auth/callback?code=SECRETCODE&state=nope~R",
    )
    .await;
    get(port, "localhost", "/page?code=SECRETCODE").await;
    let lines = lines.lock().expect("lock");
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| !l.contains("SECRETCODE")), "{lines:?}");
}

#[tokio::test]
async fn hop_by_hop_and_forwarding_headers() {
    let a = upstream("a").await;
    let (port, _p) = start(table(&[("feat-a", a.port)], None), ProxyOptions::default()).await;
    let req = "GET /h HTTP/1.1\r\nHost: feat-a.localhost\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=9\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.com\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nX-Kept: yes\r\n\r\n";
    let resp = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = a.seen.lock().expect("lock")[0].clone();
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the upstream: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.headers["x-kept"], "yes");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "feat-a.localhost");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-port"], port.to_string());
    assert_eq!(
        seen.headers["forwarded"],
        "for=127.0.0.1;host=\"feat-a.localhost\";proto=http"
    );
    assert_eq!(seen.headers["host"], "feat-a.localhost");
    // The upstream's own hop-by-hop headers do not reach the client either.
    assert_eq!(header(&resp, "x-upstream-private"), None, "{resp}");
    assert_eq!(header(&resp, "keep-alive"), None, "{resp}");
}

#[tokio::test]
async fn ambiguous_framing_never_makes_two_upstream_requests() {
    let a = upstream("a").await;
    let (port, _p) = start(table(&[], Some(a.port)), ProxyOptions::default()).await;
    let attacks: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcdGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ];
    for attack in attacks {
        let before = a.count.load(Ordering::SeqCst);
        let resp = raw(port, attack, Duration::from_secs(3)).await;
        let after = a.count.load(Ordering::SeqCst);
        assert!(
            after - before <= 1,
            "one client request became {} upstream requests: {resp}",
            after - before
        );
        assert!(
            a.seen
                .lock()
                .expect("lock")
                .iter()
                .all(|s| s.path != "/smuggled"),
            "smuggled: {resp}"
        );
        assert!(!resp.contains("/smuggled"), "{resp}");
    }
}

#[tokio::test]
async fn slow_clients_time_out_without_hurting_others_and_huge_heads_get_431() {
    let a = upstream("a").await;
    let options = ProxyOptions {
        header_read_timeout: Duration::from_millis(500),
        ..ProxyOptions::default()
    };
    let (port, _p) = start(table(&[], Some(a.port)), options).await;
    // Slowloris: a head that never ends.
    let mut slow = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-1: a\r\n")
        .await
        .expect("write");
    // Others are served meanwhile.
    for _ in 0..5 {
        assert!(get(port, "localhost", "/ok").await.ends_with("a /ok"));
    }
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let _ = slow.write_all(b"X-2: b\r\n").await;
            let mut chunk = [0u8; 512];
            match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the slow client was never cut off: {}",
        String::from_utf8_lossy(&buf)
    );
    // A head over the limit.
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let resp = raw(port, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{}",
        &resp[..resp.len().min(200)]
    );
}

#[tokio::test]
async fn upstream_down_is_a_502_page_naming_the_worktree() {
    let dead = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let (port, _p) = start(table(&[("gone", dead_port)], None), ProxyOptions::default()).await;
    let r = get(port, "gone.localhost", "/").await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(
        r.contains("gone") && r.contains(&format!("port {dead_port}")),
        "{r}"
    );
}

#[tokio::test]
async fn refuses_to_start_when_the_port_is_taken_on_either_family() {
    let v4 = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let p = v4.local_addr().expect("addr").port();
    let err = bind_loopback(p).expect_err("taken").to_string();
    assert!(err.contains(&format!("127.0.0.1:{p}")), "{err}");
    if let Ok(v6) = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)) {
        let p = v6.local_addr().expect("addr").port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok() {
            let err = bind_loopback(p).expect_err("taken").to_string();
            assert!(err.contains(&format!("[::1]:{p}")), "{err}");
        }
    }
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    let a = upstream("a").await;
    let (port, _p) = start(table(&[], Some(a.port)), ProxyOptions::default()).await;
    let body = vec![b'z'; 3 * 1024 * 1024];
    let mut req = format!(
        "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let resp = raw(port, &req, Duration::from_secs(10)).await;
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "{}",
        &resp[..200.min(resp.len())]
    );
    assert_eq!(a.seen.lock().expect("lock")[0].body.len(), body.len());
    assert!(
        resp.len() > body.len(),
        "the echoed body did not come back whole"
    );
}

#[tokio::test]
async fn websocket_upgrade_passes_a_mebibyte_both_ways_and_closes_cleanly() {
    let a = upstream("a").await;
    let (port, _p) = start(table(&[("feat-a", a.port)], None), ProxyOptions::default()).await;
    let url = format!("ws://127.0.0.1:{port}/__vite_hmr");
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .expect("request");
    let mut request = request;
    request.headers_mut().insert(
        "host",
        format!("feat-a.localhost:{port}").parse().expect("host"),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(request)
        .await
        .expect("handshake through the proxy");
    assert_eq!(resp.status(), 101);
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.expect("send");
    let echoed = ws.next().await.expect("a message").expect("ok");
    assert_eq!(echoed.into_data().to_vec(), big);
    ws.send(Message::text("hmr:update"))
        .await
        .expect("send text");
    assert_eq!(
        ws.next().await.expect("msg").expect("ok"),
        Message::text("hmr:update")
    );
    ws.close(None).await.expect("close");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the close never came back through the proxy");
    assert_eq!(
        a.seen.lock().expect("lock")[0].headers["upgrade"],
        "websocket"
    );
}

#[tokio::test]
async fn foreign_hosts_get_421_and_nothing_else() {
    let a = upstream("a").await;
    let (port, _p) = start(
        table(&[("feat-a", a.port)], Some(a.port)),
        ProxyOptions::default(),
    )
    .await;
    for host in [
        "evil.com",
        "evil.com:8080",
        "feat-a.localhost.evil.com",
        "192.168.0.9",
    ] {
        for path in ["/", "/_pwt", "/feat-a/", "/auth/callback?state=feat-a~1"] {
            let r = get(port, host, path).await;
            assert!(r.starts_with("HTTP/1.1 421"), "{host} {path}: {r}");
            assert!(!r.contains("feat-a"), "{host} {path} leaks a slug: {r}");
        }
    }
    assert_eq!(
        a.count.load(Ordering::SeqCst),
        0,
        "a foreign Host reached a worktree"
    );
    let r = get(port, &format!("127.0.0.1:{port}"), "/").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// A state made by the app's own OAuth library: learned from its redirect to the identity
/// provider, used once, and the browser sent back to the origin its login began on.
#[tokio::test]
async fn learned_states_route_library_states_back_where_the_login_began() {
    let b = upstream("b").await;
    let mut t = table(&[("b", b.port)], None);
    t.port = 8080;
    let (port, _p) = start(t, ProxyOptions::default()).await;
    let authorize = |state: &str| {
        format!(
            "http://idp.example/authorize?client_id=c&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fauth%2Fcallback&state={state}&code_challenge=x"
        )
    };
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace('&', "%26")
            .replace('?', "%3F")
            .replace('=', "%3D")
    };
    // The login begins on b.localhost: the authorization redirect passes through.
    let r = get(
        port,
        "b.localhost:8080",
        &format!("/redirect?to={}", enc(&authorize("Rnd1"))),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    assert_eq!(header(&r, "location"), Some(authorize("Rnd1").as_str()));
    let r = get(port, "localhost:8080", "/auth/callback?code=c1&state=Rnd1").await;
    assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    assert_eq!(
        header(&r, "location"),
        // On the port this proxy listens on, whatever port the login's `Host` named.
        Some(format!("http://b.localhost:{port}/auth/callback?code=c1&state=Rnd1").as_str())
    );
    // Single use.
    let r = get(port, "localhost:8080", "/auth/callback?code=c1&state=Rnd1").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Back on b.localhost, the callback reaches b with its query.
    let r = get(
        port,
        "b.localhost:8080",
        "/auth/callback?code=c1&state=Rnd1",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("b /auth/callback?code=c1&state=Rnd1"),
        "{r}"
    );

    // form_post: the state in the body; a 307 keeps method and body.
    get(
        port,
        "b.localhost:8080",
        &format!("/redirect?to={}", enc(&authorize("Rnd2"))),
    )
    .await;
    let body = "code=c2&state=Rnd2";
    let post = format!(
        "POST /auth/callback HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(port, post.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 307"), "{r}");
    assert_eq!(
        header(&r, "location"),
        Some(format!("http://b.localhost:{port}/auth/callback").as_str())
    );

    // Begun on the proxy's own origin (a path route): forwarded there, body intact.
    get(
        port,
        "localhost:8080",
        &format!("/b/redirect?to={}", enc(&authorize("Rnd3"))),
    )
    .await;
    let body = "code=c3&state=Rnd3";
    let post = format!(
        "POST /auth/callback HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(port, post.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("body=code=c3&state=Rnd3"),
        "{r}"
    );

    // A redirect to another redirect URI teaches nothing.
    let other = authorize("Rnd4").replace("%2Fauth%2Fcallback", "%2Felsewhere");
    get(
        port,
        "b.localhost:8080",
        &format!("/redirect?to={}", enc(&other)),
    )
    .await;
    let r = get(port, "localhost:8080", "/auth/callback?state=Rnd4").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");

    // A form body over the bound: 413.
    let big = format!("state=b~1&pad={}", "x".repeat(70 * 1024));
    let post = format!(
        "POST /auth/callback HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        big.len()
    );
    let r = raw(port, post.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
}

#[tokio::test]
async fn an_upstream_on_ipv6_only_is_reached() {
    if std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    }
    let v6 = upstream_on("six", std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)).await;
    let (port, _p) = start(table(&[("six", v6.port)], None), ProxyOptions::default()).await;
    for _ in 0..3 {
        let r = get(port, "six.localhost", "/x").await;
        assert!(r.starts_with("HTTP/1.1 200") && r.contains("six /x"), "{r}");
    }
}

#[tokio::test]
async fn idle_upstream_connections_close_and_stalled_bodies_are_cut_off() {
    let a = upstream("a").await;
    let options = ProxyOptions {
        upstream_idle_timeout: Duration::from_millis(300),
        body_idle_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let (port, _p) = start(table(&[("feat-a", a.port)], None), options).await;
    for _ in 0..5 {
        let r = get(port, "feat-a.localhost", "/").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.open.load(Ordering::SeqCst),
        0,
        "pooled connections stayed open"
    );
    // A body that promises 100 bytes and sends 10, then nothing.
    let mut s = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("connect");
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: feat-a.localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        a.open.load(Ordering::SeqCst),
        0,
        "the stalled upload still holds the worktree's server"
    );
}

/// A one-request-at-a-time HTTP server on `addr` answering `name`, stopped by aborting it.
async fn tiny(addr: SocketAddr, name: &'static str) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.expect("bind");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = format!("{name}\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    })
}

#[tokio::test]
async fn a_server_restarted_on_the_other_loopback_answers_the_very_next_request() {
    let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let (proxy_port, _p) = start(table(&[("d", port)], None), ProxyOptions::default()).await;
    let mut server = tiny(v4, "on v4").await;
    for (next, name) in [(v6, "on v6"), (v4, "on v4 again")] {
        let r = get(proxy_port, "d.localhost", "/").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        server.abort();
        let _ = server.await;
        server = tiny(next, name).await;
        let r = get(proxy_port, "d.localhost", "/").await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains(name),
            "{name}: {r}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn malformed_and_look_alike_hosts_and_headers() {
    let a = upstream("a").await;
    let (port, _p) = start(
        table(&[("feat-a", a.port)], Some(a.port)),
        ProxyOptions::default(),
    )
    .await;
    // Two Host fields: 400, in either order, and nothing reaches a worktree.
    for hosts in [
        "Host: localhost\r\nHost: evil.com",
        "Host: evil.com\r\nHost: localhost",
    ] {
        let req = format!("GET / HTTP/1.1\r\n{hosts}\r\nConnection: close\r\n\r\n");
        let r = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{hosts}: {r}");
    }
    // An absolute-form target's authority is the host.
    let req = "GET http://evil.com/_pwt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let r = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        r.starts_with("HTTP/1.1 421") && !r.contains("feat-a"),
        "{r}"
    );
    assert_eq!(a.count.load(Ordering::SeqCst), 0);
    // `Connection: Host` keeps the Host; look-alike forwarding headers never pass.
    let req = "GET /h HTTP/1.1\r\nHost: feat-a.localhost\r\nConnection: close, Host\r\nx_forwarded_host: evil.com\r\nX-Forwarded-Ssl: on\r\nX-Forwarded-Scheme: https\r\nFront-End-Https: on\r\n\r\n";
    let r = raw(port, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = a.seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.headers["host"], "feat-a.localhost");
    for gone in [
        "x_forwarded_host",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
        "front-end-https",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone}: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn callbacks_head_conflicting_states_and_logins_begun_on_127_0_0_1() {
    let b = upstream("b").await;
    let c = upstream("c").await;
    let mut t = table(&[("b", b.port), ("c", c.port)], None);
    t.port = 8080;
    let (port, _p) = start(t, ProxyOptions::default()).await;
    let learn = |host: &'static str, path: &'static str, state: &'static str| async move {
        let to = format!(
            "http://idp.example/authorize?redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fauth%2Fcallback&state={state}"
        )
        .replace('%', "%25")
        .replace('&', "%26")
        .replace('?', "%3F")
        .replace('=', "%3D");
        let r = get(port, host, &format!("{path}?to={to}")).await;
        assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    };
    // A HEAD uses up nothing.
    learn("b.localhost:8080", "/redirect", "H1").await;
    let head = "HEAD /auth/callback?code=c&state=H1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let r = raw(port, head.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 302"), "{r}");
    let r = get(port, "localhost", "/auth/callback?code=c&state=H1").await;
    assert!(
        r.starts_with("HTTP/1.1 302"),
        "the HEAD used the login up: {r}"
    );
    // A state in the query and another in the form body: refused, neither used up.
    learn("b.localhost:8080", "/redirect", "H2").await;
    learn("b.localhost:8080", "/redirect", "H3").await;
    let body = "code=c&state=H3";
    let post = format!(
        "POST /auth/callback?state=H2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = raw(port, post.as_bytes(), Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // Begun on 127.0.0.1 (a path route, its own cookies): sent back there, then forwarded.
    learn("127.0.0.1:8080", "/b/redirect", "H4").await;
    let r = get(port, "localhost", "/auth/callback?code=c4&state=H4").await;
    assert_eq!(
        header(&r, "location"),
        Some(format!("http://127.0.0.1:{port}/auth/callback?code=c4&state=H4").as_str()),
        "{r}"
    );
    let r = get(
        port,
        &format!("127.0.0.1:{port}"),
        "/auth/callback?code=c4&state=H4",
    )
    .await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("b /auth/callback?code=c4"),
        "{r}"
    );
    // Another worktree sending a pending login's state does not take the login over.
    learn("c.localhost:8080", "/redirect", "H5").await;
    learn("b.localhost:8080", "/redirect", "H5").await;
    let r = get(port, "localhost", "/auth/callback?code=c5&state=H5").await;
    assert_eq!(
        header(&r, "location"),
        Some(format!("http://c.localhost:{port}/auth/callback?code=c5&state=H5").as_str()),
        "{r}"
    );
}

#[tokio::test]
async fn cookies_for_localhost_are_kept_home_unless_the_repository_says_not_to() {
    let a = upstream("a").await;
    let (port, proxy) = start(table(&[("feat-a", a.port)], None), ProxyOptions::default()).await;
    let resp = get(port, &format!("feat-a.localhost:{port}"), "/cookies").await;
    let cookies: Vec<&str> = resp
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .collect();
    assert_eq!(
        cookies,
        [
            "sid=1; Path=/; HttpOnly",
            "theme=dark; Domain=example.com",
            "plain=1; Path=/"
        ],
        "{resp}"
    );
    // An app that sets many cookies at once gets them all through.
    let resp = get(port, &format!("feat-a.localhost:{port}"), "/many-cookies").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(resp.matches("set-cookie: c").count(), 150, "{resp}");
    assert!(!resp.contains("Domain=localhost"), "{resp}");
    let mut as_sent = table(&[("feat-a", a.port)], None);
    as_sent.host_only_cookies = false;
    proxy.set_table(as_sent);
    let resp = get(port, &format!("feat-a.localhost:{port}"), "/cookies").await;
    assert!(
        resp.contains("set-cookie: sid=1; Domain=localhost; Path=/; HttpOnly"),
        "{resp}"
    );
}
