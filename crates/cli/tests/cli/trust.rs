//! Hooks you trusted: the commands of a committed pwt.toml run only once approved on this
//! machine, asked again when they change.

use std::path::{Path, PathBuf};

use crate::common::{Run, TestEnv};

fn pwt(t: &TestEnv, dir: &Path, args: &[&str]) -> Run {
    t.cmd(dir, args)
        .env_remove("PWT_TRUST_HOOKS")
        .output()
        .expect("pwt")
        .into()
}

#[test]
fn a_fresh_clones_hooks_run_only_once_approved_and_again_when_changed() {
    let t = TestEnv::new();
    let repo = t.repo(
        "demo",
        Some("[hooks]\npost-create = [\"touch ran-by-hook\"]\n"),
    );
    let refused = pwt(&t, &repo, &["new", "a"]).fails(4);
    assert!(
        refused.stderr.contains("touch ran-by-hook"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("pwt trust"), "{}", refused.stderr);
    assert!(
        t.git(&repo, &["branch", "--list", "a"]).trim().is_empty(),
        "nothing was done"
    );
    assert!(!t.root().join("demo.a").exists());
    let show = pwt(&t, &repo, &["trust", "--show"]).ok();
    assert!(show.stdout.contains("not approved"), "{}", show.stdout);
    pwt(&t, &repo, &["trust"]).ok();
    let made = pwt(&t, &repo, &["new", "a", "--format", "json"])
        .ok()
        .json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    assert!(dir.join("ran-by-hook").exists(), "the approved hook ran");
    // The commands change: asked again.
    std::fs::write(
        repo.join("pwt.toml"),
        "[hooks]\npost-create = [\"touch ran-by-hook\", \"touch and-this\"]\n",
    )
    .expect("edit");
    let again = pwt(&t, &repo, &["new", "b"]).fails(4);
    assert!(again.stderr.contains("touch and-this"), "{}", again.stderr);
    // Automation says yes for this run; --no-hooks needs no approval.
    pwt(&t, &repo, &["new", "b", "--yes"]).ok();
    pwt(&t, &repo, &["new", "c", "--no-hooks"]).ok();
    assert!(!t.root().join("demo.c").join("ran-by-hook").exists());
    // Withdrawn: refused again.
    pwt(&t, &repo, &["trust"]).ok();
    pwt(&t, &repo, &["trust", "--revoke"]).ok();
    pwt(&t, &repo, &["new", "d"]).fails(4);
}

#[test]
fn an_approval_covers_one_repository_and_the_env_its_commands_run_with() {
    let t = TestEnv::new();
    let toml = "[hooks]\npost-create = [\"git status --short\"]\n";
    let repo = t.repo("demo", Some(toml));
    pwt(&t, &repo, &["trust"]).ok();
    pwt(&t, &repo, &["new", "a"]).ok();
    // The same commands with an [env] that turns `git status` into anything: asked again.
    std::fs::write(
        repo.join("pwt.toml"),
        format!("{toml}[env]\nGIT_CONFIG_COUNT = \"1\"\nGIT_CONFIG_KEY_0 = \"core.fsmonitor\"\nGIT_CONFIG_VALUE_0 = \"touch pwned; false\"\n"),
    )
    .expect("edit");
    let again = pwt(&t, &repo, &["new", "b"]).fails(4);
    assert!(
        again.stderr.contains("GIT_CONFIG_VALUE_0"),
        "{}",
        again.stderr
    );
    // Another repository with the very text approved here: its own approval is needed.
    let other = t.repo("other", Some(toml));
    pwt(&t, &other, &["new", "c"]).fails(4);
}

#[test]
fn a_committed_pwt_toml_cannot_put_files_outside_the_worktree() {
    let t = TestEnv::new();
    // worktree.path from the repository's file: confined beside the main worktree.
    for (name, path) in [("demo", "../home/.config/git"), ("proj", "../bin")] {
        let repo = t.repo(name, Some(&format!("[worktree]\npath = \"{path}\"\n")));
        let out = pwt(&t, &repo, &["new", "a"]).fails(2);
        assert!(
            out.stderr.contains("will not check a branch out there"),
            "{}",
            out.stderr
        );
    }
    assert!(!t.home().join(".config/git").exists() && !t.root().join("bin").exists());
    // Beside it under its own name, or inside it: fine.
    let ok = t.repo(
        "fine",
        Some("[worktree]\npath = \"../fine-worktrees/{{ slug }}\"\n"),
    );
    pwt(&t, &ok, &["new", "a", "--no-hooks"]).ok();
    // A port's variable cannot be a name programs take a path from.
    let ports = t.repo(
        "ports",
        Some("[ports.services]\napp = { env = \"GIT_CONFIG_GLOBAL\", main = 3000 }\n"),
    );
    let out = pwt(&t, &ports, &["new", "a"]).fails(1);
    assert!(out.stderr.contains("PORT in its name"), "{}", out.stderr);
    // An env file name that a tracked link turns into a path elsewhere.
    let victim = t.root().join("victim");
    std::fs::create_dir_all(&victim).expect("victim");
    let linked = t.repo("linked", Some("[files]\ndotenv = \"conf/.bash_profile\"\n"));
    std::os::unix::fs::symlink(&victim, linked.join("conf")).expect("link");
    t.git(&linked, &["add", "conf"]);
    t.git(&linked, &["commit", "-q", "-m", "link"]);
    let out = pwt(&t, &linked, &["new", "b"]).fails(3);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert!(
        !victim.join(".bash_profile").exists(),
        "written through the link"
    );
}

#[test]
fn an_env_from_the_repository_is_approved_before_pwt_writes_it_for_direnv_and_mise() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some("[env]\nBASH_ENV = \"./payload.sh\"\n"));
    let out = pwt(&t, &repo, &["new", "a", "--no-hooks"]).fails(4);
    assert!(out.stderr.contains("BASH_ENV"), "{}", out.stderr);
    assert!(!t.root().join("demo.a").exists());
    // Nor does `pwt run` or `pwt env` hand it out unapproved.
    pwt(&t, &repo, &["run", "--", "true"]).fails(4);
    pwt(&t, &repo, &["env", "--format", "sh"]).fails(4);
    pwt(&t, &repo, &["trust"]).ok();
    pwt(&t, &repo, &["new", "a"]).ok();
    let env = pwt(&t, &repo, &["env", "a", "--format", "sh"]).ok();
    assert!(env.stdout.contains("BASH_ENV"), "{}", env.stdout);
    // Removing writes no env file: nothing to approve for it.
    pwt(&t, &repo, &["trust", "--revoke"]).ok();
    pwt(&t, &repo, &["rm", "a"]).ok();
}
