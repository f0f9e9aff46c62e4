//! What scripts may rely on: every `--format json` output validates against its committed
//! JSON Schema (`schemas/`, checked by a real validator, Python's `jsonschema`), and every
//! exit code of the README's table is what the binary returns.

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv, installed, seed_toml};

fn schema(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../schemas")
        .join(name)
}

/// Validates `json` against `schemas/<name>` with the real validator.
fn validates(python: &Path, t: &TestEnv, name: &str, json: &str) {
    let file = t.root().join(format!("out-{name}"));
    std::fs::write(&file, json).expect("write");
    let out = Command::new(python)
        .args([
            "-c",
            "import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        ])
        .arg(&file)
        .arg(schema(name))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{name}: {}\n{json}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_json_output_validates_against_its_committed_schema() {
    let Some(python) = installed(crate::common::test_python("jsonschema")) else {
        return;
    };
    let t = TestEnv::new();
    let toml = format!(
        "{}[hooks]\npost-create = [\"true\"]\n",
        seed_toml((28500, 28549))
    );
    let repo = t.repo("demo", Some(&toml));
    let json = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        t.pwt(&repo, &all).ok().stdout
    };
    validates(&python, &t, "worktree.json", &json(&["new", "feat/a"]));
    validates(&python, &t, "worktree.json", &json(&["up", "feat/a"]));
    validates(&python, &t, "list.json", &json(&["list"]));
    validates(&python, &t, "env.json", &json(&["env", "feat/a"]));
    validates(
        &python,
        &t,
        "env-explain.json",
        &json(&["env", "feat/a", "--explain"]),
    );
    validates(&python, &t, "status.json", &json(&["status", "feat/a"]));
    let top = json(&["top", "--count", "2", "--interval", "0.1"]);
    for line in top.lines() {
        validates(&python, &t, "top.json", line);
    }
    validates(&python, &t, "config.json", &json(&["config"]));
    validates(&python, &t, "doctor.json", &json(&["doctor"]));
    validates(&python, &t, "gc.json", &json(&["gc", "--dry-run"]));
    validates(&python, &t, "rm.json", &json(&["rm", "feat/a"]));
    validates(&python, &t, "rm.json", &json(&["rm", "nothing-here"]));
    let status = t.pwt(&repo, &["infra", "status", "--format", "json"]);
    validates(&python, &t, "infra.json", &status.stdout);
}

/// `pwt new BRANCH` paused at `point`, running.
fn paused(t: &TestEnv, repo: &Path, branch: &str, point: &str) -> std::process::Child {
    let mut cmd = t.cmd(repo, &["new", branch]);
    cmd.env("PWT_FAULT", format!("{point}:3000"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let leased = || {
        std::fs::read_to_string(t.state_dir().join("registry.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|v| {
                v["leases"]
                    .as_array()
                    .is_some_and(|ls| ls.iter().any(|l| l["branch"] == branch))
            })
    };
    while !leased() {
        assert!(Instant::now() < deadline, "the lease never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn every_exit_code_of_the_table() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((28550, 28599))));
    // 0: it worked.
    t.pwt(&repo, &["new", "a"]).fails(0);
    // 2: usage, whether clap or the engine finds it.
    t.pwt(&repo, &["frobnicate"]).fails(2);
    t.pwt(&repo, &["new", "bad..name"]).fails(2);
    t.pwt(&repo, &["rm", "main"]).fails(2);
    let mut cmd = t.cmd(&repo, &["list"]);
    cmd.env("PWT_STATE_DIR", std::ffi::OsStr::from_bytes(b"/tmp/st\xe9"));
    let not_text: Run = cmd.output().expect("pwt").into();
    not_text.fails(2);
    // 3: refused to lose work.
    let root = repo.parent().expect("parent").join("demo.a");
    std::fs::write(root.join("work.txt"), "mine\n").expect("work");
    t.pwt(&repo, &["rm", "a"]).fails(3);
    // 4: a hook nobody approved.
    let hooked = t.repo("hooked", Some("[hooks]\npost-create = [\"true\"]\n"));
    let mut cmd = t.cmd(&hooked, &["new", "h"]);
    cmd.env_remove("PWT_TRUST_HOOKS");
    let unapproved: Run = cmd.output().expect("pwt").into();
    unapproved.fails(4);
    // 5: another pwt is at work on it.
    let mut child = paused(&t, &repo, "b", "after-lease");
    t.pwt(&repo, &["rm", "b"]).fails(5);
    t.pwt(&repo, &["new", "b"]).fails(5);
    // 130: interrupted, and rolled back.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let code = child.wait().expect("wait").code();
    assert_eq!(code, Some(130));
    // 1: anything else that failed (a service that does not answer).
    let down = t.repo(
        "down",
        Some("[postgres]\nurl = \"postgres://postgres@127.0.0.1:1/postgres\"\n"),
    );
    t.pwt(&down, &["new", "d"]).fails(1);
}
