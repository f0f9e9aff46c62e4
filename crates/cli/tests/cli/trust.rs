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
    let refused = pwt(&t, &repo, &["new", "a"]).fails(1);
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
    let again = pwt(&t, &repo, &["new", "b"]).fails(1);
    assert!(again.stderr.contains("touch and-this"), "{}", again.stderr);
    // Automation says yes for this run; --no-hooks needs no approval.
    pwt(&t, &repo, &["new", "b", "--yes"]).ok();
    pwt(&t, &repo, &["new", "c", "--no-hooks"]).ok();
    assert!(!t.root().join("demo.c").join("ran-by-hook").exists());
    // Withdrawn: refused again.
    pwt(&t, &repo, &["trust"]).ok();
    pwt(&t, &repo, &["trust", "--revoke"]).ok();
    pwt(&t, &repo, &["new", "d"]).fails(1);
}
