//! Many pwt processes at once, crashes at the worst moments, foreign listeners.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv, seed_toml};

fn spawn_new(t: &TestEnv, repo: &Path, branch: &str) -> Child {
    t.cmd(repo, &["new", branch, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn all_ports(registry: &serde_json::Value) -> Vec<u16> {
    registry["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .flat_map(|l| {
            l["ports"]
                .as_object()
                .expect("ports")
                .values()
                .map(|p| p.as_u64().expect("port") as u16)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn no_temp_files(t: &TestEnv) {
    for e in std::fs::read_dir(t.state_dir()).expect("ls") {
        let name = e.expect("entry").file_name();
        assert!(
            !name.to_string_lossy().contains("tmp"),
            "temp file left: {name:?}"
        );
    }
}

#[test]
fn fifty_at_once_in_one_repo() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((23000, 24999))));
    let children: Vec<Child> = (0..50)
        .map(|i| spawn_new(&t, &repo, &format!("par-{i}")))
        .collect();
    for c in children {
        Run::from(c.wait_with_output().expect("wait")).ok();
    }
    let reg = t.registry();
    assert_eq!(reg["leases"].as_array().expect("leases").len(), 50);
    assert!(
        reg["leases"]
            .as_array()
            .expect("leases")
            .iter()
            .all(|l| l["state"] == "ready")
    );
    let ports = all_ports(&reg);
    assert_eq!(ports.len(), 100);
    assert_eq!(
        ports.iter().collect::<HashSet<_>>().len(),
        100,
        "a port was handed out twice"
    );
    no_temp_files(&t);
    let worktrees = t.git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 51);
}

#[test]
fn two_repos_at_once_share_no_port() {
    let t = TestEnv::new();
    // Both repos use the same range, so only the machine-wide registry keeps them apart.
    let r1 = t.repo("one", Some(&seed_toml((25000, 25199))));
    let r2 = t.repo("two", Some(&seed_toml((25000, 25199))));
    let children: Vec<Child> = (0..15)
        .flat_map(|i| {
            [
                spawn_new(&t, &r1, &format!("b{i}")),
                spawn_new(&t, &r2, &format!("b{i}")),
            ]
        })
        .collect();
    for c in children {
        Run::from(c.wait_with_output().expect("wait")).ok();
    }
    let ports = all_ports(&t.registry());
    assert_eq!(ports.len(), 60);
    let all = t
        .pwt(&r1, &["list", "--all-repos", "--format", "json"])
        .ok()
        .json();
    let rows = all.as_array().expect("rows");
    assert_eq!(rows.len(), 30);
    assert!(
        rows.iter()
            .all(|r| r["ports"]["frontend"]["env"] == "FRONTEND_PORT"),
        "each repository's own config names its ports"
    );
    assert_eq!(
        ports.iter().collect::<HashSet<_>>().len(),
        60,
        "a port was handed out twice"
    );
}

#[test]
fn same_branch_twice_at_once_creates_one() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let runs: Vec<Run> = [spawn_new(&t, &repo, "dup"), spawn_new(&t, &repo, "dup")]
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait").into())
        .collect();
    let ok = runs.iter().filter(|r| r.code == 0).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    let loser = runs.iter().find(|r| r.code != 0).expect("one failed");
    assert!(
        loser.stderr.contains("already") || loser.stderr.contains("busy"),
        "{}",
        loser.stderr
    );
    assert_eq!(t.registry()["leases"].as_array().expect("leases").len(), 1);
}

/// Waits until the lock file names `pid` (written right after the lock is taken).
fn wait_for_lock_holder(t: &TestEnv, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(t.state_dir().join("registry.lock"))
            .is_ok_and(|s| s.trim() == pid.to_string())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("pwt never took the lock");
}

#[test]
fn kill_9_while_holding_the_lock_frees_it() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    t.pwt(&repo, &["new", "before"]).ok();
    let mut holder = t
        .cmd(&repo, &["new", "victim"])
        .env("PWT_FAULT", "hold-lock:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_lock_holder(&t, holder.id());
    holder.kill().expect("SIGKILL");
    holder.wait().expect("reap");
    // The lock is free: without that, this would wait 30 s and fail with a timeout.
    t.pwt(&repo, &["new", "after"]).ok();
    let reg = t.registry();
    let branches: Vec<_> = reg["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| l["branch"].clone())
        .collect();
    assert_eq!(branches, vec!["before", "after"]);
}

#[test]
fn kill_9_before_rename_leaves_the_previous_registry() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    t.pwt(&repo, &["new", "before"]).ok();
    let previous = std::fs::read(t.state_dir().join("registry.json")).expect("registry");
    let mut writer = t
        .cmd(&repo, &["new", "victim"])
        .env("PWT_FAULT", "before-rename:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let temp = loop {
        let found = std::fs::read_dir(t.state_dir())
            .expect("ls")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with(".pwt-tmp-"));
        if let Some(e) = found {
            break e.path();
        }
        assert!(Instant::now() < deadline, "no temp file appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Wait for the temp file to be complete (it is fsynced before the pause).
    std::thread::sleep(Duration::from_millis(200));
    writer.kill().expect("SIGKILL");
    writer.wait().expect("reap");
    assert!(temp.exists());
    assert_eq!(
        std::fs::read(t.state_dir().join("registry.json")).expect("registry"),
        previous
    );
    // The next writer proceeds and cleans up the dead writer's temp file.
    t.pwt(&repo, &["list"]).ok();
    t.pwt(&repo, &["new", "after"]).ok();
    assert!(!temp.exists());
    no_temp_files(&t);
}

/// Two consecutive free ports, found by asking the kernel.
fn free_pair(v6: bool) -> u16 {
    for _ in 0..200 {
        let l = if v6 {
            TcpListener::bind((Ipv6Addr::LOCALHOST, 0))
        } else {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        }
        .expect("bind");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if p < 65535
            && TcpListener::bind((Ipv4Addr::LOCALHOST, p + 1)).is_ok()
            && TcpListener::bind((Ipv6Addr::LOCALHOST, p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

#[test]
fn ports_held_by_foreign_listeners_are_skipped() {
    let ipv6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    for v6 in [false, true] {
        if v6 && !ipv6 {
            eprintln!("skipping the IPv6 case: this machine has no IPv6 loopback");
            continue;
        }
        let t = TestEnv::new();
        let p = free_pair(v6);
        let _foreign = if v6 {
            TcpListener::bind((Ipv6Addr::LOCALHOST, p))
        } else {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p))
        }
        .expect("foreign listener");
        let repo = t.repo(
            "demo",
            Some(&format!("[ports]\nrange = [{p}, {}]\n", p + 1)),
        );
        let v = t.pwt(&repo, &["new", "x", "--format", "json"]).ok().json();
        assert_eq!(v["ports"]["app"]["port"], p + 1, "v6={v6}");
        // Both ports now unavailable: a clear error, nothing left.
        let err = t.pwt(&repo, &["new", "y"]).fails(1).stderr;
        assert!(err.contains("no 1 free ports left"), "{err}");
        assert_eq!(t.registry()["leases"].as_array().expect("leases").len(), 1);
        assert!(!repo.parent().expect("parent").join("demo.y").exists());
    }
}

/// `kill -9` in the middle of `pwt new`, before and after the checkout: the lease is left
/// `creating` by a dead process, and `pwt gc` rolls each back exactly (lease, worktree, the
/// branch it made), never marking a half-made worktree ready; both can be created again.
#[test]
fn kill_9_mid_new_is_rolled_back_by_gc() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    for (point, branch) in [("after-lease", "early"), ("after-checkout", "late")] {
        let mut victim = t
            .cmd(&repo, &["new", branch])
            .env("PWT_FAULT", format!("{point}:60000"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        let root = repo
            .parent()
            .expect("parent")
            .join(format!("demo.{branch}"));
        loop {
            let leased = std::fs::read_to_string(t.state_dir().join("registry.json"))
                .is_ok_and(|s| s.contains(&format!("\"{branch}\"")));
            let checked_out = root.join("README").exists();
            if leased && (point == "after-lease" || checked_out) {
                break;
            }
            assert!(Instant::now() < deadline, "{point}: never got there");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        victim.kill().expect("SIGKILL");
        victim.wait().expect("reap");
        let lease = t.registry()["leases"]
            .as_array()
            .expect("leases")
            .iter()
            .find(|l| l["branch"] == branch)
            .cloned()
            .expect("lease left");
        assert_eq!(lease["state"], "creating");
    }
    // The next pwt is not blocked by them.
    t.pwt(&repo, &["new", "after"]).ok();
    let gc = t
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    let done: Vec<&str> = gc["done"]
        .as_array()
        .expect("done")
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(done.contains(&"early") && done.contains(&"late"), "{gc}");
    let reg = t.registry();
    let leases = reg["leases"].as_array().expect("leases");
    assert!(
        leases
            .iter()
            .all(|l| l["branch"] != "early" && l["branch"] != "late"),
        "{reg}"
    );
    for branch in ["early", "late"] {
        let root = repo
            .parent()
            .expect("parent")
            .join(format!("demo.{branch}"));
        assert!(!root.exists(), "{} left behind", root.display());
        let branches = t.git(&repo, &["branch", "--list", branch]);
        assert!(
            branches.trim().is_empty(),
            "the branch pwt made stayed: {branches}"
        );
        t.pwt(&repo, &["new", branch]).ok();
        assert_eq!(t.git(&root, &["status", "--porcelain"]), "");
    }
}
