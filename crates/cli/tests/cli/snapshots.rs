//! What people see, pinned: the human output of the main commands, with the sandbox's
//! paths and the leased ports (which depend on the machine) redacted.

use crate::common::{TestEnv, seed_toml};

/// Replaces the sandbox root with `[ROOT]` and every port of the leased range with `[PORT]`.
fn redact(t: &TestEnv, text: &str) -> String {
    let root = t.root().display().to_string();
    let out = text.replace(&root, "[ROOT]");
    // Per-repository directories under the state directory are named by a hash of the
    // repository's path, which is the sandbox's.
    let dir = "[ROOT]/state/browser/";
    let mut parts = out.split(dir);
    let mut joined = parts.next().unwrap_or_default().to_owned();
    for rest in parts {
        let after = rest.find('/').map_or("", |i| &rest[i..]);
        joined.push_str(&format!("{dir}[REPO]{after}"));
    }
    let out = joined;
    let mut redacted = String::with_capacity(out.len());
    let mut digits = String::new();
    for c in out.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        match digits.parse::<u32>() {
            Ok(n) if digits.len() == 5 && (24000..=24999).contains(&n) => {
                redacted.push_str("[PORT]")
            }
            _ => redacted.push_str(&digits),
        }
        digits.clear();
        if c != '\0' {
            redacted.push(c);
        }
    }
    // Whether something happens to listen on 3000/5000 depends on the machine.
    redacted.replace('●', "○")
}

#[test]
fn human_output() {
    let t = TestEnv::new();
    let repo = t.repo("demo", Some(&seed_toml((24000, 24999))));
    let new = t.pwt(&repo, &["new", "feature/notifications"]).ok();
    insta::assert_snapshot!("new", redact(&t, &new.stdout));
    t.pwt(&repo, &["new", "feature-dashboard"]).ok();
    // The listening column probes real sockets; nothing listens on the leased ports here.
    let list = t.pwt(&repo, &["list"]).ok();
    insta::assert_snapshot!("list", redact(&t, &list.stdout));
    let env = t.pwt(&repo, &["env", "feature/notifications"]).ok();
    insta::assert_snapshot!("env", redact(&t, &env.stdout));
    let root = repo
        .parent()
        .expect("parent")
        .join("demo.feature-notifications");
    std::fs::write(root.join("notes.txt"), "precious\n").expect("write");
    let refused = t.pwt(&repo, &["rm", "feature/notifications"]).fails(3);
    insta::assert_snapshot!("rm_refused", redact(&t, &refused.stderr));
    let bad = t.pwt(&repo, &["new", "../../etc"]).fails(2);
    insta::assert_snapshot!("bad_branch", redact(&t, &bad.stderr));
    let rm = t.pwt(&repo, &["rm", "feature-dashboard"]).ok();
    insta::assert_snapshot!("rm", redact(&t, &rm.stdout));
}
