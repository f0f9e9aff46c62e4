//! `cargo xtask e2e`: the whole promise of pwt in one run, the way the seed workflow's
//! "quick isolation check" does it by hand — three worktrees at once, each with its own app
//! on its own database, vhost and Redis prefix, one proxy, one OAuth redirect URI — then a
//! teardown that leaves nothing behind.
//!
//! `--break-isolation` points feature-dashboard's backend at feature-notifications' database
//! on purpose; the run must then fail saying which isolation broke. `--prove-detection` runs
//! that and succeeds only if it did.

// Worktree `i` is `BRANCHES[i]`, `envs[i]` and its ports: indexes read best here.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::plain::free_port;

use crate::util::{output, psql, scratch};

const BRANCHES: [&str; 3] = [
    "feature-notifications",
    "feature-dashboard",
    "feature/user-profile",
];

pub(crate) struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Resp {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// A GET/POST over HTTP/1.1 to a loopback URL; `*.localhost` resolves to 127.0.0.1 with its
/// name as Host, like a browser does.
pub(crate) fn http(method: &str, url: &str, body: Option<&str>) -> Result<Resp> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http URL: {url}"))?;
    let (authority, target) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, t)| (a, format!("/{t}")));
    let (host, port) = authority.rsplit_once(':').context("URL without port")?;
    ensure!(
        host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1",
        "refusing a non-loopback URL {url}"
    );
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port.parse::<u16>()?))
        .with_context(|| format!("connecting for {url}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
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
    Ok(Resp {
        status,
        location,
        body: body.to_owned(),
    })
}

pub(crate) fn json_field(body: &str, field: &str) -> Option<String> {
    // The app's JSON is flat and small; a full parser would be the only dependency here.
    let key = format!("\"{field}\":");
    let at = body.find(&key)? + key.len();
    let v = body[at..].trim_start();
    if let Some(s) = v.strip_prefix('"') {
        s.find('"').map(|e| s[..e].to_owned())
    } else {
        Some(v.split([',', '}']).next()?.trim().to_owned())
    }
}

pub(crate) fn wait_port(port: u16, what: &str) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what} never listened on port {port}")
}

/// The mock identity provider: like real ones, it accepts exactly one registered redirect
/// URI and echoes `state`.
fn identity_provider(port: u16, registered: String) -> Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
    std::thread::spawn(move || {
        let mut n = 0u32;
        for stream in listener.incoming().flatten() {
            n += 1;
            let mut s = stream;
            let mut reader = BufReader::new(&s);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Read the rest of the head: closing with unread bytes would reset the connection.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header != "\r\n" {
                header.clear();
            }
            drop(reader);
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let query = target.split_once('?').map_or("", |(_, q)| q);
            let get = |name: &str| {
                query.split('&').find_map(|p| {
                    p.split_once('=')
                        .filter(|(k, _)| *k == name)
                        .map(|(_, v)| v.to_owned())
                })
            };
            let redirect = get("redirect_uri").map(|v| decode(&v));
            let resp = match (target.starts_with("/authorize?"), redirect, get("state")) {
                (true, Some(r), Some(state)) if r == registered => {
                    format!(
                        "HTTP/1.1 302 Found\r\nLocation: {r}?code=idp-code-{n}%2B%2F&state={state}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                }
                (true, Some(r), _) => {
                    let msg = format!("redirect_uri {r} is not registered (only {registered})");
                    format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                        msg.len()
                    )
                }
                _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned(),
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    Ok(())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 2;
            }
            (x, _) => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) struct Ctx {
    pub root: PathBuf,
    pub repo: PathBuf,
    pub pwt: PathBuf,
    pub app: PathBuf,
}

impl Ctx {
    pub fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .current_dir(&self.repo)
            .env("HOME", self.root.join("home"))
            .env("GIT_CONFIG_GLOBAL", self.root.join("home/.gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PWT_STATE_DIR", self.root.join("state"))
            .env("NO_COLOR", "1")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null());
        c
    }

    pub fn pwt(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(&self.pwt, args).output()?;
        if !out.status.success() {
            bail!(
                "pwt {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn git(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(Path::new("git"), args).output()?;
        ensure!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn env(&self, branch: &str) -> Result<BTreeMap<String, String>> {
        let text = self.pwt(&["env", branch, "--format", "sh"])?;
        Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect())
    }
}

pub(crate) fn ok(what: &str) {
    println!("  ✓ {what}");
}

pub(crate) fn build(workspace: &Path) -> Result<(PathBuf, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "pwt", "-p", "pwt-example-todo"])
        .status()?;
    ensure!(
        status.success(),
        "cargo build -p pwt -p pwt-example-todo failed"
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    Ok((target.join("debug/pwt"), target.join("debug/todo-app")))
}

pub fn run(args: &[String]) -> Result<()> {
    let flag = |f: &str| args.iter().any(|a| a == f);
    for a in args {
        ensure!(
            matches!(
                a.as_str(),
                "--break-isolation" | "--prove-detection" | "--compose"
            ),
            "unknown flag {a}: use --compose, --break-isolation or --prove-detection"
        );
    }
    if flag("--compose") {
        return crate::e2e_compose::run();
    }
    if flag("--prove-detection") {
        return match scenario(true) {
            Ok(()) => bail!(
                "the run passed although feature-dashboard's backend used feature-notifications' database: broken isolation went unnoticed"
            ),
            Err(e) if format!("{e:#}").contains("isolation broken: database") => {
                println!("✓ broken isolation was detected: {e:#}");
                Ok(())
            }
            Err(e) => {
                bail!("the deliberately broken run failed, but not on database isolation: {e:#}")
            }
        };
    }
    scenario(flag("--break-isolation"))
}

fn scenario(break_isolation: bool) -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_owned();
    let (pwt, app) = build(&workspace)?;
    let root = scratch("e2e")?;
    let result = scenario_in(&root, pwt, app, break_isolation);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn scenario_in(root: &Path, pwt: PathBuf, app: PathBuf, break_isolation: bool) -> Result<()> {
    let repo = root.join("shop");
    std::fs::create_dir_all(&repo)?;
    let ctx = Ctx {
        root: root.to_owned(),
        repo: repo.clone(),
        pwt,
        app,
    };

    // The shared services on loopback (`cargo xtask e2e --compose` runs them in Docker).
    for (name, port) in [
        ("PostgreSQL", 5432),
        ("RabbitMQ", 5672),
        ("RabbitMQ management", 15672),
        ("Redis", 6379),
    ] {
        ensure!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok(),
            "{name} is not reachable on 127.0.0.1:{port}; start it (`pwt infra status` says how)"
        );
    }

    let project = format!("e2e{}", std::process::id());
    let (proxy_port, idp_port, main_port) = (free_port(), free_port(), free_port());
    let toml = format!(
        r#"project = "{project}"
[ports]
range = [30000, 31999]
[ports.services]
frontend = {{ env = "FRONTEND_PORT", main = {main_port} }}
backend  = {{ env = "BACKEND_PORT",  main = 5000 }}
[postgres]
url = "postgres://postgres@localhost:5432/postgres"
main_database = "{project}_main"
[rabbitmq]
url = "amqp://guest:guest@localhost:5672"
management_url = "http://localhost:15672"
vhost = "/{{{{ project }}}}-{{{{ slug }}}}"
[redis]
url = "redis://localhost:6379"
prefix = "{{{{ project }}}}:{{{{ slug }}}}:"
[env]
OAUTH_AUTHORIZE_URL = "http://localhost:{idp_port}/authorize"
[proxy]
listen = "127.0.0.1:{proxy_port}"
"#
    );
    std::fs::write(repo.join("pwt.toml"), toml)?;
    std::fs::write(repo.join("README.md"), "# shop\n")?;
    ctx.git(&["init", "-q"])?;
    ctx.git(&["add", "."])?;
    ctx.git(&["commit", "-q", "-m", "init"])?;
    // The repository's [env] is approved once, as its user would (`pwt trust`).
    ctx.pwt(&["trust"])?;

    let result = exercise(&ctx, &project, proxy_port, idp_port, break_isolation);
    if result.is_err() {
        // Leave nothing on the shared servers, whatever failed.
        for b in BRANCHES {
            if let Err(e) = ctx.pwt(&["rm", b, "--force"]) {
                eprintln!("cleanup of {b} failed: {e:#}");
            }
        }
    }
    result
}

fn exercise(
    ctx: &Ctx,
    project: &str,
    proxy_port: u16,
    idp_port: u16,
    break_isolation: bool,
) -> Result<()> {
    println!("three `pwt new` at once");
    let children: Vec<Child> = BRANCHES
        .iter()
        .map(|b| {
            ctx.cmd(&ctx.pwt, &["new", b, "--format", "json"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    for (c, b) in children.into_iter().zip(BRANCHES) {
        let out = c.wait_with_output()?;
        ensure!(
            out.status.success(),
            "pwt new {b} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ok("three worktrees, each with its database, vhost and Redis prefix");

    let envs: Vec<BTreeMap<String, String>> =
        BRANCHES.iter().map(|b| ctx.env(b)).collect::<Result<_>>()?;
    let w = World {
        ctx,
        project,
        proxy_port,
        envs,
    };
    let (proxy, apps) = start(&w, idp_port, break_isolation)?;
    check_identity(&w)?;
    check_todos(&w)?;
    check_messages_and_counters(&w)?;
    check_proxy_routes(&w)?;
    check_oauth(&w)?;
    drop(apps);
    check_teardown(&w)?;
    drop(proxy);
    println!("✓ end to end: isolation holds");
    Ok(())
}

/// The worktrees of the run and their environments.
struct World<'a> {
    ctx: &'a Ctx,
    project: &'a str,
    proxy_port: u16,
    envs: Vec<BTreeMap<String, String>>,
}

impl World<'_> {
    fn slug(&self, i: usize) -> String {
        self.envs[i]["PWT_SLUG"].clone()
    }

    fn port(&self, i: usize, k: &str) -> Result<u16> {
        self.envs[i][k]
            .parse()
            .with_context(|| format!("{k} of {}", BRANCHES[i]))
    }
}

/// The identity provider, the proxy and each worktree's apps (started with `pwt run`).
fn start(w: &World<'_>, idp_port: u16, break_isolation: bool) -> Result<(Kill, Vec<Kill>)> {
    let pp = w.proxy_port;
    identity_provider(idp_port, format!("http://localhost:{pp}/auth/callback"))?;
    let mut proxy = w
        .ctx
        .cmd(&w.ctx.pwt, &["proxy", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().context("proxy stdout")?).read_line(&mut line)?;
    let proxy = Kill(proxy);
    wait_port(w.proxy_port, "pwt proxy")?;

    // Each worktree's app, started with `pwt run` so it gets that worktree's environment.
    let app = w.ctx.app.to_string_lossy().into_owned();
    let mut apps = Vec::new();
    for (i, b) in BRANCHES.iter().enumerate() {
        let mut backend_args = vec!["run", b, "--"];
        let theft;
        if break_isolation && i == 1 {
            theft = vec![
                "env".to_owned(),
                format!("DATABASE_URL={}", w.envs[0]["DATABASE_URL"]),
                format!("DATABASE_NAME={}", w.envs[1]["DATABASE_NAME"]),
            ];
            backend_args.extend(theft.iter().map(String::as_str));
        }
        backend_args.extend([app.as_str(), "backend"]);
        apps.push(Kill(
            w.ctx
                .cmd(&w.ctx.pwt, &backend_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ));
        apps.push(Kill(
            w.ctx
                .cmd(&w.ctx.pwt, &["run", b, "--", &app, "frontend"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        ));
        // One at a time: a backend creates its table on start, and in --break-isolation two
        // of them share a database.
        wait_port(
            w.port(i, "BACKEND_PORT")?,
            &format!("{}'s backend", BRANCHES[i]),
        )?;
        wait_port(
            w.port(i, "FRONTEND_PORT")?,
            &format!("{}'s frontend", BRANCHES[i]),
        )?;
    }
    ok("each worktree's backend and frontend run with `pwt run`");

    Ok((proxy, apps))
}

fn check_identity(w: &World<'_>) -> Result<()> {
    // 1. Identity differs per backend.
    let mut seen = Vec::new();
    for i in 0..3 {
        let r = http(
            "GET",
            &format!("http://localhost:{}/", w.port(i, "BACKEND_PORT")?),
            None,
        )?;
        let feature = json_field(&r.body, "feature").unwrap_or_default();
        ensure!(
            feature == w.slug(i),
            "identity: {}'s backend says it is {feature:?}",
            BRANCHES[i]
        );
        let db = json_field(&r.body, "database").unwrap_or_default();
        ensure!(
            !seen.contains(&db),
            "isolation broken: database: two backends report database {db}"
        );
        seen.push(db);
    }
    ok("identity differs per backend (FEATURE, port, database, vhost, prefix)");

    Ok(())
}

fn check_todos(w: &World<'_>) -> Result<()> {
    // 2. A todo posted to one worktree (through its frontend's /api, like the seed's Vite
    // proxy) is absent from the others.
    let posted = http(
        "POST",
        &format!("http://localhost:{}/api/todos", w.port(0, "FRONTEND_PORT")?),
        Some(r#"{"title": "Implement login flow", "isComplete": false}"#),
    )?;
    ensure!(
        posted.status == 201,
        "POST /api/todos to {} answered {}: {}",
        BRANCHES[0],
        posted.status,
        posted.body
    );
    for i in 0..3 {
        let r = http(
            "GET",
            &format!("http://localhost:{}/todos", w.port(i, "BACKEND_PORT")?),
            None,
        )?;
        let has = r.body.contains("Implement login flow");
        if i == 0 {
            ensure!(
                has,
                "the todo posted to {} is not in its own list: {}",
                BRANCHES[0],
                r.body
            );
        } else if has {
            bail!(
                "isolation broken: database: a todo posted to {} shows up in {}",
                BRANCHES[0],
                BRANCHES[i]
            );
        }
    }
    ok("a todo posted to one worktree is absent from the others (PostgreSQL)");

    Ok(())
}

fn check_messages_and_counters(w: &World<'_>) -> Result<()> {
    // 3. Messages and counters stay per worktree.
    for i in 0..3 {
        let r = http(
            "GET",
            &format!("http://localhost:{}/stats", w.port(i, "BACKEND_PORT")?),
            None,
        )?;
        let (messages, counter) = (
            json_field(&r.body, "messages").unwrap_or_default(),
            json_field(&r.body, "counter").unwrap_or_default(),
        );
        let want = if i == 0 { "1" } else { "0" };
        ensure!(
            messages == want,
            "isolation broken: rabbitmq: {} has {messages} messages in its queue, expected {want}",
            BRANCHES[i]
        );
        ensure!(
            counter == want,
            "isolation broken: redis: {}'s counter is {counter}, expected {want}",
            BRANCHES[i]
        );
    }
    ok("messages (RabbitMQ) and counters (Redis) stay per worktree");

    Ok(())
}

fn check_proxy_routes(w: &World<'_>) -> Result<()> {
    let pp = w.proxy_port;
    // 4. Each <slug>.localhost reaches its own frontend through the proxy.
    for i in 0..3 {
        let r = http(
            "GET",
            &format!("http://{}.localhost:{pp}/", w.slug(i)),
            None,
        )?;
        ensure!(
            r.body
                .contains(&format!("<span id=feature>{}</span>", w.slug(i))),
            "proxy: {}.localhost did not reach its frontend: {} {}",
            w.slug(i),
            r.status,
            r.body
        );
    }
    ok("each <slug>.localhost reaches its own frontend through `pwt proxy`");

    Ok(())
}

fn check_oauth(w: &World<'_>) -> Result<()> {
    let pp = w.proxy_port;
    // 5. An OAuth round trip per worktree through the one registered redirect URI.
    for i in 0..3 {
        let login = http(
            "GET",
            &format!("http://{}.localhost:{pp}/login", w.slug(i)),
            None,
        )?;
        let to_idp = login
            .location
            .context("the login did not redirect to the identity provider")?;
        let idp = http("GET", &to_idp, None)?;
        ensure!(
            idp.status == 302,
            "the identity provider refused: {} {}",
            idp.status,
            idp.body
        );
        let callback = idp.location.context("no callback redirect")?;
        ensure!(
            callback.starts_with(&format!("http://localhost:{pp}/auth/callback?")),
            "the IdP redirected to {callback}"
        );
        let routed = http("GET", &callback, None)?;
        ensure!(
            routed.status == 302,
            "the proxy did not route the callback: {} {}",
            routed.status,
            routed.body
        );
        let landing = routed.location.context("no Location from the proxy")?;
        // The proxy learned the state from the app's redirect to the provider: the browser
        // goes back to the origin its login began on, with that origin's cookies.
        let expected = format!("http://{}.localhost:{pp}/auth/callback?", w.slug(i));
        ensure!(
            landing.starts_with(&expected),
            "isolation broken: oauth: {}'s callback went to {landing}",
            BRANCHES[i]
        );
        ensure!(
            landing.ends_with(callback.split_once('?').map_or("", |(_, q)| q)),
            "the query changed on the way: {landing}"
        );
        let done = http("GET", &landing, None)?;
        ensure!(
            done.status == 200
                && done
                    .body
                    .starts_with(&format!("logged in to {}", w.slug(i))),
            "{}: {}",
            BRANCHES[i],
            done.body
        );
    }
    ok(
        "an OAuth round trip per worktree lands back on its own <slug>.localhost (state checked by the app)",
    );

    Ok(())
}

fn check_teardown(w: &World<'_>) -> Result<()> {
    let pp = w.proxy_port;
    let p = w.project;
    // 6. Teardown, and proof that nothing of theirs remains.
    for b in BRANCHES {
        w.ctx.pwt(&["rm", b])?;
    }
    nothing_on_the_servers(p)?;
    let list = w.ctx.pwt(&["list", "--format", "json"])?;
    ensure!(
        BRANCHES
            .iter()
            .all(|b| !list.contains(&format!("\"branch\": \"{b}\""))),
        "teardown: leases remain: {list}"
    );
    let worktrees = w.ctx.git(&["worktree", "list", "--porcelain"])?;
    ensure!(
        worktrees.matches("worktree ").count() == 1,
        "teardown: worktrees remain:\n{worktrees}"
    );
    std::thread::sleep(Duration::from_millis(500)); // the proxy re-reads the registry every 200 ms
    let status = http("GET", &format!("http://localhost:{pp}/_pwt"), None)?;
    for i in 0..3 {
        ensure!(
            !status.body.contains(&format!(">{}<", w.slug(i))),
            "teardown: the proxy still routes {}",
            w.slug(i)
        );
        let r = http(
            "GET",
            &format!("http://{}.localhost:{pp}/", w.slug(i)),
            None,
        )?;
        ensure!(
            !r.body
                .contains(&format!("<span id=feature>{}</span>", w.slug(i))),
            "teardown: {}.localhost still reaches it",
            w.slug(i)
        );
    }
    ok(
        "pwt rm of all three: no database, vhost, Redis key, lease, route or worktree of theirs remains",
    );
    Ok(())
}

/// No database, vhost or Redis key of the project `p` on the shared servers.
fn nothing_on_the_servers(p: &str) -> Result<()> {
    let dbs = psql(&[
        "-tAc",
        &format!("SELECT count(*) FROM pg_database WHERE datname LIKE '{p}%'"),
    ])?;
    ensure!(
        dbs.trim() == "0",
        "teardown: {} databases of {p} remain",
        dbs.trim()
    );
    let vhosts = output(
        "curl",
        &[
            "-s",
            "-u",
            "guest:guest",
            "http://127.0.0.1:15672/api/vhosts",
        ],
    )?;
    ensure!(!vhosts.contains(p), "teardown: a vhost of {p} remains");
    let keys = output(
        "redis-cli",
        &["-h", "127.0.0.1", "--scan", "--pattern", &format!("{p}:*")],
    )?;
    ensure!(
        keys.trim().is_empty(),
        "teardown: Redis keys remain: {}",
        keys.trim()
    );
    Ok(())
}
