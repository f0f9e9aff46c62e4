//! `pwt mcp` driven by a real MCP client from outside the project (the official Python SDK,
//! `mcp` from PyPI; `mcp/client.py`): what each read-only tool answers is what the CLI's JSON
//! says, another worktree's data is refused, lifecycle tools are absent until turned on and
//! then work.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{TestEnv, installed, services_toml};

/// Starts `pwt mcp SERVER_ARGS` in `dir` through the client, makes `calls`, returns what the
/// client saw.
fn session(python: &Path, t: &TestEnv, dir: &Path, calls: &Value, server_args: &[&str]) -> Value {
    session_with(python, t, dir, calls, server_args, &[])
}

/// [`session`] with variables set for the server (through the client).
fn session_with(
    python: &Path,
    t: &TestEnv,
    dir: &Path,
    calls: &Value,
    server_args: &[&str],
    env: &[(&str, &str)],
) -> Value {
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/mcp/client.py");
    let mut cmd = Command::new(python);
    t.sandbox(&mut cmd);
    cmd.envs(env.iter().copied());
    let out = cmd
        .arg(client)
        .arg(env!("CARGO_BIN_EXE_pwt"))
        .arg(dir)
        .arg(calls.to_string())
        .args(server_args)
        .output()
        .expect("the client runs");
    assert!(
        out.status.success(),
        "client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

/// The answer of call `i`, which must have succeeded.
fn answer(session: &Value, i: usize) -> &Value {
    let c = &session["calls"][i];
    assert_eq!(c["is_error"], false, "call {i} failed: {c}");
    &c["structured"]
}

/// A worktree's row without what changes from one look to the next.
fn steady(mut row: Value) -> Value {
    if let Some(o) = row.as_object_mut() {
        o.remove("usage");
    }
    for port in row["ports"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.values_mut())
    {
        port.as_object_mut().map(|p| p.remove("listening"));
    }
    row
}

fn services() -> Option<(TestEnv, PathBuf, PathBuf)> {
    if !pwt_tests::all_services_up() {
        return None;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("mcp");
    let toml = format!(
        "{}[processes]\nweb = \"echo serving on $FRONTEND_PORT; exec sleep 60\"\n",
        services_toml(&project, "prefix")
    );
    let repo = t.repo("demo", Some(&toml));
    let v = t
        .pwt(&repo, &["new", "feat/a", "--format", "json"])
        .ok()
        .json();
    let wt = PathBuf::from(v["path"].as_str().expect("path"));
    Some((t, repo, wt))
}

#[test]
fn each_read_only_tool_answers_what_the_cli_prints_and_nothing_of_other_worktrees() {
    let Some(python) = installed(crate::common::test_python("mcp")) else {
        return;
    };
    let Some((t, repo, wt)) = services() else {
        return;
    };
    let calls = json!([
        ["status", {}],
        ["environment", {}],
        ["worktrees", {}],
        ["oauth_state", {}],
        ["environment", {"worktree": "main"}],
        ["status", {"worktree": repo}],
        ["start_processes", {}],
        ["remove_worktree", {"worktree": "feat/a"}],
        ["status", {"log_lines": "many"}],
    ]);
    let s = session(&python, &t, &wt, &calls, &[]);
    assert_eq!(s["server"], "pwt");
    assert_eq!(
        s["tools"],
        json!(["environment", "oauth_state", "status", "worktrees"]),
        "read-only tools only, by default"
    );
    assert_eq!(s["read_only"], s["tools"]);

    let status = t.pwt(&wt, &["status", "--format", "json"]).ok().json();
    assert_eq!(
        steady(answer(&s, 0)["worktree"].clone()),
        steady(status["worktree"].clone())
    );
    assert_eq!(answer(&s, 0)["services"], status["services"]);
    let kinds: Vec<&str> = status["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|x| x["state"].as_str().expect("state"))
        .collect();
    assert_eq!(kinds, ["ready", "ready", "ready"], "{status}");

    let explained = t
        .pwt(&wt, &["env", "--explain", "--format", "json"])
        .ok()
        .json();
    assert_eq!(answer(&s, 1)["variables"], explained);
    let database_url = explained
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "DATABASE_URL")
        .expect("DATABASE_URL");
    assert!(
        database_url["about"]
            .as_str()
            .is_some_and(|a| a.contains("PostgreSQL")),
        "{database_url}"
    );

    let listed = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    let steady_all = |v: &Value| -> Vec<Value> {
        v.as_array()
            .expect("rows")
            .iter()
            .cloned()
            .map(steady)
            .collect()
    };
    assert_eq!(steady_all(&answer(&s, 2)["worktrees"]), steady_all(&listed));

    let env = t.pwt(&wt, &["env", "--format", "json"]).ok().json();
    let state = answer(&s, 3)["state"].as_str().expect("state");
    assert!(
        state.starts_with("feat-a~") && state.len() == "feat-a~".len() + 32,
        "{state}"
    );
    assert_eq!(answer(&s, 3)["redirect_uri"], env["OAUTH_REDIRECT_URI"]);

    // Another worktree's data: refused, by name and by path, with the CLI's hint.
    for i in [4, 5] {
        let c = &s["calls"][i];
        assert_eq!(c["is_error"], true, "{c}");
        assert_eq!(c["structured"]["kind"], "refused", "{c}");
        assert!(
            c["text"]
                .as_str()
                .is_some_and(|x| x.contains("answers for the worktree at")
                    && x.contains("pwt mcp --repository")),
            "{c}"
        );
    }
    // Lifecycle tools are not there at all.
    for i in [6, 7] {
        let e = s["calls"][i]["protocol_error"].as_str().unwrap_or_default();
        assert!(
            e.contains("no tool named") && e.contains("--allow"),
            "{}",
            s["calls"][i]
        );
    }
    // A bad argument is the tool's error, named.
    let bad = &s["calls"][8];
    assert_eq!(bad["is_error"], true, "{bad}");
    assert!(
        bad["text"]
            .as_str()
            .is_some_and(|x| x.contains("`log_lines` must be a whole number")),
        "{bad}"
    );

    // With --repository, every worktree can be asked about.
    let s = session(
        &python,
        &t,
        &repo,
        &json!([["environment", {"worktree": "feat/a"}], ["status", {"worktree": "main"}]]),
        &["--repository"],
    );
    assert_eq!(answer(&s, 0)["variables"], explained);
    assert_eq!(answer(&s, 1)["worktree"]["slug"], "main");
    t.pwt(&repo, &["rm", "feat/a"]).ok();
}

#[test]
fn lifecycle_tools_are_offered_when_turned_on_and_work() {
    let Some(python) = installed(crate::common::test_python("mcp")) else {
        return;
    };
    let Some((t, repo, wt)) = services() else {
        return;
    };
    let listed = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    let db = listed[1]["database"].as_str().expect("database").to_owned();
    let main_db = format!("{}_main", db.trim_end_matches("_feat_a"));
    pwt_tests::sql(
        pwt_tests::POSTGRES_URL,
        &format!("CREATE DATABASE \"{main_db}\""),
    );
    pwt_tests::sql(
        &format!("postgres://postgres@127.0.0.1:5432/{main_db}"),
        "CREATE TABLE seed (x int); INSERT INTO seed VALUES (7)",
    );
    pwt_tests::sql(
        &format!("postgres://postgres@127.0.0.1:5432/{db}"),
        "CREATE TABLE mine (x int)",
    );
    let calls = json!([
        ["start_processes", {}],
        ["status", {"log_lines": 5}],
        ["stop_processes", {}],
        ["reset_database", {}],
        ["create_worktree", {"branch": "feat/b"}],
        ["remove_worktree", {"worktree": "feat/b"}],
        ["remove_worktree", {"worktree": "feat/a"}],
        ["up", {}],
    ]);
    let s = session(
        &python,
        &t,
        &wt,
        &calls,
        &["--allow", "processes,up,reset-database,worktrees"],
    );
    for tool in ["start_processes", "reset_database", "create_worktree", "up"] {
        assert!(
            s["tools"]
                .as_array()
                .expect("tools")
                .iter()
                .any(|x| x == tool),
            "{tool} offered: {}",
            s["tools"]
        );
    }
    assert!(
        !s["read_only"]
            .as_array()
            .expect("read_only")
            .iter()
            .any(|x| x == "remove_worktree")
    );
    assert_eq!(answer(&s, 0)["started"][0]["name"], "web");
    let status = answer(&s, 1);
    assert_eq!(
        status["worktree"]["processes"][0]["running"], true,
        "{status}"
    );
    assert_eq!(
        status["logs"]["web"][0],
        format!(
            "serving on {}",
            status["worktree"]["ports"]["frontend"]["port"]
        )
    );
    assert_eq!(answer(&s, 2)["stopped"][0]["stopped"], true);
    assert_eq!(answer(&s, 3)["database"], db.as_str());
    let tables = |name: &str| -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                name,
                "-Atc",
                "\\dt",
            ])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let after = tables(&db);
    assert!(after.contains("seed") && !after.contains("mine"), "{after}");
    let created = answer(&s, 4);
    assert_eq!(created["branch"], "feat/b");
    assert_eq!(answer(&s, 5)["removed"], true);
    let own = &s["calls"][6];
    assert_eq!(own["is_error"], true, "{own}");
    assert!(!Path::new(created["path"].as_str().expect("path")).exists());
    assert_eq!(answer(&s, 7)["branch"], "feat/a");
    // The same through pwt.toml's [mcp] allow.
    let toml = wt.join("pwt.toml");
    let text = std::fs::read_to_string(&toml).expect("pwt.toml");
    std::fs::write(&toml, format!("{text}[mcp]\nallow = [\"up\"]\n")).expect("write");
    let s = session(&python, &t, &wt, &json!([["up", {}]]), &[]);
    assert_eq!(
        s["tools"],
        json!(["environment", "oauth_state", "status", "up", "worktrees"])
    );
    assert_eq!(answer(&s, 0)["branch"], "feat/a");
    // Not approved (nothing trusted): the file's [mcp] allow is not offered.
    let s = session_with(
        &python,
        &t,
        &wt,
        &json!([]),
        &[],
        &[("PWT_TRUST_HOOKS", "0")],
    );
    assert_eq!(
        s["tools"],
        json!(["environment", "oauth_state", "status", "worktrees"])
    );
    // Serving the repository, the worktree it runs in is still never removed by a tool.
    let s = session(
        &python,
        &t,
        &wt,
        &json!([["remove_worktree", {"worktree": "feat/a", "force": true}]]),
        &["--repository", "--allow", "worktrees"],
    );
    assert_eq!(s["calls"][0]["is_error"], true, "{}", s["calls"][0]);
    assert!(wt.exists());
    t.pwt(&repo, &["rm", "feat/a", "--force"]).ok();
    pwt_tests::sql(
        pwt_tests::POSTGRES_URL,
        &format!("DROP DATABASE \"{main_db}\""),
    );
}

#[test]
fn sigterm_during_a_create_rolls_it_back_and_ends_the_server() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[ports]\nrange = [27800, 27819]\n[hooks]\npost-create = [\"sleep 3\"]\n"),
    );
    let mut server = t
        .cmd(&repo, &["mcp", "--repository", "--allow", "worktrees"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pwt mcp");
    let mut stdin = server.stdin.take().expect("stdin");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let mut send = |m: Value| {
        writeln!(stdin, "{m}").expect("send");
        stdin.flush().expect("flush");
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}),
    );
    lines.next().expect("initialized").expect("line");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "create_worktree", "arguments": {"branch": "slow"}}}));
    // The hook is running: the worktree and its lease exist.
    let wt = repo.with_file_name("demo.slow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !wt.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the set-up never began"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    sigterm(server.id());
    let answer: Value =
        serde_json::from_str(&lines.next().expect("an answer").expect("line")).expect("JSON");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["kind"], "cancelled",
        "{answer}"
    );
    let status = server.wait().expect("the server ends");
    assert!(status.success(), "{status:?}");
    assert!(!wt.exists(), "rolled back");
    let listed = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    assert_eq!(listed.as_array().expect("rows").len(), 1, "{listed}");
}

/// SIGTERM to `pid`.
fn sigterm(pid: u32) {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
}
