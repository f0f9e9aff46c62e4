//! `pwt proxy` as a user runs it: live routes from the registry, the OAuth callback, `pwt
//! state`, the Caddyfile checked against a real Caddy, and a real browser.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;

/// A dev server on `port` answering `<name> <target>` (the target with its query), or, for
/// `/`, a page that starts an OAuth login through the proxy's callback.
fn upstream(
    name: &'static str,
    port: u16,
    proxy_port: std::sync::Arc<std::sync::atomic::AtomicU16>,
) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("upstream bind");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let proxy_port = proxy_port.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let (ctype, text) = if target == "/login" {
                    let p = proxy_port.load(std::sync::atomic::Ordering::SeqCst);
                    let state = format!("{name}~0123456789abcdef");
                    (
                        "text/html",
                        format!(
                            "<html><body>login page of {name}<script>location.href='http://localhost:{p}/auth/callback?code=c0de%2B%2F&state={state}'</script></body></html>"
                        ),
                    )
                } else if target.starts_with("/auth/callback") {
                    (
                        "text/html",
                        format!("<html><body><p id=r>{name} got {target}</p></body></html>"),
                    )
                } else {
                    ("text/plain", format!("{name} {target}"))
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
}

struct Response {
    status: u16,
    location: Option<String>,
    body: String,
}

fn request(port: u16, method: &str, host: &str, target: &str) -> Response {
    request_with(port, method, host, target, "")
}

/// A request with `extra` header lines (each ending in CRLF).
fn request_with(port: u16, method: &str, host: &str, target: &str, extra: &str) -> Response {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    Response {
        status,
        location,
        body: body.to_owned(),
    }
}

use pwt_tests::free_port;

use pwt_tests::Running;

fn start_proxy(t: &TestEnv, repo: &Path) -> (Running, u16) {
    let mut child = t
        .cmd(repo, &["proxy", "--listen", "127.0.0.1:0", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn proxy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port line");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("proxy printed {line:?}"));
    (Running(child), port)
}

/// Each test its own range: tests have separate registries, so only ranges keep their
/// servers apart.
fn toml(main: u16, range: (u16, u16)) -> String {
    format!(
        "[ports]\nrange = [{}, {}]\n[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\", main = {main} }}\nbackend = {{ env = \"BACKEND_PORT\", main = 5000 }}\n",
        range.0, range.1
    )
}

fn frontend(t: &TestEnv, repo: &Path, branch: &str) -> u16 {
    let v = t
        .pwt(repo, &["new", branch, "--format", "json"])
        .ok()
        .json();
    v["ports"]["frontend"]["port"].as_u64().expect("port") as u16
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} never happened");
}

/// A repository with a main frontend and two worktrees (`feature-a`, `feature/b`), each
/// with its dev server running, and `pwt proxy` in front. `range` keeps tests apart: they
/// have separate registries, so only ranges keep their servers from colliding.
struct Fixture {
    t: TestEnv,
    repo: std::path::PathBuf,
    pp: std::sync::Arc<std::sync::atomic::AtomicU16>,
    b: u16,
    proxy: Running,
    port: u16,
}

fn fixture(range: (u16, u16)) -> Fixture {
    let t = TestEnv::new();
    let main = free_port();
    let repo = t.repo("demo", Some(&toml(main, range)));
    let pp = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    upstream("main", main, pp.clone());
    let a = frontend(&t, &repo, "feature-a");
    let b = frontend(&t, &repo, "feature/b");
    upstream("feature-a", a, pp.clone());
    upstream("feature-b", b, pp.clone());
    let (proxy, port) = start_proxy(&t, &repo);
    pp.store(port, std::sync::atomic::Ordering::SeqCst);
    Fixture {
        t,
        repo,
        pp,
        b,
        proxy,
        port,
    }
}

#[test]
fn proxy_routes_worktrees_live_and_callbacks_by_state() {
    let Fixture {
        t,
        repo,
        pp,
        b,
        proxy: _proxy,
        port,
    } = fixture((29000, 29399));

    assert_eq!(
        request(port, "GET", &format!("feature-a.localhost:{port}"), "/").body,
        "feature-a /"
    );
    assert_eq!(
        request(
            port,
            "GET",
            &format!("feature-b.localhost:{port}"),
            "/x?y=1"
        )
        .body,
        "feature-b /x?y=1"
    );
    assert_eq!(
        request(port, "GET", "localhost", "/feature-b/app.js").body,
        "feature-b /feature-b/app.js"
    );
    assert_eq!(request(port, "GET", "localhost", "/").body, "main /");

    // `pwt list` probes each port live: the dev servers listen, the backends do not.
    let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    let row = |branch: &str| {
        list.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["branch"] == branch)
            .cloned()
            .expect("row")
    };
    for branch in ["feature-a", "feature/b"] {
        let r = row(branch);
        assert_eq!(r["ports"]["frontend"]["listening"], true, "{r}");
        assert_eq!(r["ports"]["backend"]["listening"], false, "{r}");
    }
    let table = t.pwt(&repo, &["list"]).ok().stdout;
    assert!(table.contains("●") && table.contains("○"), "{table}");

    let state = t.pwt(&repo, &["state", "feature/b"]).ok().stdout;
    let state = state.trim();
    let (slug, random) = state.split_once('~').expect("slug~random");
    assert_eq!(slug, "feature-b");
    assert!(
        random.len() == 32 && random.bytes().all(|c| c.is_ascii_hexdigit()),
        "{state}"
    );
    assert_ne!(
        t.pwt(&repo, &["state", "feature/b"]).ok().stdout.trim(),
        state,
        "state is not fresh"
    );
    let q = format!("code=abc%2B%2F&state={state}&iss=x");
    let r = request(
        port,
        "GET",
        &format!("localhost:{port}"),
        &format!("/auth/callback?{q}"),
    );
    assert_eq!(r.status, 302);
    assert_eq!(
        r.location.as_deref(),
        Some(format!("http://localhost:{b}/auth/callback?{q}").as_str())
    );
    for bad in [
        "state=feature-a@evil.com~R",
        "state=//evil.com~R",
        "state=http:%2F%2Fevil.com~R",
        "state=nope~R",
    ] {
        let r = request(
            port,
            "GET",
            "localhost",
            &format!("/auth/callback?code=1&{bad}"),
        );
        assert_eq!((r.status, r.location), (400, None), "{bad}");
    }

    // Live: a worktree made while the proxy runs is routable within a second or so.
    let c = frontend(&t, &repo, "feature-c");
    upstream("feature-c", c, pp.clone());
    eventually("routing to feature-c", || {
        request(port, "GET", "feature-c.localhost", "/").body == "feature-c /"
    });
    // ...and a removed one stops being routed: its name says so, and never reaches the
    // main worktree's app.
    t.pwt(&repo, &["rm", "feature-c"]).ok();
    eventually("feature-c unrouted", || {
        let r = request(port, "GET", "feature-c.localhost", "/");
        r.status == 404 && r.body.contains("was removed")
    });
    let never = request(port, "GET", "never.localhost", "/");
    assert!(
        never.status == 404 && never.body.contains("No worktree is named"),
        "{}",
        never.body
    );
    let r = request(port, "GET", "localhost", "/auth/callback?state=feature-c~1");
    assert_eq!((r.status, r.location), (400, None));
}

#[test]
fn proxy_refuses_non_loopback_and_taken_ports() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let err = t
        .pwt(&repo, &["proxy", "--listen", "0.0.0.0:8080"])
        .fails(2)
        .stderr;
    assert!(err.contains("loopback only"), "{err}");
    // It binds 127.0.0.1 and ::1 together; another 127.x would be a silent lie.
    let err = t
        .pwt(&repo, &["proxy", "--listen", "127.0.0.2:8080"])
        .fails(2)
        .stderr;
    assert!(err.contains("127.0.0.1 and ::1 together"), "{err}");
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let p = taken.local_addr().expect("addr").port();
    let err = t
        .pwt(&repo, &["proxy", "--listen", &format!("127.0.0.1:{p}")])
        .fails(1)
        .stderr;
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{p}")),
        "{err}"
    );
}

fn caddy_available() -> bool {
    if Command::new("caddy")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "caddy is missing: CI must install it (.ci/run does)"
    );
    eprintln!("skipping: caddy is not installed (apt-get install caddy)");
    false
}

#[test]
fn caddyfile_makes_the_same_decisions_as_pwt_proxy() {
    if !caddy_available() {
        return;
    }
    let Fixture {
        t,
        repo,
        port: pwt_port,
        proxy: _proxy,
        ..
    } = fixture((29400, 29799));
    let caddy_port = free_port();
    let file = t.root().join("Caddyfile");
    let text = t
        .pwt(
            &repo,
            &["proxy", "caddyfile", "--port", &caddy_port.to_string()],
        )
        .ok()
        .stdout;
    std::fs::write(&file, text).expect("write Caddyfile");
    let mut cmd = Command::new("caddy");
    t.sandbox(&mut cmd);
    let caddy = Running(
        cmd.args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy"),
    );
    eventually("caddy listening", || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, caddy_port)).is_ok()
    });
    let cases: &[(&str, &str, &str)] = &[
        ("GET", "feature-a.localhost", "/"),
        ("GET", "FEATURE-A.localhost", "/deep/path?x=1"),
        ("GET", "feature-b.localhost", "/"),
        ("GET", "localhost", "/feature-b/assets/app.js"),
        ("GET", "localhost", "/feature-a"),
        ("GET", "localhost", "/feature-ab"),
        ("GET", "unknown.localhost", "/"),
        ("GET", "localhost", "/"),
        (
            "GET",
            "localhost",
            "/auth/callback?code=abc%2B%2F&state=feature-a~R&iss=x",
        ),
        (
            "GET",
            "localhost",
            "/auth/callback?error=access_denied&state=feature-b.xyz",
        ),
        ("POST", "localhost", "/auth/callback?state=feature-b~R"),
        ("GET", "localhost", "/auth/callback?state=main~R"),
        ("GET", "localhost", "/auth/callback?code=1"),
        ("GET", "localhost", "/auth/callback?state="),
        ("GET", "localhost", "/auth/callback?state=nope~1"),
        (
            "GET",
            "localhost",
            "/auth/callback?state=feature-a~1&state=feature-b~2",
        ),
        (
            "GET",
            "localhost",
            "/auth/callback?state=feature-a@evil.com~R",
        ),
        ("GET", "localhost", "/auth/callback?state=%2F%2Fevil.com~R"),
    ];
    for (method, host, target) in cases {
        let ours = request(pwt_port, method, host, target);
        let theirs = request(caddy_port, method, host, target);
        assert_eq!(
            ours.status, theirs.status,
            "{method} {host} {target}: pwt {} vs caddy {}",
            ours.status, theirs.status
        );
        assert_eq!(ours.location, theirs.location, "{method} {host} {target}");
        if ours.status == 200 {
            assert_eq!(
                ours.body, theirs.body,
                "{method} {host} {target}: different upstream"
            );
        }
    }
    // A browser navigating to a path route is sent to the worktree's name, on each one's
    // own port.
    let nav = "Sec-Fetch-Mode: navigate\r\n";
    for (method, target) in [
        ("GET", "/feature-b/app/?x=1"),
        ("HEAD", "/feature-a"),
        ("POST", "/feature-a/x"),
    ] {
        let ours = request_with(pwt_port, method, "localhost", target, nav);
        let theirs = request_with(caddy_port, method, "localhost", target, nav);
        assert_eq!(ours.status, theirs.status, "{method} {target}");
        let unported = |r: &Response, port: u16| {
            r.location
                .as_ref()
                .map(|l| l.replace(&format!(":{port}/"), ":PROXY/"))
        };
        assert_eq!(
            unported(&ours, pwt_port),
            unported(&theirs, caddy_port),
            "{method} {target}"
        );
    }
    drop(caddy);
}

fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium is missing: CI must install it (.ci/run does)"
    );
    eprintln!("skipping: chromium is not installed (apt-get install chromium)");
    None
}

/// Headless Chromium opens `http://feature-b.localhost:<proxy>/login` through the proxy;
/// the page starts an OAuth login whose callback comes back to the one registered URI on the
/// proxy, which sends the browser to feature-b's own server, where the code arrives intact.
#[test]
fn a_real_browser_follows_the_callback_to_its_worktree() {
    let Some(browser) = chromium() else { return };
    let Fixture {
        t,
        port,
        proxy: _proxy,
        ..
    } = fixture((29800, 29999));
    let profile = t.root().join("chromium-profile");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://feature-b.localhost:{port}/login"))
        .env("HOME", t.home())
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains(
            "feature-b got /auth/callback?code=c0de%2B%2F&amp;state=feature-b~0123456789abcdef"
        ),
        "the browser did not land on feature-b with the code:\n{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The next text message, within 15 s.
async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    use futures_util::StreamExt as _;
    let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .expect("a message in time");
    m.expect("the socket is open")
        .expect("a frame")
        .into_text()
        .expect("text")
        .to_string()
}

/// Vite 7 from npm, installed by .ci/run (`PWT_TEST_VITE`, or its default place).
fn vite() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PWT_TEST_VITE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::Path::new(&h).join(".cache/pwt-ci/vite/node_modules/.bin/vite"))
        })?;
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "vite is missing at {}: .ci/run installs it",
        path.display()
    );
    eprintln!("skipping: vite is not installed (npm install --prefix ~/.cache/pwt-ci/vite vite@7)");
    None
}

/// A real Vite dev server in a worktree, started with `pwt run` on its FRONTEND_PORT: the
/// page and the client come through `pwt proxy`, and so does the HMR WebSocket (the client
/// connects back to the page's host, which is the proxy), which then carries Vite's update
/// when a file changes.
#[test]
fn vite_hmr_works_through_the_proxy() {
    let Some(vite) = vite() else { return };
    let t = TestEnv::new();
    let main = free_port();
    let repo = t.repo("demo", Some(&toml(main, (26000, 26199))));
    let port = frontend(&t, &repo, "feature-hmr");
    let root = repo.parent().expect("parent").join("demo.feature-hmr");
    std::fs::write(root.join("index.html"), "<!doctype html><html><body><h1>hmr</h1><script type=\"module\" src=\"/main.js\"></script></body></html>\n").expect("write");
    std::fs::write(root.join("main.js"), "console.log('v1')\n").expect("write");
    let _vite = Running(
        t.cmd(
            &repo,
            &[
                "run",
                "feature-hmr",
                "--",
                "sh",
                "-c",
                "exec \"$0\" --port \"$FRONTEND_PORT\" --strictPort --host 127.0.0.1",
            ],
        )
        .arg(&vite)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vite"),
    );
    let (_proxy, proxy_port) = start_proxy(&t, &repo);
    eventually("vite listening", || {
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
    });
    let host = format!("feature-hmr.localhost:{proxy_port}");
    let page = request(proxy_port, "GET", &host, "/");
    assert!(
        page.body.contains("/@vite/client"),
        "the page did not come from Vite through the proxy: {}",
        page.body
    );
    let client = request(proxy_port, "GET", &host, "/@vite/client");
    let token = client
        .body
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("const wsToken = \"")
                .and_then(|r| r.split('"').next())
        })
        .unwrap_or_else(|| {
            panic!(
                "no wsToken in the Vite client ({} bytes)",
                client.body.len()
            )
        })
        .to_owned();
    assert!(
        request(proxy_port, "GET", &host, "/main.js")
            .body
            .contains("v1")
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://127.0.0.1:{proxy_port}/?token={token}"),
            )
            .expect("request");
        req.headers_mut()
            .insert("host", host.parse().expect("host"));
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "vite-hmr".parse().expect("protocol"),
        );
        req.headers_mut()
            .insert("origin", format!("http://{host}").parse().expect("origin"));
        let (mut ws, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("the HMR socket through the proxy");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap_or_default()),
            Some("vite-hmr")
        );
        let first = next_text(&mut ws).await;
        assert!(first.contains("\"connected\""), "{first}");
        std::fs::write(root.join("main.js"), "console.log('v2')\n").expect("edit");
        let mut seen = Vec::new();
        loop {
            let m = next_text(&mut ws).await;
            if m.contains("\"update\"") || m.contains("\"full-reload\"") {
                break;
            }
            seen.push(m);
            assert!(seen.len() < 20, "no HMR update after the edit: {seen:?}");
        }
    });
}

/// A worktree server answering in two writes a moment apart, keep-alive (as Node does).
fn two_part_upstream(port: u16) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(s) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(s.try_clone().expect("clone"));
                let mut s = s;
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let first =
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n";
                    if s.write_all(first.as_bytes()).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    if s.write_all(b"5\r\nworld\r\n0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn clients_leaving_mid_response_never_stop_the_proxy() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&toml(free_port(), (29300, 29399))));
    let port = frontend(&t, &repo, "big");
    two_part_upstream(port);
    let (mut proxy, pport) = start_proxy(&t, &repo);
    // Ten keep-alive clients asking as fast as they can, then leaving with a request in
    // flight (as wrk does when it stops, or a browser when a busy tab closes): the proxy's
    // writes to them meet reset sockets and EPIPE.
    for _round in 0..3 {
        let clients: Vec<_> = (0..10)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, pport)).expect("connect");
                    let until = Instant::now() + Duration::from_millis(300);
                    let mut buf = [0u8; 4096];
                    while Instant::now() < until {
                        if write!(s, "GET / HTTP/1.1\r\nHost: big.localhost\r\n\r\n").is_err() {
                            return;
                        }
                        let _ = s.read(&mut buf);
                    }
                })
            })
            .collect();
        for c in clients {
            let _ = c.join();
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        proxy.0.try_wait().expect("wait").is_none(),
        "the proxy died when clients left"
    );
    let r = request(pport, "GET", "localhost", "/_pwt");
    assert_eq!(r.status, 200);
}

/// `curl ARGS` (a real HTTPS client): its stdout, and whether it succeeded.
fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn https_on_the_proxys_port_with_a_local_authority_only_for_localhost_names() {
    let t = TestEnv::new();
    let toml = format!("{}[proxy]\nhttps = true\n", toml(3712, (27720, 27739)));
    let repo = t.repo("demo", Some(&toml));
    let port = frontend(&t, &repo, "feature-a");
    let proxy_port = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(0));
    upstream("a", port, proxy_port.clone());
    let (_proxy, pp) = start_proxy(&t, &repo);
    proxy_port.store(pp, std::sync::atomic::Ordering::SeqCst);
    let ca = t.state_dir().join("ca/pwt-ca.pem");
    let ca = ca.to_str().expect("utf-8");
    let url = format!("https://feature-a.localhost:{pp}/x?y=1");
    // HTTP/2 and HTTP/1.1, each a certificate for the name asked for.
    for (version, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out) = curl(&["--cacert", ca, version, "-w", " %{http_version}", &url]);
        assert!(ok, "{version}: {out}");
        assert_eq!(out, format!("a /x?y=1 {want}"), "{version}");
    }
    // By address: localhost's certificate names the loopback addresses.
    let (ok, out) = curl(&["--cacert", ca, &format!("https://127.0.0.1:{pp}/_pwt")]);
    assert!(ok && out.contains("feature-a"), "{out}");
    // Plain HTTP on the same port still works.
    let (ok, out) = curl(&[&format!("http://feature-a.localhost:{pp}/plain")]);
    assert!(ok && out == "a /plain", "{out}");
    // Untrusted, it is an error; a name that is not localhost's gets no certificate at all.
    assert!(!curl(&[&url]).0, "trusted without the authority");
    let foreign = format!("evil.example:{pp}:127.0.0.1");
    let (ok, out) = curl(&[
        "--cacert",
        ca,
        "--resolve",
        &foreign,
        &format!("https://evil.example:{pp}/"),
    ]);
    assert!(!ok, "a foreign name got a certificate: {out}");
    // The authority is constrained to localhost names, its key private.
    let text = std::fs::read_to_string(t.state_dir().join("ca/pwt-ca.pem")).expect("ca");
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
    let key = t.state_dir().join("ca/pwt-ca-key.pem");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = t
        .pwt(&repo, &["proxy", "--listen", "127.0.0.1:0"])
        .fails(1)
        .stderr;
    assert!(err.contains("can be read by others"), "{err}");
}

/// `pwt proxy trust --stores nss --format json`.
fn trust_nss(t: &TestEnv, repo: &Path) -> serde_json::Value {
    t.pwt(
        repo,
        &["proxy", "trust", "--stores", "nss", "--format", "json"],
    )
    .ok()
    .json()
}

#[test]
fn plain_http_is_sent_to_https_when_asked_and_the_authority_is_trusted_for_browsers() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[proxy]\nhttps = true\nredirect_http = true\n",
        toml(3713, (27740, 27759))
    );
    let repo = t.repo("demo", Some(&toml));
    let (_proxy, pp) = start_proxy(&t, &repo);
    let (_, head) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("http://feature-a.localhost:{pp}/p?q=1"),
    ]);
    assert_eq!(head, format!("308 https://feature-a.localhost:{pp}/p?q=1"));
    // A foreign Host is never redirected anywhere.
    let (_, head) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Host: evil.example",
        &format!("http://127.0.0.1:{pp}/"),
    ]);
    assert_eq!(head, "421");
    if crate::common::installed(
        Command::new("certutil")
            .arg("--help")
            .output()
            .map_err(|_| "certutil is not installed (libnss3-tools)".to_owned()),
    )
    .is_none()
    {
        return;
    }
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(doctor.contains("nssdb is not trusted"), "{doctor}");
    let stores = trust_nss(&t, &repo);
    assert_eq!(stores[0]["kind"], "nss");
    assert_eq!(stores[0]["trusted"], true, "{stores}");
    let nssdb = format!("sql:{}", t.home().join(".pki/nssdb").display());
    let listed = Command::new("certutil")
        .args(["-L", "-d", &nssdb])
        .output()
        .expect("certutil");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("pwt local CA"));
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(doctor.contains("nssdb is trusted"), "{doctor}");
    // Its trust flags taken away by hand: doctor tells the truth.
    let nick = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find_map(|l| {
            l.split("  ")
                .next()
                .filter(|n| n.starts_with("pwt local CA"))
                .map(str::to_owned)
        })
        .expect("nickname");
    Command::new("certutil")
        .args(["-M", "-d", &nssdb, "-n", nick.trim(), "-t", ",,"])
        .status()
        .expect("certutil -M");
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(doctor.contains("nssdb is not trusted"), "{doctor}");
    // The same certificate added by hand under another name: trust puts it right, and
    // --uninstall takes it out under any name.
    let ca = t.state_dir().join("ca/pwt-ca.pem");
    Command::new("certutil")
        .args(["-A", "-d", &nssdb, "-n", "my dev ca", "-t", "C,,", "-i"])
        .arg(&ca)
        .status()
        .expect("certutil -A");
    let stores = trust_nss(&t, &repo);
    assert_eq!(stores[0]["trusted"], true, "{stores}");
    let stores = t
        .pwt(
            &repo,
            &[
                "proxy",
                "trust",
                "--uninstall",
                "--stores",
                "nss",
                "--format",
                "json",
            ],
        )
        .ok()
        .json();
    assert_eq!(stores[0]["trusted"], false, "{stores}");
    let listed = Command::new("certutil")
        .args(["-L", "-d", &nssdb])
        .output()
        .expect("certutil");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !listed.contains("pwt local CA") && !listed.contains("my dev ca"),
        "{listed}"
    );
}

#[test]
fn pwt_open_starts_a_browser_with_the_worktrees_own_profile_removed_with_it() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&toml(3714, (27760, 27779))));
    frontend(&t, &repo, "feature-a");
    let env = t
        .pwt(&repo, &["env", "feature-a", "--format", "json"])
        .ok()
        .json();
    let profile = env["PWT_BROWSER_PROFILE"]
        .as_str()
        .expect("profile")
        .to_owned();
    assert!(
        profile.starts_with(&t.state_dir().display().to_string()),
        "{profile}"
    );
    // A stand-in Chromium that notes how it was started (whole, then renamed: the test
    // must never read the note half-written).
    let seen = t.root().join("seen");
    let fake = t.root().join("chromium");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.part && mv {0}.part {0}\n",
            seen.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = t
        .cmd(&repo, &["open", "feature-a"])
        .env("PWT_BROWSER", &fake)
        .output()
        .expect("pwt open");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the browser started", || seen.exists());
    let args = std::fs::read_to_string(&seen).expect("args");
    assert!(
        args.contains(&format!("--user-data-dir={profile}\n")),
        "{args}"
    );
    assert!(args.contains("http://feature-a.localhost:8080\n"), "{args}");
    assert!(Path::new(&profile).is_dir());
    let printed = t
        .cmd(&repo, &["open", "feature-a", "frontend", "--print"])
        .env("PWT_BROWSER", "firefox")
        .output()
        .expect("pwt open --print");
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.starts_with("firefox -profile ")
            && printed.contains("-no-remote http://localhost:"),
        "{printed}"
    );
    t.pwt(&repo, &["rm", "feature-a"]).ok();
    assert!(
        !Path::new(&profile).exists(),
        "the profile went with the worktree"
    );
}
