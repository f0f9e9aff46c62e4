//! new / up / list / env / run / url / rm / gc, as a user runs them.

use std::collections::HashSet;

use crate::common::{TestEnv, dotenv, ports, seed_toml};

#[test]
fn two_worktrees_isolated_then_removed_and_recreated_with_same_ports() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((21000, 21999))));
    let a = t
        .pwt(&repo, &["new", "feature-a", "--format", "json"])
        .ok()
        .json();
    let b = t
        .pwt(&repo, &["new", "feature-b", "--format", "json"])
        .ok()
        .json();
    let all: HashSet<u16> = ports(&a).into_iter().chain(ports(&b)).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|p| (21000..=21999).contains(p)));

    for (v, feature) in [(&a, "feature-a"), (&b, "feature-b")] {
        let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
        assert_eq!(
            root,
            repo.parent()
                .expect("parent")
                .join(format!("demo.{feature}"))
        );
        let env = dotenv(&root.join(".env.worktree"));
        assert_eq!(env["FEATURE"], feature);
        assert_eq!(
            env["FRONTEND_PORT"],
            v["ports"]["frontend"]["port"].to_string()
        );
        assert_eq!(
            env["BACKEND_PORT"],
            v["ports"]["backend"]["port"].to_string()
        );
        let mise = std::fs::read_to_string(root.join(".mise.local.toml")).expect("mise file");
        assert!(mise.contains(&format!("FEATURE = \"{feature}\"")), "{mise}");
        assert_eq!(
            t.git(&root, &["status", "--porcelain"]),
            "",
            "worktree {feature} is dirty"
        );
    }

    let list = t.pwt(&repo, &["list"]).ok().stdout;
    for needle in [
        "feature-a",
        "feature-b",
        "http://feature-a.localhost:8080",
        "main",
    ] {
        assert!(list.contains(needle), "{needle} missing in\n{list}");
    }
    let json = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    assert_eq!(json.as_array().expect("array").len(), 3);

    let rm = t.pwt(&repo, &["rm", "feature-a"]).ok().stdout;
    assert!(rm.contains("removed feature-a"), "{rm}");
    assert!(
        !repo
            .parent()
            .expect("parent")
            .join("demo.feature-a")
            .exists()
    );
    assert_eq!(t.registry()["leases"].as_array().expect("leases").len(), 1);
    // The branch stays unless asked.
    t.git(&repo, &["rev-parse", "--verify", "feature-a"]);

    let again = t
        .pwt(&repo, &["new", "feature-a", "--format", "json"])
        .ok()
        .json();
    assert_eq!(ports(&again), ports(&a));
}

#[test]
fn no_pwt_toml_gives_one_port() {
    let t = TestEnv::new();
    let repo = t.repo("plain", None);
    let v = t.pwt(&repo, &["new", "x", "--format", "json"]).ok().json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    let env = dotenv(&root.join(".env.worktree"));
    assert_eq!(env["PORT"], v["ports"]["app"]["port"].to_string());
    assert_eq!(env["PWT_URL"], "http://x.localhost:8080");
    let url = t.pwt(&root, &["url"]).ok().stdout;
    assert_eq!(url.trim(), format!("http://localhost:{}", env["PORT"]));
    // The main worktree gets the defaults.
    let main = t.pwt(&repo, &["env", "--format", "json"]).ok().json();
    assert_eq!(main["PORT"], "3000");
    assert_eq!(main["FEATURE"], "main");
}

#[test]
fn up_adopts_a_plain_git_worktree_idempotently_and_runs_hooks_once() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[hooks]\npost-create = [\"echo \\\"$FEATURE $FRONTEND_PORT\\\" >> hook.log\"]\n",
        seed_toml((22000, 22999))
    );
    let repo = t.repo("demo", Some(&toml));
    t.git(
        &repo,
        &["worktree", "add", "-q", "-b", "by-hand", "../by-hand"],
    );
    let wt = repo.parent().expect("parent").join("by-hand");
    let first = t.pwt(&wt, &["up", "--format", "json"]).ok().json();
    let env_text = std::fs::read_to_string(wt.join(".env.worktree")).expect("env file");
    let second = t
        .pwt(&repo, &["up", "by-hand", "--format", "json"])
        .ok()
        .json();
    assert_eq!(ports(&first), ports(&second));
    assert_eq!(
        std::fs::read_to_string(wt.join(".env.worktree")).expect("env"),
        env_text
    );
    let log = std::fs::read_to_string(wt.join("hook.log")).expect("hook ran");
    assert_eq!(
        log,
        format!("by-hand {}\n", first["ports"]["frontend"]["port"])
    );
    // hook.log is the user's file, so the worktree has exactly that untracked file.
    assert_eq!(t.git(&wt, &["status", "--porcelain"]), "?? hook.log\n");
}

#[test]
fn edited_env_file_is_never_overwritten_without_force() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t.pwt(&repo, &["new", "x", "--format", "json"]).ok().json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    let file = root.join(".env.worktree");
    std::fs::write(&file, "MINE=1\n").expect("edit");
    let err = t.pwt(&root, &["up"]).fails(3).stderr;
    assert!(
        err.contains(".env.worktree exists and was not written by pwt"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "MINE=1\n");
    t.pwt(&root, &["up", "--force"]).ok();
    assert!(
        std::fs::read_to_string(&file)
            .expect("read")
            .contains("FEATURE='x'")
    );
}

#[test]
fn rm_refuses_dirty_worktrees_and_the_main_one() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t
        .pwt(&repo, &["new", "dirty", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    std::fs::write(root.join("notes.txt"), "precious\n").expect("write");
    let err = t.pwt(&repo, &["rm", "dirty"]).fails(3).stderr;
    assert!(err.contains("uncommitted or untracked changes"), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    assert!(root.join("notes.txt").exists());
    assert!(root.join(".env.worktree").exists());
    assert_eq!(t.registry()["leases"][0]["state"], "ready");
    // A modified tracked file counts too.
    std::fs::remove_file(root.join("notes.txt")).expect("rm");
    std::fs::write(root.join("README"), "changed\n").expect("write");
    t.pwt(&repo, &["rm", "dirty"]).fails(3);
    t.pwt(&repo, &["rm", "dirty", "--force"]).ok();
    assert!(!root.exists());

    let main = t.pwt(&repo, &["rm", "main"]).fails(2).stderr;
    assert!(
        main.contains("refusing to remove the main worktree"),
        "{main}"
    );
    assert!(repo.join("README").exists());
    // Twice is fine.
    let again = t.pwt(&repo, &["rm", "dirty"]).ok().stdout;
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn rm_deletes_the_branch_only_when_asked_and_merged() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    t.pwt(&repo, &["new", "merged"]).ok();
    t.pwt(&repo, &["rm", "merged", "--delete-branch"]).ok();
    assert!(
        !t.git(&repo, &["branch", "--list", "merged"])
            .contains("merged")
    );

    let v = t
        .pwt(&repo, &["new", "unmerged", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    std::fs::write(root.join("f"), "x").expect("write");
    t.git(&root, &["add", "f"]);
    t.git(&root, &["commit", "-q", "-m", "work"]);
    let out = t.pwt(&repo, &["rm", "unmerged", "--delete-branch"]).ok();
    assert!(out.stderr.contains("was kept"), "{}", out.stderr);
    assert!(
        t.git(&repo, &["branch", "--list", "unmerged"])
            .contains("unmerged")
    );
}

#[test]
fn keep_worktree_releases_only_what_pwt_set_up() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t.pwt(&repo, &["new", "kw", "--format", "json"]).ok().json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    t.pwt(&repo, &["rm", "kw", "--keep-worktree"]).ok();
    assert!(root.join("README").exists());
    assert!(!root.join(".env.worktree").exists());
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
}

#[test]
fn gc_releases_leases_of_deleted_worktrees() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t
        .pwt(&repo, &["new", "gone", "--format", "json"])
        .ok()
        .json();
    t.pwt(&repo, &["new", "stays"]).ok();
    std::fs::remove_dir_all(v["path"].as_str().expect("path")).expect("rm -rf");
    let list = t.pwt(&repo, &["list"]).ok().stdout;
    assert!(list.contains("missing"), "{list}");
    let dry = t
        .pwt(&repo, &["gc", "--dry-run", "--format", "json"])
        .ok()
        .json();
    assert_eq!(dry["found"].as_array().expect("found").len(), 1);
    assert_eq!(t.registry()["leases"].as_array().expect("leases").len(), 2);
    let done = t
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    assert_eq!(done["done"], serde_json::json!(["gone"]));
    let leases = t.registry()["leases"].clone();
    assert_eq!(leases.as_array().expect("leases").len(), 1);
    assert_eq!(leases[0]["branch"], "stays");
    assert!(
        t.pwt(&repo, &["gc"])
            .ok()
            .stdout
            .contains("nothing to clean up")
    );
}

#[test]
fn run_exec_and_hooks_get_the_environment() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some("[hooks]\npost-create = [\"exit 7\"]\n"));
    // A failing hook rolls the whole set-up back...
    let out = t.pwt(&repo, &["new", "hooked"]).fails(1).stderr;
    assert!(
        out.contains("post-create hook `exit 7` failed with exit code 7"),
        "{out}"
    );
    assert!(out.contains("rolled back: the worktree"), "{out}");
    assert!(!repo.parent().expect("parent").join("demo.hooked").exists());
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
    assert!(
        t.git(&repo, &["branch", "--list", "hooked"])
            .trim()
            .is_empty()
    );
    // ...unless asked to keep it; then `pwt up` runs the hooks again.
    let out = t
        .pwt(&repo, &["new", "hooked", "--keep-on-failure"])
        .fails(1)
        .stderr;
    assert!(out.contains("it was kept"), "{out}");
    assert!(out.contains("pwt up hooked"), "{out}");
    assert_eq!(t.registry()["leases"][0]["pending_hooks"], true);
    let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    let row = list
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["branch"] == "hooked")
        .cloned();
    assert_eq!(row.expect("row")["hooks_pending"], true);
    let table = t.pwt(&repo, &["list"]).ok().stdout;
    assert!(table.contains("ready, hooks pending"), "{table}");
    let again = t
        .pwt(&repo.parent().expect("parent").join("demo.hooked"), &["up"])
        .fails(1)
        .stderr;
    assert!(again.contains("exit 7"), "{again}");
    let run = t
        .pwt(
            &repo,
            &[
                "run",
                "hooked",
                "--",
                "sh",
                "-c",
                "echo $FEATURE:$PORT; exit 5",
            ],
        )
        .fails(5);
    let port = t.registry()["leases"][0]["ports"]["app"].to_string();
    assert_eq!(run.stdout.trim(), format!("hooked:{port}"));

    let exec = t
        .pwt(
            &repo,
            &[
                "new",
                "agent",
                "--no-hooks",
                "-x",
                "sh",
                "--",
                "-c",
                "pwd; echo $PWT_BRANCH",
            ],
        )
        .ok()
        .stdout;
    assert!(exec.ends_with("demo.agent\nagent\n"), "{exec}");
}

#[test]
fn env_formats() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some("[env]\nQUOTE = \"it's {{ slug }}\"\n"));
    t.pwt(&repo, &["new", "fmt"]).ok();
    let json = t
        .pwt(&repo, &["env", "fmt", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["QUOTE"], "it's fmt");
    let sh = t.pwt(&repo, &["env", "fmt", "--format", "sh"]).ok().stdout;
    assert!(sh.contains("export QUOTE='it'\\''s fmt'"), "{sh}");
    let fish = t
        .pwt(&repo, &["env", "fmt", "--format", "fish"])
        .ok()
        .stdout;
    assert!(fish.contains("set -gx QUOTE 'it\\'s fmt'"), "{fish}");
    let dotenv = t.pwt(&repo, &["env", "fmt"]).ok().stdout;
    assert!(dotenv.contains("QUOTE=\"it's fmt\""), "{dotenv}");
    // bash reads back exactly the value.
    let root = repo.parent().expect("parent").join("demo.fmt");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "set -a; . ./.env.worktree; printf %s \"$QUOTE|$PWT_BRANCH\"",
        ])
        .current_dir(&root)
        .output()
        .expect("bash");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "it's fmt|fmt");
}

#[test]
fn up_follows_a_worktree_moved_with_git() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t.pwt(&repo, &["new", "mv", "--format", "json"]).ok().json();
    let old = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    let new = repo.parent().expect("parent").join("moved-here");
    t.git(
        &repo,
        &[
            "worktree",
            "move",
            &old.display().to_string(),
            &new.display().to_string(),
        ],
    );
    let up = t.pwt(&repo, &["up", "mv", "--format", "json"]).ok().json();
    assert_eq!(up["path"], new.display().to_string());
    assert_eq!(ports(&up), ports(&v), "moving must not change the ports");
    assert_eq!(t.registry()["leases"][0]["path"], new.display().to_string());
    t.pwt(&repo, &["rm", "mv"]).ok();
    assert!(!new.exists());
}

#[test]
fn gc_follows_moved_worktrees_instead_of_releasing_them() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t
        .pwt(&repo, &["new", "mv2", "--format", "json"])
        .ok()
        .json();
    let old = v["path"].as_str().expect("path").to_owned();
    let new = repo.parent().expect("parent").join("elsewhere");
    t.git(
        &repo,
        &["worktree", "move", &old, &new.display().to_string()],
    );
    let doctor = t.pwt(&repo, &["doctor"]).ok().stdout;
    assert!(
        doctor.contains("moved") && doctor.contains("pwt up mv2"),
        "{doctor}"
    );
    let gc = t
        .pwt(&repo, &["gc", "--yes", "--format", "json"])
        .ok()
        .json();
    assert_eq!(gc["done"], serde_json::json!(["mv2"]));
    let lease = &t.registry()["leases"][0];
    assert_eq!(
        lease["path"],
        new.display().to_string(),
        "gc must follow, not release"
    );
}

/// A branch that exists only on a remote is checked out from there, tracking it, as
/// `git worktree add PATH BRANCH` does; it is not branched anew from HEAD.
#[test]
fn new_checks_out_a_remote_only_branch_like_git() {
    let t = TestEnv::new();
    let origin = t.repo("origin", None);
    t.git(&origin, &["branch", "colleague"]);
    t.git(&origin, &["checkout", "-q", "colleague"]);
    t.git(
        &origin,
        &["commit", "-q", "--allow-empty", "-m", "colleague work"],
    );
    t.git(&origin, &["checkout", "-q", "main"]);
    t.git(
        &origin,
        &["commit", "-q", "--allow-empty", "-m", "main moved on"],
    );
    t.git(
        t.root(),
        &["clone", "-q", &origin.display().to_string(), "clone"],
    );
    let clone = t.root().join("clone");
    let v = t
        .pwt(&clone, &["new", "colleague", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    assert_eq!(
        t.git(&root, &["log", "-1", "--format=%s"]).trim(),
        "colleague work"
    );
    assert_eq!(
        t.git(
            &root,
            &["rev-parse", "--abbrev-ref", "colleague@{upstream}"]
        )
        .trim(),
        "origin/colleague"
    );
    // With --base it is a new branch, as asked.
    let v = t
        .pwt(
            &clone,
            &[
                "new",
                "fresh",
                "--base",
                "origin/colleague",
                "--format",
                "json",
            ],
        )
        .ok()
        .json();
    let fresh = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    assert_eq!(
        t.git(&fresh, &["log", "-1", "--format=%s"]).trim(),
        "colleague work"
    );
}

/// The bare-clone layout (`git clone --bare` + worktrees): worktrees go beside the bare
/// directory, the bare repository has no main row, and everything else works as usual.
#[test]
fn bare_repository_layout() {
    let t = TestEnv::new();
    let src = t.repo("src", None);
    t.git(
        t.root(),
        &[
            "clone",
            "-q",
            "--bare",
            &src.display().to_string(),
            "proj.git",
        ],
    );
    let bare = t.root().join("proj.git");
    t.git(&bare, &["worktree", "add", "-q", "../proj.main", "main"]);
    let wt = t.root().join("proj.main");
    let v = t
        .pwt(&wt, &["new", "feat-b", "--format", "json"])
        .ok()
        .json();
    let expected = std::fs::canonicalize(t.root())
        .expect("root")
        .join("proj.feat-b");
    assert_eq!(v["path"], expected.display().to_string());
    let list = t.pwt(&wt, &["list", "--format", "json"]).ok().json();
    let states: Vec<&str> = list
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states, vec!["ready", "unmanaged"], "{list}");
    t.pwt(&wt, &["rm", "feat-b"]).ok();
    assert!(!expected.exists());
}

/// A repository that commits its own `.env.worktree`: pwt will not overwrite it, so `pwt
/// new` refuses (exit 3) and rolls back the worktree, the new branch and the lease.
#[test]
fn a_committed_env_file_is_not_overwritten_and_new_rolls_back() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    std::fs::write(repo.join(".env.worktree"), "MINE=1\n").expect("write");
    t.git(&repo, &["add", ".env.worktree"]);
    t.git(&repo, &["commit", "-q", "-m", "our env"]);
    let out = t.pwt(&repo, &["new", "x"]).fails(3);
    assert!(
        out.stderr.contains("will not overwrite it") && out.stderr.contains("rolled back"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("files.dotenv"),
        "the hint should name the way out: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Deleted branch"),
        "git's chatter leaked: {}",
        out.stderr
    );
    assert!(!repo.parent().expect("parent").join("demo.x").exists());
    assert!(t.git(&repo, &["branch", "--list", "x"]).is_empty());
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
    // Pointing pwt at another file makes it work.
    std::fs::write(repo.join("pwt.toml"), "[files]\ndotenv = \".env.pwt\"\n").expect("write");
    t.git(&repo, &["add", "pwt.toml"]);
    t.git(&repo, &["commit", "-q", "-m", "pwt"]);
    let v = t.pwt(&repo, &["new", "x", "--format", "json"]).ok().json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    assert_eq!(
        std::fs::read_to_string(root.join(".env.worktree")).expect("theirs"),
        "MINE=1\n"
    );
    assert!(root.join(".env.pwt").exists());
    assert_eq!(t.git(&root, &["status", "--porcelain"]), "");
}

/// The second seed's names (Django: POSTGRES_DB, DJANGO_PORT, REDIS_DB) made from pwt's own
/// values with `vars`, so any app's variable names can be produced.
#[test]
fn env_templates_can_use_pwts_variables() {
    let t = TestEnv::new();
    let toml = "[ports.services]\ndjango = { env = \"DJANGO_PORT\", main = 8011 }\n[env]\nVITE_PORT = \"{{ vars.DJANGO_PORT }}\"\nFEATURE_DB = \"{{ slug | db_ident }}\"\nBAD = \"{{ vars.NOPE }}\"\n";
    let repo = t.repo("demo", Some(toml));
    let err = t.pwt(&repo, &["new", "x"]).fails(1).stderr;
    assert!(
        err.contains("env.BAD") && err.contains("vars.<NAME>"),
        "{err}"
    );
    std::fs::write(
        repo.join("pwt.toml"),
        toml.replace("BAD = \"{{ vars.NOPE }}\"\n", ""),
    )
    .expect("write");
    t.pwt(&repo, &["new", "feature/x-y"]).ok();
    let env = t
        .pwt(&repo, &["env", "feature/x-y", "--format", "json"])
        .ok()
        .json();
    assert_eq!(env["VITE_PORT"], env["DJANGO_PORT"]);
    assert_eq!(env["FEATURE_DB"], "feature_x_y");
}

/// A whole repository deleted: its leases keep their ports until `pwt gc --all-repos`
/// (run from any other repository) releases them; doctor points there.
#[test]
fn gc_all_repos_releases_leases_of_deleted_repositories() {
    let t = TestEnv::new();
    let doomed = t.repo("doomed", None);
    let keeper = t.repo("keeper", None);
    t.pwt(&doomed, &["new", "a"]).ok();
    t.pwt(&keeper, &["new", "b"]).ok();
    std::fs::remove_dir_all(&doomed).expect("rm -rf the repository");
    std::fs::remove_dir_all(t.root().join("doomed.a")).expect("and its worktree");
    let doctor = t.pwt(&keeper, &["doctor"]).ok().stdout;
    assert!(
        doctor.contains("no longer exist") && doctor.contains("gc --all-repos"),
        "{doctor}"
    );
    let plain = t
        .pwt(&keeper, &["gc", "--dry-run", "--format", "json"])
        .ok()
        .json();
    assert_eq!(
        plain["found"].as_array().expect("found").len(),
        0,
        "without --all-repos, other repositories are left alone"
    );
    let gc = t
        .pwt(&keeper, &["gc", "--all-repos", "--yes", "--format", "json"])
        .ok()
        .json();
    assert_eq!(gc["done"], serde_json::json!(["a"]));
    let leases = t.registry()["leases"].clone();
    assert_eq!(leases.as_array().expect("leases").len(), 1);
    assert_eq!(leases[0]["branch"], "b");
}

/// `pwt new` runs git's own machinery: the repository's post-checkout hook runs in the new
/// worktree, as with `git worktree add`.
#[test]
fn repository_git_hooks_run_as_with_git_worktree_add() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let hook = repo.join(".git/hooks/post-checkout");
    std::fs::write(
        &hook,
        "#!/bin/sh\necho \"checked out $3\" > .post-checkout-ran\n",
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let v = t
        .pwt(&repo, &["new", "hooked-git", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    assert_eq!(
        std::fs::read_to_string(root.join(".post-checkout-ran")).expect("the hook ran"),
        "checked out 1\n"
    );
}

/// Polls until `port` accepts on 127.0.0.1, for a few seconds.
fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// Waits (up to 10 s) for `child` to end.
fn ended(child: &mut std::process::Child) -> bool {
    for _ in 0..200 {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn rm_keeps_its_word_on_ignored_files_and_stops_what_runs_for_the_worktree() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((27600, 27699))));
    std::fs::write(
        repo.join(".gitignore"),
        "db.sqlite3\n.env.local\nnode_modules/\n",
    )
    .expect("gitignore");
    t.git(&repo, &["add", ".gitignore"]);
    t.git(&repo, &["commit", "-q", "-m", "ignore"]);
    let made = t.pwt(&repo, &["new", "a", "--format", "json"]).ok().json();
    let dir = std::path::PathBuf::from(made["path"].as_str().expect("path"));
    // A hand-edited env file: refused, exit 3, nothing touched.
    let env = dir.join(".env.worktree");
    let mut text = std::fs::read_to_string(&env).expect("env");
    text.push_str("MINE='1'\n");
    std::fs::write(&env, &text).expect("edit");
    let rm = t.pwt(&repo, &["rm", "a"]).fails(3);
    assert!(rm.stderr.contains(".env.worktree"), "{}", rm.stderr);
    t.pwt(&repo, &["up", "a", "--force"]).ok();
    // Ignored files matching files.keep: listed, refused; others (node_modules) are not.
    std::fs::write(dir.join("db.sqlite3"), "data").expect("db");
    std::fs::write(dir.join(".env.local"), "SECRET=1\n").expect("secret");
    std::fs::create_dir_all(dir.join("node_modules/x")).expect("nm");
    std::fs::write(dir.join("node_modules/x/index.js"), "").expect("nm");
    let rm = t.pwt(&repo, &["rm", "a"]).fails(3);
    assert!(
        rm.stderr.contains("db.sqlite3") && rm.stderr.contains(".env.local"),
        "{}",
        rm.stderr
    );
    assert!(!rm.stderr.contains("node_modules"), "{}", rm.stderr);
    assert!(dir.join("db.sqlite3").exists());
    // What runs for it: a server on a leased port (started elsewhere) and a worker inside.
    let port = crate::common::ports(&made)[0];
    let mut server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(t.root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server");
    let mut worker = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(&dir)
        .spawn()
        .expect("worker");
    wait_listening(port);
    let rm = t.pwt(&repo, &["rm", "a", "--force"]).ok();
    assert!(
        rm.stderr.contains(&format!("pid {}", server.id())),
        "{}",
        rm.stderr
    );
    assert!(
        rm.stderr.contains(&format!("pid {}", worker.id())),
        "{}",
        rm.stderr
    );
    assert!(
        ended(&mut server),
        "the server on the leased port still runs"
    );
    assert!(ended(&mut worker), "the worker in the worktree still runs");
    assert!(!dir.exists());
}

#[test]
fn a_new_worktree_gets_the_ignored_files_it_needs_from_the_main_one() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[files]\nlink = [\".venv\"]\ncopy = [\"*.local\"]\n"),
    );
    let w = |rel: &str, text: &str| {
        let p = repo.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w(
        ".gitignore",
        ".env\n*.local\nnode_modules/\ncerts/\n*.log\n.venv/\nescape\n",
    );
    w(
        ".worktreeinclude",
        ".env\nnode_modules/\ncerts/*.pem\nescape\nREADME\n",
    );
    t.git(&repo, &["add", "."]);
    t.git(&repo, &["commit", "-q", "-m", "ignores"]);
    w(".env", "SECRET=s3cr3t\n");
    w("settings.local", "local\n");
    w("node_modules/a/index.js", "module.exports = 1\n");
    std::os::unix::fs::symlink("../a/index.js", repo.join("node_modules/a/link.js")).expect("link");
    w("certs/dev.pem", "PEM\n");
    w("certs/dev.key", "KEY\n");
    w("debug.log", "log\n");
    w(".venv/bin/python", "#!/bin/sh\n");
    std::os::unix::fs::symlink("/etc", repo.join("escape")).expect("link out");
    let made = t.pwt(&repo, &["new", "a", "--format", "json"]).ok();
    let dir = std::path::PathBuf::from(made.json()["path"].as_str().expect("path"));
    let read = |rel: &str| std::fs::read_to_string(dir.join(rel)).ok();
    assert_eq!(read(".env").as_deref(), Some("SECRET=s3cr3t\n"));
    assert_eq!(read("settings.local").as_deref(), Some("local\n"));
    assert_eq!(
        read("node_modules/a/index.js").as_deref(),
        Some("module.exports = 1\n")
    );
    assert_eq!(
        std::fs::read_link(dir.join("node_modules/a/link.js")).expect("a link stays a link"),
        std::path::Path::new("../a/index.js")
    );
    assert_eq!(read("certs/dev.pem").as_deref(), Some("PEM\n"));
    assert_eq!(read("certs/dev.key"), None, "not included");
    assert_eq!(read("debug.log"), None, "ignored but not included");
    assert_eq!(
        std::fs::read_link(dir.join(".venv")).expect("linked"),
        repo.join(".venv")
    );
    assert!(
        dir.join("escape").symlink_metadata().is_err(),
        "a link out of the repository"
    );
    assert!(made.stderr.contains("escape not copied"), "{}", made.stderr);
    // The README is tracked: git brought it, pwt did not copy over it.
    assert_eq!(read("README").as_deref(), Some("hello\n"));
    // The copied secrets are the worktree's now: `pwt rm` will not delete them unasked.
    let rm = t.pwt(&repo, &["rm", "a"]).fails(3);
    assert!(rm.stderr.contains(".env"), "{}", rm.stderr);
    t.pwt(&repo, &["rm", "a", "--force"]).ok();
    assert!(
        repo.join(".venv/bin/python").exists(),
        "the linked original stays"
    );
}

#[test]
fn dev_starts_the_worktrees_processes_list_shows_them_and_stop_and_rm_end_them() {
    let t = TestEnv::new();
    let toml = format!(
        "{}[processes]\nweb = \"exec python3 -m http.server $FRONTEND_PORT --bind 127.0.0.1\"\nonce = \"echo hello from $PWT_BRANCH; exit 7\"\n",
        seed_toml((27700, 27799))
    );
    let repo = t.repo("demo", Some(&toml));
    let made = t
        .pwt(&repo, &["new", "feat/$(x)", "--format", "json"])
        .ok()
        .json();
    let port = made["ports"]["frontend"]["port"].as_u64().expect("port") as u16;
    t.pwt(&repo, &["dev", "feat/$(x)", "--detach"]).ok();
    wait_listening(port);
    let procs = |t: &TestEnv| {
        let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
        list.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["branch"] == "feat/$(x)")
            .map(|r| r["processes"].clone())
            .expect("row")
    };
    let mut once = serde_json::Value::Null;
    for _ in 0..100 {
        let p = procs(&t);
        once = p
            .as_array()
            .expect("procs")
            .iter()
            .find(|p| p["name"] == "once")
            .cloned()
            .expect("once");
        if once["running"] == false {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(once["exit_code"], 7, "{once}");
    let log = std::fs::read_to_string(once["log"].as_str().expect("log")).expect("log");
    assert_eq!(log, "hello from feat/$(x)\n");
    let p = procs(&t);
    let web = p
        .as_array()
        .expect("procs")
        .iter()
        .find(|p| p["name"] == "web")
        .expect("web");
    assert_eq!(web["running"], true, "{p}");
    let busy = t.pwt(&repo, &["dev", "feat/$(x)", "--detach"]).fails(5);
    assert!(busy.stderr.contains("pwt stop"), "{}", busy.stderr);
    let stop = t.pwt(&repo, &["stop", "feat/$(x)"]).ok();
    assert!(stop.stdout.contains("stopped web"), "{}", stop.stdout);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "web still answers"
    );
    // Started again, then `pwt rm` stops it before anything else.
    t.pwt(&repo, &["dev", "feat/$(x)", "--detach"]).ok();
    wait_listening(port);
    let rm = t.pwt(&repo, &["rm", "feat/$(x)"]).ok();
    assert!(rm.stderr.contains("started by `pwt dev`"), "{}", rm.stderr);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "web outlived rm"
    );
}

#[test]
fn dev_in_the_foreground_prefixes_each_line_and_exits_with_the_worst_code() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[processes]\nfirst = \"echo out; echo err >&2; exit 3\"\nsecond = \"echo two\"\n"),
    );
    t.pwt(&repo, &["new", "a"]).ok();
    let run = t.pwt(&repo, &["dev", "a"]).fails(3);
    assert!(run.stdout.contains("first  | out"), "{}", run.stdout);
    assert!(run.stdout.contains("first  | err"), "{}", run.stdout);
    assert!(run.stdout.contains("second | two"), "{}", run.stdout);
    assert!(
        run.stderr.contains("first exited with code 3"),
        "{}",
        run.stderr
    );
}

#[test]
fn files_are_brought_only_inside_the_worktree_and_kept_files_in_ignored_directories_count() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    std::fs::write(repo.join(".gitignore"), "conf/*.ini\nbuild/\n").expect("gitignore");
    std::fs::write(repo.join(".worktreeinclude"), "conf/*.ini\n").expect("include");
    std::fs::create_dir_all(repo.join("conf")).expect("conf");
    std::fs::write(repo.join("conf/tracked"), "t\n").expect("tracked");
    t.git(&repo, &["add", "."]);
    t.git(&repo, &["commit", "-q", "-m", "conf"]);
    // A branch that makes `conf` a link to somewhere else.
    let victim = t.root().join("victim");
    std::fs::create_dir_all(&victim).expect("victim");
    t.git(&repo, &["checkout", "-q", "-b", "evil"]);
    t.git(&repo, &["rm", "-rq", "conf"]);
    std::os::unix::fs::symlink(&victim, repo.join("conf")).expect("link");
    t.git(&repo, &["add", "conf"]);
    t.git(&repo, &["commit", "-q", "-m", "evil"]);
    t.git(&repo, &["checkout", "-q", "main"]);
    std::fs::write(repo.join("conf/app.ini"), "MAINSECRET\n").expect("secret");
    let made = t.pwt(&repo, &["new", "evil"]).ok();
    assert!(
        made.stderr.contains("conf/app.ini not brought"),
        "{}",
        made.stderr
    );
    assert!(
        !victim.join("app.ini").exists(),
        "copied through the branch's link"
    );
    // A kept file inside an ignored directory: refused like one at the top.
    let made = t.pwt(&repo, &["new", "b", "--format", "json"]).ok().json();
    let dir = std::path::PathBuf::from(made["path"].as_str().expect("path"));
    std::fs::create_dir_all(dir.join("build/deep")).expect("build");
    std::fs::write(dir.join("build/deep/.env"), "SECRET=1\n").expect("env");
    let rm = t.pwt(&repo, &["rm", "b"]).fails(3);
    assert!(rm.stderr.contains("build/deep/.env"), "{}", rm.stderr);
}
