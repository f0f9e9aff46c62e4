//! The architecture table of ARCHITECTURE.md, checked: each crate depends only on
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
        &["clap", "clap_complete", "anyhow", "signal-hook"],
    ),
    (
        "pwt-mcp",
        &["pwt-core"],
        &[
            "clap",
            "clap_complete",
            "anyhow",
            "signal-hook",
            "sqlx",
            "git2",
            "figment",
        ],
    ),
    (
        "pwt-cli",
        &["pwt-core", "pwt-proxy", "pwt-mcp"],
        &["sqlx", "redis", "lapin", "git2", "figment"],
    ),
];

/// What an embedder of the engine must never compile, however deep.
const NEVER_UNDER_THE_ENGINE: &[&str] = &["clap", "clap_complete", "anyhow", "signal-hook"];

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
    // clap belongs to the binary alone (xtask is tooling, outside the table).
    for (package, list) in &deps {
        if package != "pwt-cli" && package != "xtask" && list.iter().any(|d| d == "clap") {
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

/// Every package the engine (`pwt`) compiles, however deep (normal dependencies only).
fn under_the_engine() -> Vec<String> {
    // This machine's platform only: the others' packages are neither built nor fetched.
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id"),
                p["name"].as_str().expect("name"),
            )
        })
        .collect();
    let nodes: BTreeMap<&str, Vec<&str>> = meta["resolve"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let deps = n["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k["kind"].is_null()))
                })
                .map(|d| d["pkg"].as_str().expect("pkg"))
                .collect();
            (n["id"].as_str().expect("id"), deps)
        })
        .collect();
    let root = name_of
        .iter()
        .find(|(_, n)| **n == "pwt")
        .map(|(id, _)| *id)
        .expect("the engine is in the workspace");
    let mut seen = std::collections::BTreeSet::new();
    let mut todo = vec![root];
    while let Some(id) = todo.pop() {
        if seen.insert(id) {
            todo.extend(nodes.get(id).into_iter().flatten().copied());
        }
    }
    seen.into_iter().map(|id| name_of[id].to_owned()).collect()
}

#[test]
fn an_embedder_of_the_engine_compiles_no_part_of_the_binary() {
    let all = under_the_engine();
    assert!(all.len() > 20, "the closure is real: {all:?}");
    let found: Vec<&String> = all
        .iter()
        .filter(|n| NEVER_UNDER_THE_ENGINE.contains(&n.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "the engine compiles {found:?}, the binary's"
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
