//! The architecture table of STYLE.md / ARCHITECTURE.md, checked: each crate depends only on
//! what its row allows. Reads `cargo metadata`, so a new dependency that breaks the layering
//! fails here, not in review.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// (package, pwt crates it may use, registry crates it must not use)
const RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "pwt-core",
        &[],
        &[
            "tokio",
            "git2",
            "sqlx",
            "redis",
            "lapin",
            "hyper",
            "clap",
            "figment",
            "libc",
            "serde_json",
        ],
    ),
    (
        "pwt-alloc",
        &["pwt-core"],
        &[
            "tokio", "sqlx", "redis", "lapin", "hyper", "clap", "figment",
        ],
    ),
    ("pwt-provision", &["pwt-core"], &["clap", "figment", "git2"]),
    (
        "pwt-proxy",
        &["pwt-core"],
        &["clap", "figment", "git2", "sqlx", "redis", "lapin"],
    ),
    (
        "pwt",
        &["pwt-core", "pwt-alloc", "pwt-provision", "pwt-proxy"],
        &[],
    ),
];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

/// Normal (non-dev) dependencies of every workspace member.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().expect("name").to_owned())
                .collect();
            (p["name"].as_str().expect("name").to_owned(), deps)
        })
        .collect()
}

#[test]
fn crates_respect_the_layering_table() {
    let deps = dependencies();
    let mut problems = Vec::new();
    for (package, allowed_pwt, forbidden) in RULES {
        let Some(list) = deps.get(*package) else {
            problems.push(format!("{package} is not in the workspace"));
            continue;
        };
        for d in list {
            if d.starts_with("pwt-") && !allowed_pwt.contains(&d.as_str()) {
                problems.push(format!(
                    "{package} depends on {d}, which its row does not allow"
                ));
            }
            if forbidden.contains(&d.as_str()) {
                problems.push(format!("{package} depends on {d}, which its row forbids"));
            }
        }
    }
    // clap and a Tokio runtime belong to the binary alone (xtask is tooling, outside the table).
    for (package, list) in &deps {
        if package != "pwt" && package != "xtask" && list.iter().any(|d| d == "clap") {
            problems.push(format!(
                "{package} depends on clap; only the binary parses arguments"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn core_does_no_io() {
    let src = workspace_root().join("crates/core/src");
    let mut problems = Vec::new();
    for path in pwt_tests::source::rust_files(&src) {
        let code = pwt_tests::source::code_only(&std::fs::read_to_string(&path).expect("read"));
        let used = pwt_tests::source::use_paths(&code);
        for banned in [
            &["std", "fs"][..],
            &["std", "net"],
            &["std", "process"],
            &["std", "env"],
            &["std", "time"],
            &["tokio"],
        ] {
            let joined = banned.join("::");
            let imported = used
                .iter()
                .any(|u| u == &joined || u.starts_with(&format!("{joined}::")));
            if imported || pwt_tests::source::mentions_path(&code, banned) {
                problems.push(format!("{}: {joined}", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pwt-core must stay free of I/O:\n{}",
        problems.join("\n")
    );
}
