//! The single redirect URI with the real third parties: panva's `oidc-provider` with exactly
//! one registered redirect URI (the proxy's callback), an app per worktree using
//! `openid-client` unmodified (code flow + PKCE, the library's own random state), and headless
//! Chromium driven by playwright-core. Logins start from `<slug>.localhost` (query and
//! form_post response modes), from `localhost:<port>` (the state-prefix convention), two at
//! once in one browser profile, and against an app listening on `::1` only; a page on a
//! foreign origin rebound to 127.0.0.1 is refused.
//!
//! Needs `node`, Chromium, and the npm packages under `~/.cache/pwt-ci/oidc` (`.ci/run`
//! installs them; `PWT_TEST_OIDC_MODULES` names another `node_modules`).

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;

use pwt_tests::Running;

use pwt_tests::free_port;

/// The npm packages, or why they are missing.
fn modules() -> Result<PathBuf, String> {
    let dir = std::env::var_os("PWT_TEST_OIDC_MODULES")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/pwt-ci/oidc/node_modules"))
        })
        .ok_or("no HOME")?;
    for p in ["oidc-provider", "openid-client", "playwright-core"] {
        if !dir.join(p).is_dir() {
            return Err(format!("{p} is not installed in {}", dir.display()));
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("node is not installed".into());
    }
    if !Path::new("/usr/bin/chromium").exists() && std::env::var_os("PWT_TEST_CHROMIUM").is_none() {
        return Err("chromium is not installed".into());
    }
    Ok(dir)
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            if TcpStream::connect(addr.as_str()).is_ok() {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} never listened on port {port}");
}

/// Spawns `cmd` and waits for its "ready" line on stdout.
fn ready(mut cmd: Command, what: &str) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let out = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read");
    assert!(line.contains("ready"), "{what} did not start: {line:?}");
    // Keep reading, so a later line never meets a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Running(child)
}

/// Runs `plan` through `browser.mjs` (Chromium with, when given, `home`'s NSS database);
/// what each page said.
fn browse(js: &Path, plan: &serde_json::Value, home: Option<&Path>) -> serde_json::Value {
    let mut cmd = Command::new("node");
    cmd.arg(js.join("browser.mjs"))
        .arg(plan.to_string())
        .current_dir(js);
    if let Some(home) = home {
        cmd.env("HOME", home);
    }
    let out = cmd.output().expect("node browser.mjs");
    assert!(
        out.status.success(),
        "the browser run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON results")
}

/// The scripts in a directory of the test's own (with the npm packages), the provider
/// registered with `redirect`, and `pwt proxy` listening on `pp`; what runs until dropped.
fn provider_and_proxy(
    t: &TestEnv,
    repo: &Path,
    modules: &Path,
    idp: u16,
    pp: u16,
    redirect: &str,
) -> (PathBuf, Running, Running) {
    let js = t.root().join("oidc");
    std::fs::create_dir_all(&js).expect("mkdir");
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/oidc");
    for f in ["provider.mjs", "app.mjs", "browser.mjs"] {
        std::fs::copy(here.join(f), js.join(f)).expect("copy js");
    }
    std::os::unix::fs::symlink(modules, js.join("node_modules")).expect("symlink node_modules");
    let mut provider = Command::new("node");
    provider
        .arg(js.join("provider.mjs"))
        .arg(idp.to_string())
        .arg(redirect)
        .current_dir(&js);
    let provider = ready(provider, "oidc-provider");
    let mut proxy = t.cmd(repo, &["proxy", "--quiet"]);
    proxy.stdout(Stdio::null()).stderr(Stdio::null());
    let proxy = Running(proxy.spawn().expect("pwt proxy"));
    wait_listening(pp, "pwt proxy");
    (js, provider, proxy)
}

#[test]
fn real_oidc_logins_through_the_one_redirect_uri() {
    let Some(modules) = crate::common::installed(modules()) else {
        return;
    };
    let t = TestEnv::new();
    let (pp, idp, main) = (free_port(), free_port(), free_port());
    let toml = format!(
        "[ports]\nrange = [29800, 29899]\n[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\", main = {main} }}\n[proxy]\nlisten = \"127.0.0.1:{pp}\"\n[env]\nOIDC_ISSUER = \"http://localhost:{idp}\"\n"
    );
    let repo = t.repo("demo", Some(&toml));
    for b in ["a", "b", "c"] {
        t.pwt(&repo, &["new", b]).ok();
    }
    let (js, _provider, _proxy) = provider_and_proxy(
        &t,
        &repo,
        &modules,
        idp,
        pp,
        &format!("http://localhost:{pp}/auth/callback"),
    );
    let mut apps = Vec::new();
    let mut ports = std::collections::BTreeMap::new();
    for b in ["main", "a", "b", "c"] {
        let env = t.pwt(&repo, &["env", b, "--format", "json"]).ok().json();
        let port: u16 = env["FRONTEND_PORT"]
            .as_str()
            .expect("port")
            .parse()
            .expect("u16");
        ports.insert(b, port);
        let mut app = t.cmd(&repo, &["run", b, "--", "node"]);
        app.arg(js.join("app.mjs"));
        if b == "c" {
            app.env("APP_BIND", "::1"); // like Node and Vite bound to `localhost`
        }
        apps.push(ready(app, &format!("{b}'s app")));
    }

    let plan = serde_json::json!({
        "logins": [
            { "name": "a_query", "start": format!("http://a.localhost:{pp}/login") },
            { "name": "b_form_post", "start": format!("http://b.localhost:{pp}/login?mode=form_post") },
            { "name": "a_direct", "start": format!("http://localhost:{}/login?prefix=1", ports["a"]) },
            { "name": "b_direct_form_post", "start": format!("http://localhost:{}/login?prefix=1&mode=form_post", ports["b"]) },
            { "name": "c_ipv6_only", "start": format!("http://c.localhost:{pp}/login") },
            // The proxy's other names keep their own cookie jars: back there, not localhost.
            { "name": "a_trailing_dot", "start": format!("http://a.localhost.:{pp}/login") },
            { "name": "main_on_127", "start": format!("http://127.0.0.1:{pp}/login") },
            { "name": "main_on_v6", "start": format!("http://[::1]:{pp}/login") },
            { "name": "main_on_localhost", "start": format!("http://localhost:{pp}/login") },
        ],
        "together": [[
            { "name": "a_together", "start": format!("http://a.localhost:{pp}/login") },
            { "name": "b_together", "start": format!("http://b.localhost:{pp}/login?mode=form_post") },
        ]],
        "foreign": format!("http://rebound.test:{pp}/_pwt"),
    });
    let results = browse(&js, &plan, None);
    let expect = |name: &str, host: String, slug: &str| {
        let got = results[name].as_str().unwrap_or_default();
        assert_eq!(
            got,
            format!("{host} logged in to {slug} as alice"),
            "{name}: {results}"
        );
    };
    expect("a_query", format!("a.localhost:{pp}"), "a");
    expect("b_form_post", format!("b.localhost:{pp}"), "b");
    expect("a_direct", format!("localhost:{}", ports["a"]), "a");
    expect(
        "b_direct_form_post",
        format!("localhost:{}", ports["b"]),
        "b",
    );
    expect("c_ipv6_only", format!("c.localhost:{pp}"), "c");
    expect("a_trailing_dot", format!("a.localhost.:{pp}"), "a");
    expect("main_on_127", format!("127.0.0.1:{pp}"), "main");
    expect("main_on_v6", format!("[::1]:{pp}"), "main");
    expect("main_on_localhost", format!("localhost:{pp}"), "main");
    expect("a_together", format!("a.localhost:{pp}"), "a");
    expect("b_together", format!("b.localhost:{pp}"), "b");
    let foreign = results["foreign"].as_str().unwrap_or_default();
    assert!(
        foreign.starts_with("421"),
        "a rebound foreign origin got: {foreign}"
    );
    assert!(!foreign.contains("a.localhost"), "{foreign}");
    drop(apps);
}

/// `certutil` (Debian's libnss3-tools), for `pwt proxy trust`.
fn certutil() -> Result<(), String> {
    Command::new("certutil")
        .arg("--help")
        .output()
        .map(|_| ())
        .map_err(|_| "certutil is not installed (libnss3-tools)".to_owned())
}

#[test]
fn logins_over_https_and_cookies_that_stay_with_their_worktree() {
    let Some(modules) = crate::common::installed(modules()) else {
        return;
    };
    if crate::common::installed(certutil()).is_none() {
        return;
    }
    let t = TestEnv::new();
    let (pp, idp) = (free_port(), free_port());
    // The apps' session cookie says Domain=localhost, as many development settings do:
    // Chromium drops it on <slug>.localhost unless the proxy keeps it home.
    let toml = format!(
        "[ports]\nrange = [29900, 29999]\n[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\" }}\n[proxy]\nlisten = \"127.0.0.1:{pp}\"\nhttps = true\n[env]\nOIDC_ISSUER = \"http://localhost:{idp}\"\nAPP_COOKIE_DOMAIN = \"localhost\"\n"
    );
    let repo = t.repo("demo", Some(&toml));
    for b in ["a", "b"] {
        t.pwt(&repo, &["new", b]).ok();
    }
    let env = t.pwt(&repo, &["env", "a", "--format", "json"]).ok().json();
    assert_eq!(env["PWT_URL"], format!("https://a.localhost:{pp}"));
    let redirect = format!("https://localhost:{pp}/auth/callback");
    assert_eq!(env["OAUTH_REDIRECT_URI"], redirect.as_str());
    // Chromium reads the NSS database under HOME: trusted there, and only there.
    t.pwt(&repo, &["proxy", "trust", "--stores", "nss"]).ok();

    let (js, _provider, _proxy) = provider_and_proxy(&t, &repo, &modules, idp, pp, &redirect);
    let mut apps = Vec::new();
    for b in ["a", "b"] {
        let mut app = t.cmd(&repo, &["run", b, "--", "node"]);
        app.arg(js.join("app.mjs"));
        apps.push(ready(app, &format!("{b}'s app")));
    }
    let a = format!("https://a.localhost:{pp}");
    let b = format!("https://b.localhost:{pp}");
    let envs: Vec<serde_json::Value> = ["a", "b"]
        .iter()
        .map(|w| t.pwt(&repo, &["env", w, "--format", "json"]).ok().json())
        .collect();
    let direct = |i: usize| {
        format!(
            "http://localhost:{}",
            envs[i]["FRONTEND_PORT"].as_str().expect("port")
        )
    };
    let profile = |i: usize| {
        envs[i]["PWT_BROWSER_PROFILE"]
            .as_str()
            .expect("profile")
            .to_owned()
    };
    let plan = serde_json::json!({
        "logins": [
            { "name": "a_query", "start": format!("{a}/login") },
            { "name": "b_form_post", "start": format!("{b}/login?mode=form_post") },
        ],
        "together": [[
            { "name": "a_together", "start": format!("{a}/login") },
            { "name": "b_together", "start": format!("{b}/login?mode=form_post") },
        ]],
        "visits": [
            { "name": "a_set", "url": format!("{a}/set") },
            { "name": "b_set", "url": format!("{b}/set") },
            { "name": "a_cookies", "url": format!("{a}/cookies") },
            { "name": "b_cookies", "url": format!("{b}/cookies") },
            { "name": "status_page", "url": format!("https://localhost:{pp}/_pwt") },
            // At localhost:<port>, one profile shares one cookie jar between the ports.
            { "name": "shared_a_set", "url": format!("{}/set", direct(0)) },
            { "name": "shared_b_set", "url": format!("{}/set", direct(1)) },
            { "name": "shared_a_cookies", "url": format!("{}/cookies", direct(0)) },
        ],
        // A profile per worktree (pwt open's): apart again.
        "profiles": [
            { "dir": profile(0), "visits": [
                { "name": "own_a_set", "url": format!("{}/set", direct(0)) },
            ]},
            { "dir": profile(1), "visits": [
                { "name": "own_b_set", "url": format!("{}/set", direct(1)) },
                { "name": "own_b_cookies", "url": format!("{}/cookies", direct(1)) },
            ]},
            { "dir": profile(0), "visits": [
                { "name": "own_a_cookies", "url": format!("{}/cookies", direct(0)) },
            ]},
        ],
    });
    let results = browse(&js, &plan, Some(&t.home()));
    let expect = |name: &str, want: String| {
        assert_eq!(
            results[name].as_str().unwrap_or_default(),
            want,
            "{name}: {results}"
        );
    };
    // No certificate error anywhere (a page that failed says so), logins come home over
    // HTTPS with their Domain=localhost session cookie kept, one at a time and together.
    expect(
        "a_query",
        format!("a.localhost:{pp} logged in to a as alice"),
    );
    expect(
        "b_form_post",
        format!("b.localhost:{pp} logged in to b as alice"),
    );
    expect(
        "a_together",
        format!("a.localhost:{pp} logged in to a as alice"),
    );
    expect(
        "b_together",
        format!("b.localhost:{pp} logged in to b as alice"),
    );
    // Each worktree gets its own Domain=localhost cookie back, never the other's.
    expect("a_cookies", "cookies: pref=a".into());
    expect("b_cookies", "cookies: pref=b".into());
    // Direct ports share a jar in one profile (b's cookie reached a), not across profiles.
    expect("shared_a_cookies", "cookies: pref=b".into());
    expect("own_a_cookies", "cookies: pref=a".into());
    expect("own_b_cookies", "cookies: pref=b".into());
    assert!(
        results["status_page"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("OAuth redirect URI: {redirect}"))),
        "{results}"
    );
    drop(apps);
    t.pwt(&repo, &["proxy", "trust", "--uninstall", "--stores", "nss"])
        .ok();
}
