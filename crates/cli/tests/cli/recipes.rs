//! The recipes of the README for tools people already use, and `pwt infra`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::common::{TestEnv, dotenv};

/// Runs `pwt args` with `input` on stdin.
fn piped(t: &TestEnv, dir: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    let mut child = t
        .cmd(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

/// Claude Code's WorktreeCreate / WorktreeRemove hooks, fed the JSON Claude Code sends.
#[test]
fn claude_code_hooks_create_and_remove_through_pwt() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let create = format!(
        r#"{{"session_id":"s1","hook_event_name":"WorktreeCreate","name":"agent-7f3a","cwd":"{}"}}"#,
        repo.display()
    );
    let out = piped(&t, &repo, &["hook", "claude-code-create"], &create);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        path,
        repo.parent()
            .expect("parent")
            .join("demo.agent-7f3a")
            .display()
            .to_string(),
        "stdout must be the path alone"
    );
    assert_eq!(
        dotenv(&std::path::Path::new(&path).join(".env.worktree"))["PWT_BRANCH"],
        "agent-7f3a"
    );

    let remove = format!(
        r#"{{"hook_event_name":"WorktreeRemove","worktree_path":"{path}","cwd":"{}"}}"#,
        repo.display()
    );
    let out = piped(&t, &repo, &["hook", "claude-code-remove"], &remove);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::path::Path::new(&path).exists());
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );

    let bad = t
        .cmd(&repo, &["hook", "claude-code-create"])
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not JSON"));
}

/// What Worktrunk's and gtr's hooks do: the tool runs `git worktree add`, its set-up
/// hook runs `pwt up` in the new worktree; before removal its pre-remove hook runs `pwt rm
/// --keep-worktree .` there, and the tool's own `git worktree remove` then succeeds.
#[test]
fn post_create_up_and_pre_remove_keep_worktree_flow() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[hooks]\npost-create = [\"echo ready > .agent-ready\"]\n"),
    );
    t.git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "wt-feature",
            "../demo.wt-feature",
        ],
    );
    let wt = repo.parent().expect("parent").join("demo.wt-feature");
    t.pwt(&wt, &["up"]).ok();
    assert!(wt.join(".env.worktree").exists() && wt.join(".agent-ready").exists());
    std::fs::remove_file(wt.join(".agent-ready")).expect("the hook's file is the user's");
    t.pwt(&wt, &["rm", "--keep-worktree", "."]).ok();
    assert!(
        !wt.join(".env.worktree").exists(),
        "env files must go so the tool's removal is clean"
    );
    t.git(&repo, &["worktree", "remove", &wt.display().to_string()]);
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
}

/// The real Worktrunk, when installed (.ci/run installs it): `wt switch --create` runs the
/// project's pre-start hook (blocking; `post-create` is a background hook in Worktrunk 0.67),
/// `wt remove` its pre-remove hook.
#[test]
fn worktrunk_recipe_for_real() {
    if !Command::new("wt")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "wt (worktrunk) is missing: .ci/run installs it"
        );
        eprintln!("skipping: worktrunk is not installed (cargo install worktrunk)");
        return;
    }
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    std::fs::create_dir_all(repo.join(".config")).expect("mkdir");
    std::fs::write(
        repo.join(".config/wt.toml"),
        "[pre-start]\npwt = \"pwt up\"\n\n[pre-remove]\npwt = \"pwt rm --keep-worktree .\"\n",
    )
    .expect("write");
    t.git(&repo, &["add", "."]);
    t.git(&repo, &["commit", "-q", "-m", "worktrunk hooks"]);
    let pwt_dir = std::path::Path::new(env!("CARGO_BIN_EXE_pwt"))
        .parent()
        .expect("bin dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        pwt_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let wt = |args: &[&str]| {
        let mut c = Command::new("wt");
        t.sandbox(&mut c);
        let out = c
            .current_dir(&repo)
            .env("PATH", &path)
            .args(args)
            .output()
            .expect("wt runs");
        assert!(
            out.status.success(),
            "wt {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wt(&["switch", "--create", "wt-real", "--yes", "--no-cd"]);
    let lease = t.registry()["leases"][0].clone();
    assert_eq!(
        lease["branch"], "wt-real",
        "wt's pre-start hook did not run `pwt up`"
    );
    let root = std::path::PathBuf::from(lease["path"].as_str().expect("path"));
    assert!(root.join(".env.worktree").exists());
    wt(&["remove", "wt-real", "--yes"]);
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty(),
        "wt's pre-remove hook did not run `pwt rm`"
    );
}

#[test]
fn infra_compose_file_is_valid_and_status_checks_services() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let compose = t.pwt(&repo, &["infra", "compose"]).ok().stdout;
    let file = t.root().join("compose.yaml");
    std::fs::write(&file, &compose).expect("write");
    // Structure, with a real YAML parser.
    let check = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
assert "name" not in c, "the project name is passed with -p so Compose v1 accepts the file"
s = c["services"]
assert set(s) == {"postgres", "rabbitmq", "redis"}, s.keys()
for name, svc in s.items():
    assert "healthcheck" in svc, name
    for p in svc["ports"]:
        assert p.startswith("127.0.0.1:"), (name, p)
assert "rabbitmq:3-management" in s["rabbitmq"]["image"]
assert set(c["volumes"]) == {"pgdata", "rabbitmq"}
"#;
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compose's own validation, as far as this machine allows (no engine needed for `config`).
    match Command::new("docker-compose")
        .args(["-p", "pwt", "-f"])
        .arg(&file)
        .args(["config", "-q"])
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "docker-compose rejects the file: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "docker-compose is missing: .ci/run installs it"
            );
            eprintln!("skipping Compose validation: docker-compose is not installed");
        }
    }
    if pwt_tests::all_services_up() {
        let status = t
            .pwt(&repo, &["infra", "status", "--format", "json"])
            .ok()
            .json();
        let services = status["services"].as_array().expect("services");
        assert_eq!(services.len(), 4);
        assert!(
            services
                .iter()
                .all(|s| s["answers"] == true && s["runs_in"]["kind"] == "native"),
            "{status}"
        );
    }
    // Without an engine, `up` says so and how to go on.
    if !Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let err = t.pwt(&repo, &["infra", "up"]).fails(1).stderr;
        assert!(
            err.contains("Docker") && err.contains("pwt infra status"),
            "{err}"
        );
    }
    // A service that is down is named with a fix.
    std::fs::write(
        repo.join("pwt.toml"),
        "[redis]\nurl = \"redis://127.0.0.1:1\"\n",
    )
    .expect("write");
    let down = t.pwt(&repo, &["infra", "status"]).fails(1).stdout;
    assert!(
        down.contains("redis") && down.contains("down") && down.contains("redis-server"),
        "{down}"
    );
}
