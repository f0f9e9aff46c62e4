//! Hostile branch names are valid git: they must give valid, distinct names and run nothing.

use std::collections::HashSet;

use crate::common::{TestEnv, dotenv};

#[test]
fn hostile_branch_names_give_valid_distinct_slugs_and_run_nothing() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let nfc = "f\u{e9}at/\u{fc}n\u{ef}";
    let nfd = "fe\u{301}at/u\u{308}ni\u{308}";
    let long_a = format!("{}/{}", "p".repeat(70), "a".repeat(229));
    let long_b = format!("{}/{}", "p".repeat(70), "b".repeat(229));
    let names = [
        "feat/x\";DROP_DATABASE_prod;--",
        "feat/$(touch${IFS}pwned)",
        "feat/`touch${IFS}pwned2`",
        "feat/x'y",
        "FEAT/X",
        "feat/x",
        "feat-x",
        "feat_x",
        nfc,
        nfd,
        "🚀",
        &long_a,
        &long_b,
        "postgres",
        "template1",
        "Main",
    ];
    let mut slugs = HashSet::new();
    for name in names {
        let v = t.pwt(&repo, &["new", name, "--format", "json"]).ok().json();
        let slug = v["slug"].as_str().expect("slug").to_owned();
        assert!(
            !slug.is_empty()
                && slug.len() <= 40
                && slug
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name:?} -> {slug:?}"
        );
        assert!(
            slugs.insert(slug.clone()),
            "{name:?} got a taken slug {slug}"
        );
        let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
        assert_eq!(
            root.parent(),
            repo.parent(),
            "{name:?} put its worktree elsewhere"
        );
        // A `${…}` python-dotenv would expand: no spelling carries it (readers.rs).
        if !name.contains('\'') && !name.contains("${") {
            assert_eq!(dotenv(&root.join(".env.worktree"))["PWT_BRANCH"], name);
        }
        assert_eq!(
            t.git(&root, &["rev-parse", "--abbrev-ref", "HEAD"]).trim(),
            name
        );
    }
    assert_ne!(slugs.len(), 0);
    assert!(
        !slugs.contains("main"),
        "the main worktree's slug was handed out"
    );
    for dir in [
        repo.clone(),
        repo.parent().expect("parent").to_owned(),
        t.home(),
    ] {
        assert!(
            !dir.join("pwned").exists() && !dir.join("pwned2").exists(),
            "a branch name was executed"
        );
    }
    // A hostile name reaches hooks only as a value.
    let out = t
        .pwt(
            &repo,
            &[
                "run",
                "feat/$(touch${IFS}pwned)",
                "--",
                "sh",
                "-c",
                "printf %s \"$PWT_BRANCH\"",
            ],
        )
        .ok();
    assert_eq!(out.stdout, "feat/$(touch${IFS}pwned)");
}

#[test]
fn path_like_and_option_like_names_are_refused_clearly() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    for (name, reason) in [
        ("../../etc", "contains '..'"),
        ("/abs", "starts or ends with '/'"),
        (".git", "starts with '.'"),
        ("a b", "contains a space"),
    ] {
        let err = t.pwt(&repo, &["new", name]).fails(2).stderr;
        assert!(
            err.contains("invalid branch name") && err.contains(reason),
            "{name}: {err}"
        );
    }
    let err = t.pwt(&repo, &["new", "-rf"]).fails(2).stderr;
    assert!(err.contains("unexpected argument"), "{err}");
    assert!(
        !t.state_dir().join("registry.json").exists(),
        "a refused name changed the registry"
    );
}

#[test]
fn corrupt_registry_is_refused_and_left_as_it_was() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    t.pwt(&repo, &["new", "a"]).ok();
    let file = t.state_dir().join("registry.json");
    let good = std::fs::read(&file).expect("registry");
    for bad in [
        good[..good.len() / 2].to_vec(),
        Vec::new(),
        b"{\"version\": 7, \"leases\": []}".to_vec(),
    ] {
        std::fs::write(&file, &bad).expect("write");
        for args in [
            &["new", "b"][..],
            &["rm", "a"],
            &["up", "a"],
            &["gc", "--yes"],
        ] {
            let err = t.pwt(&repo, args).fails(1).stderr;
            assert!(err.contains("untouched"), "{args:?}: {err}");
            assert_eq!(
                std::fs::read(&file).expect("registry"),
                bad,
                "{args:?} changed the registry"
            );
        }
        assert!(!repo.parent().expect("parent").join("demo.b").exists());
    }
}

#[test]
fn doctor_finds_a_corrupt_registry_and_rebuild_recovers_the_leases() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let a = t.pwt(&repo, &["new", "a", "--format", "json"]).ok().json();
    t.pwt(&repo, &["doctor"]).ok();
    let file = t.state_dir().join("registry.json");
    std::fs::write(&file, b"{\"version\": 1, \"leases\": [").expect("truncate");
    let out = t.pwt(&repo, &["doctor"]).fails(1).stdout;
    assert!(
        out.contains("corrupt") && out.contains("--rebuild"),
        "{out}"
    );
    let out = t.pwt(&repo, &["doctor", "--rebuild"]).ok().stdout;
    assert!(out.contains("rebuilt the lease of a"), "{out}");
    let moved: Vec<_> = std::fs::read_dir(t.state_dir())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("registry.json.corrupt-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "the corrupt file must be kept");
    let lease = &t.registry()["leases"][0];
    assert_eq!(lease["branch"], "a");
    assert_eq!(lease["ports"]["app"], a["ports"]["app"]["port"]);
    // The rebuilt lease is pwt's again: up accepts its files, rm removes it.
    t.pwt(&repo, &["up", "a"]).ok();
    t.pwt(&repo, &["rm", "a"]).ok();
}

/// Commands suggested in hints quote a hostile branch name, so pasting them runs nothing.
#[test]
fn hints_quote_hostile_branch_names() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let name = "feat/$(touch${IFS}pwned)";
    let v = t.pwt(&repo, &["new", name, "--format", "json"]).ok().json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    std::fs::write(root.join("f"), "x").expect("write");
    t.git(&root, &["add", "f"]);
    t.git(&root, &["commit", "-q", "-m", "unmerged work"]);
    let out = t.pwt(&repo, &["rm", name, "--delete-branch"]).ok();
    assert!(
        out.stderr
            .contains("`git branch -D 'feat/$(touch${IFS}pwned)'`"),
        "{}",
        out.stderr
    );
    let new = t.pwt(&repo, &["new", "feat/x"]).ok().stdout;
    assert!(new.contains("`pwt rm feat/x`"), "{new}");
}

/// A path need not be UTF-8. A directory inside a worktree with such a name names that
/// worktree on the command line; a worktree at such a path is refused before anything is
/// made (its registry entry and env files hold text), never a panic.
#[test]
fn paths_that_are_not_utf8_name_worktrees_and_are_refused_as_one() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let bad = t.root().join(OsStr::from_bytes(b"demo.lat\xe9"));
    let mut cmd = t.cmd(&repo, &["new", "latin"]);
    let out = cmd.arg("--path").arg(&bad).output().expect("pwt runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not UTF-8"), "{stderr}");
    assert!(!bad.exists(), "the worktree stayed");
    assert!(t.git(&repo, &["branch", "--list", "latin"]).is_empty());
    let v = t
        .pwt(&repo, &["new", "feat", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    let inside = root.join(OsStr::from_bytes(b"sub\xe9"));
    std::fs::create_dir(&inside).expect("mkdir");
    let out = t
        .cmd(&repo, &["env"])
        .arg(&inside)
        .output()
        .expect("pwt runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("PWT_BRANCH='feat'"));
}

/// `pwt rm NAME` where NAME is no branch or slug but a directory inside the worktree pwt runs
/// in removes nothing (a mistyped branch must never mean "the worktree I stand in"); a path
/// to a directory inside a worktree is refused as usage; the root itself, as `.`, goes.
#[test]
fn a_directory_inside_a_worktree_is_no_name_for_removing_it() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let v = t
        .pwt(&repo, &["new", "busy", "--format", "json"])
        .ok()
        .json();
    let root = std::path::PathBuf::from(v["path"].as_str().expect("path"));
    std::fs::create_dir(root.join("docs")).expect("mkdir");
    let out = t.pwt(&root, &["rm", "docs"]).ok();
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    let out = t.pwt(&root, &["rm", "./docs"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("`pwt rm busy`"), "{}", out.stderr);
    let out = t.pwt(&root.join("docs"), &["rm", "."]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // A lone name that is a port's name means that port, whatever directory has its name.
    let url = t.pwt(&root, &["url", "app"]).ok().stdout;
    std::fs::create_dir(root.join("app")).expect("mkdir");
    assert_eq!(t.pwt(&root, &["url", "app"]).ok().stdout, url);
    assert!(root.exists(), "the worktree went");
    t.pwt(&root, &["rm", "."]).ok();
    assert!(!root.exists());
}

/// A worktree git made at a path that is not UTF-8 is seen (listed, named in doctor) and
/// refused as one pwt cannot manage, before anything is made; a repository at such a path
/// too, leaving no port claim.
#[test]
fn worktrees_and_repositories_at_paths_that_are_not_utf8_are_refused_before_anything_is_made() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let bad = t.root().join(OsStr::from_bytes(b"demo.x\xe9"));
    let mut git = std::process::Command::new("git");
    t.sandbox.git_env(&mut git);
    let status = git
        .current_dir(&repo)
        .args(["worktree", "add", "-q", "-b", "b2"])
        .arg(&bad)
        .status()
        .expect("git runs");
    assert!(status.success());
    let list = t.pwt(&repo, &["list"]).ok().stdout;
    assert!(list.contains("b2") && list.contains("unmanaged"), "{list}");
    for args in [&["up", "b2"][..], &["new", "b2"]] {
        let out = t.pwt(&repo, args);
        assert_ne!(out.code, 0, "{args:?}");
        assert!(out.stderr.contains("not UTF-8"), "{args:?}: {}", out.stderr);
    }
    assert_eq!(t.pwt(&bad, &["up"]).code, 2);
    let registry = std::fs::read_to_string(t.state_dir().join("registry.json")).unwrap_or_default();
    assert!(!registry.contains("b2"), "{registry}");
    let other = t.root().join(OsStr::from_bytes(b"r\xe9"));
    std::fs::create_dir(&other).expect("mkdir");
    t.git(&other, &["init", "-q"]);
    t.git(&other, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let out = t.pwt(&other, &["new", "nx"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let claims = t.root().join("machine/ports");
    let left = std::fs::read_dir(&claims).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a port claim stayed in {}", claims.display());
}

/// A worktree moved with `git worktree move` is followed when named by its new path (or
/// when pwt runs in it): its env files go there, never to the old path; `pwt rm` of its
/// branch checks the moved worktree for work before anything goes (it used to drop the
/// data and leave the worktree). A name that is a branch without a worktree names that
/// branch, never the worktree a directory of that name is.
#[test]
fn moved_worktrees_are_followed_and_branch_names_win_over_directories() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let parent = repo.parent().expect("parent").to_owned();
    t.pwt(&repo, &["new", "moved"]).ok();
    let to = parent.join("moved-here");
    t.git(
        &repo,
        &["worktree", "move", "../demo.moved", "../moved-here"],
    );
    let v = t.pwt(&to, &["up", "--format", "json"]).ok().json();
    assert_eq!(v["path"].as_str(), to.to_str());
    assert!(to.join(".env.worktree").is_file());
    assert!(
        !parent.join("demo.moved").exists(),
        "the old path came back"
    );
    t.pwt(&repo, &["new", "gone"]).ok();
    let to = parent.join("gone-here");
    t.git(&repo, &["worktree", "move", "../demo.gone", "../gone-here"]);
    std::fs::write(to.join("important.txt"), "mine\n").expect("write");
    assert_eq!(t.pwt(&repo, &["rm", "gone"]).code, 3);
    assert!(to.join("important.txt").is_file());
    t.pwt(&repo, &["rm", "gone", "--force"]).ok();
    assert!(!to.exists());
    t.git(&repo, &["branch", "bar"]);
    t.pwt(&repo, &["new", "foo", "--path", "bar"]).ok();
    let out = t.pwt(&repo, &["rm", "bar"]).ok();
    assert!(out.stdout.contains("nothing to do"), "{}", out.stdout);
    assert!(repo.join("bar").is_dir(), "foo's worktree went");
}

/// Git's word on where a branch is checked out wins over the path a lease records: when a
/// leased worktree moved and another took its old path (or two swapped), `pwt rm` of the
/// moved one checks and removes the moved one, never the worktree now at the old path,
/// and what is named by the old path is the branch git shows there.
#[test]
fn a_worktree_at_a_leases_old_path_is_never_taken_for_the_lease() {
    let t = TestEnv::new();
    let repo = t.repo("demo", None);
    let parent = repo.parent().expect("parent").to_owned();
    t.pwt(&repo, &["new", "a"]).ok();
    t.git(&repo, &["worktree", "move", "../demo.a", "../moved-a"]);
    t.git(
        &repo,
        &["worktree", "add", "-q", "-b", "other", "../demo.a"],
    );
    let precious = parent.join("demo.a/precious.txt");
    std::fs::write(&precious, "mine\n").expect("write");
    let env = t.pwt(&parent.join("moved-a"), &["env"]).ok().stdout;
    assert!(env.contains("PWT_BRANCH='a'"), "{env}");
    t.pwt(&repo, &["rm", "a", "--force"]).ok();
    assert!(precious.is_file(), "the other worktree's work went");
    assert!(
        !parent.join("moved-a").exists(),
        "the moved worktree stayed"
    );
    // Two leased worktrees swapped: each is found where git shows its branch.
    t.pwt(&repo, &["new", "x"]).ok();
    t.pwt(&repo, &["new", "y"]).ok();
    t.git(&repo, &["worktree", "move", "../demo.x", "../swap"]);
    t.git(&repo, &["worktree", "move", "../demo.y", "../demo.x"]);
    t.git(&repo, &["worktree", "move", "../swap", "../demo.y"]);
    let v = t
        .pwt(&parent.join("demo.x"), &["status", "--format", "json"])
        .ok()
        .json();
    assert_eq!(v["worktree"]["branch"], "y");
    std::fs::write(parent.join("demo.x/work.txt"), "y's\n").expect("write");
    t.pwt(&repo, &["rm", "x"]).ok();
    assert!(
        parent.join("demo.x/work.txt").is_file(),
        "y's worktree went"
    );
    assert!(!parent.join("demo.y").exists());
    // A worktree made at a moved worktree's old path is set up as itself.
    t.pwt(&repo, &["new", "m"]).ok();
    t.git(&repo, &["worktree", "move", "../demo.m", "../m-moved"]);
    t.git(&repo, &["worktree", "add", "-q", "-b", "d", "../demo.m"]);
    let v = t
        .pwt(&parent.join("demo.m"), &["up", "--format", "json"])
        .ok()
        .json();
    assert_eq!(v["branch"], "d");
    // A branch renamed in place, and a new worktree for the old name: no move. The data
    // the renamed worktree still names is never dropped unasked.
    t.pwt(&repo, &["new", "z"]).ok();
    let port = t.pwt(&repo, &["url", "z"]).ok().stdout;
    let z = parent.join("demo.z");
    t.git(&z, &["branch", "-m", "z", "zr"]);
    t.git(&repo, &["worktree", "add", "-q", "-b", "z", "../z-new"]);
    let gc = t.pwt(&repo, &["gc", "--dry-run"]).ok().stdout;
    assert!(!gc.contains("follow it"), "{gc}");
    assert_eq!(t.pwt(&repo, &["rm", "z"]).code, 3);
    assert!(z.join(".env.worktree").is_file() && parent.join("z-new").is_dir());
    // The new worktree cannot take the lease; the renamed one takes it under its new name.
    assert_eq!(t.pwt(&parent.join("z-new"), &["up"]).code, 1);
    std::fs::remove_file(z.join(".env.worktree")).expect("rm");
    assert_eq!(
        t.pwt(&repo, &["rm", "z"]).code,
        3,
        "its env files gone, its data may be in use"
    );
    t.pwt(&z, &["up"]).ok();
    let v = t.pwt(&z, &["status", "--format", "json"]).ok().json();
    assert_eq!(v["worktree"]["branch"], "zr");
    assert_eq!(
        t.pwt(&repo, &["url", "zr"]).ok().stdout,
        port,
        "its port moved"
    );
    t.pwt(&repo, &["rm", "zr"]).ok();
    assert!(!z.exists() && parent.join("z-new").is_dir());
    // Moved and renamed, then a new worktree for the old name: `pwt up OLDNAME` does not
    // hand it the lease.
    t.pwt(&repo, &["new", "mr"]).ok();
    t.git(&repo, &["worktree", "move", "../demo.mr", "../mr-moved"]);
    t.git(&parent.join("mr-moved"), &["branch", "-m", "mr", "mr2"]);
    t.git(&repo, &["worktree", "add", "-q", "-b", "mr", "../mr-new"]);
    assert_eq!(t.pwt(&repo, &["up", "mr"]).code, 1);
    assert!(!parent.join("mr-new/.env.worktree").exists());
    assert!(!parent.join("demo.mr").exists(), "the old path came back");
}
