//! Promises the README makes that an outside try broke once: a worktree inside another, what
//! a process leaves in its group, a killed set-up finished by `pwt up`, the proxy's own
//! port, names and files that must be safe to paste or to copy, claims of repositories
//! that are gone, an `[env]` that needs no approval, and hooks that keep stdout clean.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestEnv, seed_toml};

fn pid_alive(pid: u32) -> bool {
    pwt::proc::running(pid)
}

/// A process working in `dir` (`sleep`), for pwt to find or to spare.
fn sleeper(dir: &Path, secs: &str) -> Child {
    std::process::Command::new("sleep")
        .arg(secs)
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep")
}

fn path_of(v: &serde_json::Value) -> PathBuf {
    PathBuf::from(v["path"].as_str().expect("path"))
}

#[test]
fn a_worktree_inside_another_is_never_deleted_stopped_or_pruned_with_it() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((27800, 27849))));
    std::fs::write(repo.join(".git/info/exclude"), ".wt/\n").expect("exclude");
    let outer = path_of(
        &t.pwt(&repo, &["new", "outer", "--format", "json"])
            .ok()
            .json(),
    );
    // pwt itself puts no worktree inside another (the main one aside).
    let inside = outer.join(".wt/inner");
    let refused = t
        .pwt(
            &repo,
            &["new", "inner", "--path", &inside.display().to_string()],
        )
        .fails(2);
    assert!(
        refused.stderr.contains("inside the worktree") && refused.stderr.contains("\"outer\""),
        "{}",
        refused.stderr
    );
    assert!(!inside.exists());
    // Another tool does (plain git), and pwt adopts it.
    t.git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "inner",
            &inside.display().to_string(),
        ],
    );
    t.pwt(&inside, &["up"]).ok();
    std::fs::write(inside.join("work.txt"), "precious\n").expect("work");
    let mut busy = sleeper(&inside, "30");
    for extra in [vec![], vec!["--force"]] {
        let mut args = vec!["rm", "outer"];
        args.extend(extra);
        let rm = t.pwt(&repo, &args).fails(3);
        assert!(
            rm.stderr.contains("holds another worktree") && rm.stderr.contains("\"inner\""),
            "{}",
            rm.stderr
        );
    }
    // Without env files nothing else would stop it: the nested worktree still does.
    let mut bare = t.cmd(&repo, &["rm", "outer", "--force"]);
    bare.env("PWT_FILES__DOTENV", "false");
    let rm: crate::common::Run = bare.output().expect("pwt").into();
    assert_eq!(rm.code, 3, "{}", rm.stderr);
    assert_eq!(
        std::fs::read_to_string(inside.join("work.txt")).expect("work survives"),
        "precious\n"
    );
    assert!(pid_alive(busy.id()), "inner's process was stopped");
    let list = t.git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(!list.contains("prunable"), "{list}");
    // Once the inner one is gone, the outer one goes.
    let _ = busy.kill();
    let _ = busy.wait();
    t.pwt(&repo, &["rm", "inner", "--force"]).ok();
    t.pwt(&repo, &["rm", "outer"]).ok();
    assert!(!outer.exists());
}

/// The `[processes]` rows of `branch` in `pwt list --format json`.
fn processes(t: &TestEnv, repo: &Path, branch: &str) -> serde_json::Value {
    let list = t.pwt(repo, &["list", "--format", "json"]).ok().json();
    list.as_array()
        .expect("rows")
        .iter()
        .find(|r| r["branch"] == branch)
        .map(|r| r["processes"].clone())
        .expect("row")
}

/// The live processes whose command line is `sleep SECS`.
fn sleeps(secs: &str) -> Vec<u32> {
    let want = format!("sleep\0{secs}\0").into_bytes();
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| pid_alive(*pid))
        .collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn what_a_process_leaves_in_its_group_runs_until_stop_or_rm_ends_it() {
    let t = TestEnv::new();
    // Unique durations: the test finds its own sleeps by their command lines.
    let (a, b) = (
        format!("{}", 100_000 + std::process::id()),
        format!("{}", 200_000 + std::process::id()),
    );
    let toml = format!(
        "{}[processes]\ndaemon = \"sleep {a} &\"\nescapee = \"cd / && exec sleep {b} &\"\n",
        seed_toml((27850, 27899))
    );
    let repo = t.repo("demo", Some(&toml));
    t.pwt(&repo, &["new", "d"]).ok();
    t.pwt(&repo, &["dev", "d", "--detach"]).ok();
    wait_until("both sleeps", || {
        sleeps(&a).len() == 1 && sleeps(&b).len() == 1
    });
    // The leaders (`sh`) have exited; what they left runs on in their groups.
    wait_until("the leaders to exit", || {
        processes(&t, &repo, "d")
            .as_array()
            .expect("procs")
            .iter()
            .all(|p| p["exit_code"] == 0 || p["running"] == true)
    });
    let procs = processes(&t, &repo, "d");
    for p in procs.as_array().expect("procs") {
        assert_eq!(p["running"], true, "{procs}");
    }
    let again = t.pwt(&repo, &["dev", "d", "--detach"]).fails(5);
    assert!(again.stderr.contains("run already"), "{}", again.stderr);
    assert_eq!(sleeps(&a).len(), 1, "a duplicate was started");
    t.pwt(&repo, &["stop", "d"]).ok();
    wait_until("stop to end both", || {
        sleeps(&a).is_empty() && sleeps(&b).is_empty()
    });
    // And `pwt rm --force` ends one that moved out of the worktree.
    t.pwt(&repo, &["dev", "d", "--detach"]).ok();
    wait_until("the escapee", || sleeps(&b).len() == 1);
    t.pwt(&repo, &["rm", "d", "--force"]).ok();
    wait_until("rm to end both", || {
        sleeps(&a).is_empty() && sleeps(&b).is_empty()
    });
}

#[test]
fn a_set_up_killed_before_its_files_and_hooks_is_finished_by_up() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[files]\ncopy = [\"secrets/\"]\n[hooks]\npost-create = [\"touch .hooked\"]\n",
        seed_toml((27900, 27949))
    );
    let repo = t.repo("demo", Some(&toml));
    std::fs::write(repo.join(".gitignore"), "secrets/\n.hooked\n").expect("ignore");
    t.git(&repo, &["add", ".gitignore"]);
    t.git(&repo, &["commit", "-q", "-m", "ignore"]);
    std::fs::create_dir_all(repo.join("secrets")).expect("secrets");
    std::fs::write(repo.join("secrets/key"), "k\n").expect("key");
    for point in ["after-checkout", "after-env-files"] {
        let branch = format!("k-{point}");
        let mut child = t.cmd(&repo, &["new", &branch]);
        child
            .env("PWT_FAULT", format!("{point}:60000"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = child.spawn().expect("spawn");
        let root = repo
            .parent()
            .expect("parent")
            .join(format!("demo.{branch}"));
        wait_until("the fault point", || {
            let reg =
                std::fs::read_to_string(t.state_dir().join("registry.json")).unwrap_or_default();
            root.join("README").exists()
                && (point != "after-env-files" || reg.contains(".env.worktree"))
        });
        std::thread::sleep(Duration::from_millis(200));
        let _ = child.kill();
        let _ = child.wait();
        t.pwt(&repo, &["up", &branch]).ok();
        assert!(root.join(".hooked").exists(), "{point}: the hook never ran");
        assert_eq!(
            std::fs::read_to_string(root.join("secrets/key")).expect("copied"),
            "k\n",
            "{point}"
        );
        let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
        let row = list
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["branch"] == branch.as_str())
            .expect("row")
            .clone();
        assert_eq!(row["state"], "ready", "{row}");
        assert_eq!(row["hooks_pending"], false, "{row}");
    }
}

/// The lease of `branch` records its env files: the set-up is at its pause after them (a
/// kill before the record would leave files no lease accounts for, which gc rightly spares).
fn env_files_recorded(t: &TestEnv, branch: &str) -> bool {
    std::fs::read_to_string(t.state_dir().join("registry.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|reg| {
            reg["leases"]
                .as_array()?
                .iter()
                .find(|l| l["branch"] == branch)
                .map(|l| l["files"].get(".env.worktree").is_some())
        })
        .unwrap_or(false)
}

#[test]
fn an_interrupted_set_up_with_a_temporary_file_of_pwt_is_rolled_back_by_one_gc() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((27950, 27999))));
    let mut child = t.cmd(&repo, &["new", "tmp"]);
    child
        .env("PWT_FAULT", "after-env-files:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = child.spawn().expect("spawn");
    let root = repo.parent().expect("parent").join("demo.tmp");
    wait_until("the env files, recorded", || env_files_recorded(&t, "tmp"));
    let _ = child.kill();
    let _ = child.wait();
    // What a pwt killed between writing and renaming leaves.
    std::fs::write(root.join(".pwt-tmp-4242-.env.worktree"), "half").expect("tmp");
    let gc = t
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    assert!(gc["failed"].as_array().expect("failed").is_empty(), "{gc}");
    assert!(!root.exists(), "{gc}");
    let reg = t.registry();
    assert!(
        reg["leases"].as_array().expect("leases").is_empty(),
        "{reg}"
    );
    // Someone's real work in such a worktree is spared, and gc says how to go on, every
    // time, without failing.
    let mut child = t.cmd(&repo, &["new", "work"]);
    child
        .env("PWT_FAULT", "after-env-files:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = child.spawn().expect("spawn");
    let root = repo.parent().expect("parent").join("demo.work");
    wait_until("the env files, recorded", || env_files_recorded(&t, "work"));
    let _ = child.kill();
    let _ = child.wait();
    std::fs::write(root.join("notes.txt"), "mine\n").expect("work");
    for _ in 0..2 {
        let gc = t
            .pwt(&repo, &["gc", "--yes", "--format", "json"])
            .ok()
            .json();
        let spared = gc["spared"].to_string();
        assert!(spared.contains("pwt up work"), "{gc}");
    }
    assert!(root.join("notes.txt").exists());
    t.pwt(&repo, &["up", "work"]).ok();
}

#[test]
fn the_proxy_port_is_never_leased_and_system_ports_are_refused() {
    let t = TestEnv::new();
    // A range of this test's own, the proxy's port at its start.
    let proxy: u16 = 28360;
    let toml = format!(
        "[ports]\nrange = [{proxy}, {}]\n[proxy]\nlisten = \"127.0.0.1:{proxy}\"\n",
        proxy + 1
    );
    let repo = t.repo("demo", Some(&toml));
    let made = t.pwt(&repo, &["new", "a", "--format", "json"]).ok().json();
    assert_eq!(crate::common::ports(&made), vec![proxy + 1], "{made}");
    let full = t.pwt(&repo, &["new", "b"]).fails(1);
    assert!(
        full.stderr.contains("no block of 1 free ports"),
        "{}",
        full.stderr
    );
    let low = t.repo("low", Some("[ports]\nrange = [2, 81]\n"));
    let refused = t.pwt(&low, &["new", "a"]).fails(1);
    assert!(
        refused.stderr.contains("ports.range") && refused.stderr.contains("below 1024"),
        "{}",
        refused.stderr
    );
}

#[test]
fn files_whose_names_are_not_utf8_are_brought_like_any_other() {
    use std::os::unix::ffi::OsStrExt as _;
    let t = TestEnv::new();
    let toml = format!("{}[files]\ncopy = [\"*.env\"]\n", seed_toml((28000, 28049)));
    let repo = t.repo("demo", Some(&toml));
    std::fs::write(repo.join(".gitignore"), "*.env\n").expect("ignore");
    t.git(&repo, &["add", ".gitignore"]);
    t.git(&repo, &["commit", "-q", "-m", "ignore"]);
    let name = std::ffi::OsStr::from_bytes(b"lat\xe9.env");
    std::fs::write(repo.join(name), "X=1\n").expect("latin-1 name");
    let made = t.pwt(&repo, &["new", "a", "--format", "json"]).ok().json();
    assert_eq!(
        std::fs::read(path_of(&made).join(name)).expect("copied"),
        b"X=1\n"
    );
}

#[test]
fn port_claims_of_repositories_that_are_gone_are_released() {
    // A scratch clone with a registry of its own (an agent's, a CI job's) that is deleted
    // whole, while another user of the machine works on.
    let scratch = TestEnv::new();
    let here = TestEnv::new();
    let machine = here.root().join("machine");
    let gone = scratch.repo("gone", Some(&seed_toml((28050, 28099))));
    let mut new = scratch.cmd(&gone, &["new", "a"]);
    new.env("PWT_MACHINE_DIR", &machine);
    crate::common::Run::from(new.output().expect("pwt")).ok();
    let claims = machine.join("ports");
    let count = || std::fs::read_dir(&claims).map_or(0, |d| d.count());
    assert_eq!(count(), 2);
    let repo = here.repo("here", Some(&seed_toml((28050, 28099))));
    // While its registry is there, a repository only away keeps its claims.
    std::fs::rename(&gone, scratch.root().join("away")).expect("move it away");
    let gc = here
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    assert!(!gc["done"].to_string().contains("port claim"), "{gc}");
    assert_eq!(count(), 2);
    std::fs::remove_dir_all(scratch.root()).expect("delete the scratch clone and its registry");
    let gc = here
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    assert!(
        gc["done"].to_string().contains("released 2 port claim"),
        "{gc}"
    );
    assert_eq!(count(), 0);
}

#[test]
fn an_env_of_pwt_names_needs_no_approval_and_one_programs_act_on_says_what_it_is() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[env]\nFEATURE = \"{{ slug }}\"\nCOMPOSE_PROJECT_NAME = \"{{ project }}-{{ slug }}\"\n"),
    );
    let run = |args: &[&str]| -> crate::common::Run {
        let mut c = t.cmd(&repo, args);
        c.env_remove("PWT_TRUST_HOOKS");
        c.output().expect("pwt").into()
    };
    run(&["new", "a"]).ok();
    // Whatever a name or value looks like, what pwt does not set itself needs approval:
    // a plain-looking value runs code through the right name.
    for extra in [
        "BASH_ENV = \"{{ slug }}\"",
        "PS0 = \"{{ project }}\"",
        "PSQLRC = \"psqlrc\"",
        "TAR_OPTIONS = \"-P\"",
        "HISTFILESIZE = \"0\"",
        "REDIS_DB = \"0\"",
        "FEATURE_NAME = \"{{ slug }}\"",
        "COMPOSE_PROJECT_NAME = \"{{ project }}\"",
    ] {
        std::fs::write(
            repo.join("pwt.toml"),
            format!("[env]\nFEATURE = \"{{{{ slug }}}}\"\n{extra}\n"),
        )
        .expect("toml");
        let refused = run(&["new", "b"]);
        assert_ne!(refused.code, 0, "{extra}");
        let name = extra.split(' ').next().expect("name");
        assert!(
            refused
                .stderr
                .contains("would set variables that every shell")
                && refused.stderr.contains(&format!("[env] {name} ="))
                && !refused.stderr.contains("[env] FEATURE ="),
            "{extra}: {}",
            refused.stderr
        );
    }
    // A project name is a name, not a command line.
    std::fs::write(repo.join("pwt.toml"), "project = \"$(touch x)\"\n").expect("toml");
    let bad = run(&["new", "c"]);
    assert!(
        bad.stderr.contains("is not a project name"),
        "{}",
        bad.stderr
    );
}

#[test]
fn hook_output_never_lands_in_the_summary_or_the_json() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[hooks]\npost-create = [\"echo installing packages\"]\n",
        seed_toml((28100, 28149))
    );
    let repo = t.repo("demo", Some(&toml));
    let json = t.pwt(&repo, &["new", "a", "--format", "json"]).ok();
    json.json();
    let plain = t.pwt(&repo, &["new", "b"]).ok();
    assert!(!plain.stdout.contains("installing"), "{}", plain.stdout);
    assert!(
        plain.stderr.contains("installing packages"),
        "{}",
        plain.stderr
    );
}

#[test]
fn a_repository_or_another_repositorys_worktree_inside_a_worktree_stops_its_removal() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((28150, 28199))));
    std::fs::write(repo.join(".gitignore"), "node_modules/\n").expect("ignore");
    t.git(&repo, &["add", ".gitignore"]);
    t.git(&repo, &["commit", "-q", "-m", "ignore"]);
    let other = t.repo("other", None);
    for (branch, how) in [("a", "clone"), ("b", "worktree")] {
        let root = path_of(
            &t.pwt(&repo, &["new", branch, "--format", "json"])
                .ok()
                .json(),
        );
        let inner = root.join("node_modules/dep");
        std::fs::create_dir_all(root.join("node_modules")).expect("mkdir");
        match how {
            "clone" => {
                t.git(
                    &root,
                    &[
                        "clone",
                        "-q",
                        &other.display().to_string(),
                        &inner.display().to_string(),
                    ],
                );
            }
            _ => {
                t.git(
                    &other,
                    &[
                        "worktree",
                        "add",
                        "-q",
                        "-b",
                        "x",
                        &inner.display().to_string(),
                    ],
                );
            }
        }
        std::fs::write(inner.join("work.txt"), "mine\n").expect("work");
        let rm = t.pwt(&repo, &["rm", branch, "--force"]).fails(3);
        assert!(
            rm.stderr.contains("node_modules/dep"),
            "{how}: {}",
            rm.stderr
        );
        assert!(inner.join("work.txt").exists(), "{how}");
    }
}

#[test]
fn a_resumed_removal_never_deletes_a_directory_made_again_at_the_path() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((28200, 28249))));
    let root = path_of(&t.pwt(&repo, &["new", "k1", "--format", "json"]).ok().json());
    let mut rm = t.cmd(&repo, &["rm", "k1", "--force"]);
    rm.env("PWT_FAULT", "after-mark-removing:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut rm = rm.spawn().expect("spawn");
    wait_until("removing", || t.registry().to_string().contains("removing"));
    let _ = rm.kill();
    let _ = rm.wait();
    std::fs::remove_dir_all(&root).expect("rm -rf");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("thesis.txt"), "years\n").expect("work");
    let gc = t.pwt(&repo, &["gc", "--yes"]);
    assert!(
        root.join("thesis.txt").exists(),
        "{}{}",
        gc.stdout,
        gc.stderr
    );
}

#[test]
fn hooks_skipped_on_a_set_up_that_waits_for_them_stay_pending() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[hooks]\npost-create = [\"touch .hooked\"]\n",
        seed_toml((28250, 28299))
    );
    let repo = t.repo("demo", Some(&toml));
    std::fs::write(repo.join(".gitignore"), ".hooked\n").expect("ignore");
    t.git(&repo, &["add", ".gitignore"]);
    t.git(&repo, &["commit", "-q", "-m", "ignore"]);
    let mut new = t.cmd(&repo, &["new", "h"]);
    new.env("PWT_FAULT", "after-env-files:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut new = new.spawn().expect("spawn");
    let root = repo.parent().expect("parent").join("demo.h");
    wait_until("the env file", || root.join(".env.worktree").exists());
    std::thread::sleep(Duration::from_millis(200));
    let _ = new.kill();
    let _ = new.wait();
    t.pwt(&repo, &["up", "h", "--no-hooks"]).ok();
    assert!(!root.join(".hooked").exists());
    t.pwt(&repo, &["up", "h"]).ok();
    assert!(root.join(".hooked").exists(), "the hooks never ran");
}

#[test]
fn what_pwt_suggests_to_paste_names_the_worktree_and_runs_nothing() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((28300, 28349))));
    t.pwt(&repo, &["new", "feat/x"]).ok();
    // `feat-x` is another branch's name and this one's slug: the hint names the branch.
    let made = t.pwt(&repo, &["new", "feat-x"]).ok();
    assert!(made.stdout.contains("`pwt rm feat-x`"), "{}", made.stdout);
    let first = t.pwt(&repo, &["list", "--format", "json"]).ok();
    assert!(first.stdout.contains("feat/x"));
    let out = t.pwt(&repo, &["new", "q/$(id)"]).ok();
    assert!(out.stdout.contains("`pwt rm 'q/$(id)'`"), "{}", out.stdout);
    // A committed worktree.path that a shell would read as more than a word is refused.
    let evil = t.repo(
        "evil",
        Some("[worktree]\npath = \"../{{ repo }}.$(touch${IFS}x)-{{ slug }}\"\n"),
    );
    let refused = t.pwt(&evil, &["new", "a"]).fails(2);
    assert!(
        refused.stderr.contains("characters a shell would read"),
        "{}",
        refused.stderr
    );
}
