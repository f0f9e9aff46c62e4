//! What an outside red team broke, kept broken no more: two registries (two HOMEs) on one
//! repository, set-ups that were killed and then used, worktrees moved and renamed, kept
//! data under another registry, prefixes another registry holds.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, TestEnv, services_toml};

/// `pwt` as a second person would run it: the same repository, a registry of its own.
fn other(t: &TestEnv, dir: &Path, args: &[&str]) -> Run {
    t.cmd(dir, args)
        .env("PWT_STATE_DIR", t.root().join("state-b"))
        .output()
        .expect("pwt runs")
        .into()
}

fn spawn(
    t: &TestEnv,
    dir: &Path,
    args: &[&str],
    state: Option<&str>,
    fault: Option<&str>,
) -> Child {
    let mut cmd = t.cmd(dir, args);
    if let Some(s) = state {
        cmd.env("PWT_STATE_DIR", t.root().join(s));
    }
    if let Some(f) = fault {
        cmd.env("PWT_FAULT", f);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Starts `pwt new BRANCH` paused at `point` and kills it there.
fn killed_new(t: &TestEnv, repo: &Path, branch: &str, point: &str) {
    let mut child = spawn(
        t,
        repo,
        &["new", branch],
        None,
        Some(&format!("{point}:60000")),
    );
    let reg = t.state_dir().join("registry.json");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Paused at the point once the registry shows the journal of that step.
    let reached = |text: &str| match point {
        "before-ready" => text.contains("checked_out") && text.contains(".env.worktree"),
        _ => text.contains(branch),
    };
    while !std::fs::read_to_string(&reg).is_ok_and(|s| reached(&s)) {
        assert!(Instant::now() < deadline, "never reached {point}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

fn sibling(repo: &Path, name: &str) -> PathBuf {
    repo.parent().expect("parent").join(name)
}

use pwt_tests::db_exists;

fn env_of(run: Run) -> Value {
    run.ok().json()
}

#[test]
fn two_registries_creating_the_same_branch_at_once_never_undo_each_other() {
    let Some((t, repo)) = services() else { return };
    for round in 0..3 {
        let branch = format!("race{round}");
        let a = spawn(&t, &repo, &["new", &branch], None, None);
        let b = spawn(&t, &repo, &["new", &branch], Some("state-b"), None);
        let (a, b): (Run, Run) = (
            a.wait_with_output().expect("a").into(),
            b.wait_with_output().expect("b").into(),
        );
        assert!(
            a.code == 0 || b.code == 0,
            "neither made it:\n{}\n{}",
            a.stderr,
            b.stderr
        );
        let root = sibling(&repo, &format!("demo.{branch}"));
        assert!(
            root.join("README").exists(),
            "the winner's worktree was undone by the loser\n{}\n{}",
            a.stderr,
            b.stderr
        );
        assert_eq!(t.git(&root, &["status", "--porcelain"]), "");
        let winner_state = if a.code == 0 { None } else { Some("state-b") };
        let env = {
            let mut cmd = t.cmd(&repo, &["env", &branch, "--format", "json"]);
            if let Some(s) = winner_state {
                cmd.env("PWT_STATE_DIR", t.root().join(s));
            }
            env_of(cmd.output().expect("env").into())
        };
        assert!(
            db_exists(env["DATABASE_NAME"].as_str().expect("db")),
            "the winner's database was dropped"
        );
        let rm = if a.code == 0 {
            t.pwt(&repo, &["rm", &branch])
        } else {
            other(&t, &repo, &["rm", &branch])
        };
        rm.ok();
    }
}

#[test]
fn a_path_taken_meanwhile_is_never_removed_by_the_rollback() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let root = sibling(&repo, "demo.m2");
    let child = spawn(&t, &repo, &["new", "m2"], None, Some("after-lease:1500"));
    std::thread::sleep(Duration::from_millis(700));
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("notes.txt"), "mine\n").expect("write");
    let run: Run = child.wait_with_output().expect("wait").into();
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(root.join("notes.txt")).expect("kept"),
        "mine\n",
        "{}",
        run.stderr
    );
}

#[test]
fn after_a_killed_new_the_branch_is_made_again_or_taken_over() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    // `pwt new` again: the interrupted set-up is rolled back first, then made anew.
    killed_new(&t, &repo, "chain", "before-ready");
    let v = t
        .pwt(&repo, &["new", "chain", "--format", "json"])
        .ok()
        .json();
    assert_eq!(v["state"], "ready");
    let root = sibling(&repo, "demo.chain");
    assert!(root.join("README").exists() && root.join(".env.worktree").exists());
    t.pwt(&repo, &["rm", "chain"]).ok();
    // `pwt up` in it: the set-up is taken over; the worktree stays, now ready.
    killed_new(&t, &repo, "taken", "before-ready");
    let root = sibling(&repo, "demo.taken");
    let v = t.pwt(&root, &["up", "--format", "json"]).ok().json();
    assert_eq!(v["state"], "ready");
    assert!(t.git(&repo, &["worktree", "list"]).contains("demo.taken"));
    assert!(
        t.pwt(&repo, &["gc", "--yes"])
            .ok()
            .stdout
            .contains("nothing to clean up")
    );
}

#[test]
fn an_undo_never_discards_work_done_in_the_worktree() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    killed_new(&t, &repo, "work", "before-ready");
    let root = sibling(&repo, "demo.work");
    std::fs::write(root.join("mine.txt"), "work\n").expect("write");
    t.git(&root, &["add", "mine.txt"]);
    t.git(&root, &["commit", "-q", "-m", "my work"]);
    std::fs::write(root.join("untracked.txt"), "more\n").expect("write");
    // Spared, saying how to go on, every time (not a failure of each gc).
    for _ in 0..2 {
        let gc = t.pwt(&repo, &["gc", "--yes"]).ok();
        assert!(
            gc.stdout
                .contains("(spared) the interrupted set-up of work")
                && gc.stdout.contains("`pwt up work`"),
            "{}",
            gc.stdout
        );
    }
    assert!(root.join("untracked.txt").exists() && root.join("mine.txt").exists());
    assert!(
        t.git(&repo, &["log", "--oneline", "work"])
            .contains("my work")
    );
    // `pwt up` takes it over, as the hint says.
    t.pwt(&root, &["up"]).ok();
}

#[test]
fn another_registrys_gc_leaves_a_worktree_set_up_again_here_alone() {
    let Some((t, repo)) = services() else { return };
    // B's `pwt new` is killed; A adopts the worktree; B's gc must not undo A's.
    let mut child = spawn(
        &t,
        &repo,
        &["new", "feat/two"],
        Some("state-b"),
        Some("before-ready:60000"),
    );
    let root = sibling(&repo, "demo.feat-two");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !root.join(".env.worktree").exists() {
        assert!(Instant::now() < deadline, "never set up");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("kill");
    child.wait().expect("reap");
    let env = t.pwt(&root, &["up", "--force", "--format", "json"]).ok();
    let db = env_of(t.pwt(&repo, &["env", "feat/two", "--format", "json"]))["DATABASE_NAME"]
        .as_str()
        .expect("db")
        .to_owned();
    drop(env);
    other(&t, &repo, &["gc", "--yes"]);
    assert!(root.join("README").exists(), "B's gc removed A's worktree");
    assert!(db_exists(&db), "B's gc dropped A's database");
    t.pwt(&repo, &["rm", "feat/two", "--force"]).ok();
    // With the worktree gone, B's gc undoes its interrupted set-up: nothing is left on the
    // shared server.
    other(&t, &repo, &["gc", "--yes"]);
    assert!(!db_exists(&db), "{db} was left on the server");
}

#[test]
fn a_worktree_moved_and_renamed_keeps_its_data_and_its_lease() {
    let Some((t, repo)) = services() else { return };
    t.pwt(&repo, &["new", "feat/x"]).ok();
    let db = env_of(t.pwt(&repo, &["env", "feat/x", "--format", "json"]))["DATABASE_NAME"]
        .as_str()
        .expect("db")
        .to_owned();
    let moved = sibling(&repo, "moved2");
    t.git(
        &repo,
        &[
            "worktree",
            "move",
            &sibling(&repo, "demo.feat-x").display().to_string(),
            &moved.display().to_string(),
        ],
    );
    t.git(&moved, &["branch", "-m", "feat/x", "feat/renamed"]);
    let gc = t.pwt(&repo, &["gc", "--yes"]).ok();
    assert!(gc.stdout.contains("(spared)"), "{}", gc.stdout);
    assert!(
        db_exists(&db),
        "gc dropped the data of a moved and renamed worktree"
    );
    // `pwt up` there follows the lease: the same database.
    t.pwt(&moved, &["up"]).ok();
    let env = env_of(t.pwt(&moved, &["env", "--format", "json"]));
    assert_eq!(env["DATABASE_NAME"], db.as_str());
    assert_eq!(env["PWT_BRANCH"], "feat/renamed");
    t.pwt(&repo, &["rm", "feat/renamed"]).ok();
    assert!(!db_exists(&db));
}

#[test]
fn kept_data_survives_gc_under_any_registry_until_kept_is_asked_for() {
    let Some((t, repo)) = services() else { return };
    t.pwt(&repo, &["new", "keep/one"]).ok();
    let db = env_of(t.pwt(&repo, &["env", "keep/one", "--format", "json"]))["DATABASE_NAME"]
        .as_str()
        .expect("db")
        .to_owned();
    t.pwt(&repo, &["rm", "keep/one", "--keep-data"]).ok();
    let dry = other(&t, &repo, &["gc", "--dry-run"]).ok().stdout;
    assert!(dry.contains("kept by `pwt rm --keep-data`"), "{dry}");
    other(&t, &repo, &["gc", "--yes"]).ok();
    assert!(db_exists(&db), "another registry's gc dropped kept data");
    // Taken back by `pwt new` here, then kept again and dropped on request.
    t.pwt(&repo, &["new", "keep/one"]).ok();
    let again = env_of(t.pwt(&repo, &["env", "keep/one", "--format", "json"]));
    assert_eq!(again["DATABASE_NAME"], db.as_str());
    t.pwt(&repo, &["rm", "keep/one", "--keep-data"]).ok();
    other(&t, &repo, &["gc", "--kept", "--yes"]).ok();
    assert!(!db_exists(&db), "gc --kept left kept data");
}

#[test]
fn a_finished_teardown_invents_no_kept_data() {
    let Some((t, repo)) = services() else { return };
    t.pwt(&repo, &["new", "gk"]).ok();
    let root = sibling(&repo, "demo.gk");
    std::fs::remove_file(root.join(".git")).expect("break the worktree");
    let _ = t.pwt(&repo, &["rm", "-f", "gk"]);
    let _ = t.pwt(&repo, &["gc", "--yes"]);
    let reg = t.registry();
    assert!(
        reg["kept"].as_array().is_none_or(|k| k.is_empty()),
        "kept data appeared from nowhere: {reg}"
    );
}

#[test]
fn prefixes_another_registry_holds_are_refused_and_their_keys_survive() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let Some(server) = pwt_tests::RedisServer::start(&[]) else {
        return;
    };
    let t = TestEnv::new();
    let toml = format!(
        "[ports]\nrange = [27400, 27499]\n[redis]\nurl = \"{}\"\nprefix = \"x-{{{{ slug }}}}\"\n",
        server.url()
    );
    let repo = t.repo("demo", Some(&toml));
    t.pwt(&repo, &["new", "feat"]).ok();
    let err = other(&t, &repo, &["new", "feat-x"]).fails(1).stderr;
    assert!(err.contains("overlaps"), "{err}");
    // Made behind pwt's back anyway, by an older pwt say: rm of `feat` spares its keys.
    let c = redis::Client::open(server.url()).expect("client");
    let mut c = c.get_connection().expect("conn");
    let _: () = redis::cmd("SET")
        .arg("x-feat-x__pwt_owner__")
        .arg("pwt:0123456789abcdef")
        .query(&mut c)
        .expect("set");
    let _: () = redis::cmd("SET")
        .arg("x-feat-xcounter")
        .arg("1")
        .query(&mut c)
        .expect("set");
    let _: () = redis::cmd("SET")
        .arg("x-featmine")
        .arg("1")
        .query(&mut c)
        .expect("set");
    t.pwt(&repo, &["rm", "feat"]).ok();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("x-feat*")
        .query(&mut c)
        .expect("keys");
    let mut left = left;
    left.sort();
    assert_eq!(left, ["x-feat-x__pwt_owner__", "x-feat-xcounter"]);
}

/// A sandbox and a repository configured for all three services; `None` when one is missing.
fn services() -> Option<(TestEnv, PathBuf)> {
    if !pwt_tests::all_services_up() {
        return None;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("own");
    let repo = t.repo("demo", Some(&services_toml(&project, "prefix")));
    Some((t, repo))
}
