//! The shape of the code, checked as ordinary tests (after rust-analyzer's `tidy`): the pwt
//! library never parses arguments, prints or reads the environment; its modules import each
//! other without a cycle; no function outside tests is longer than 80 lines.
//!
//! The sources are read as tokens (`pwt_tests::source`), never as substrings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pwt_tests::source::{calls_macro, code_only, functions, mentions_path, rust_files, use_paths};

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
}

/// The engine (package `pwt`): everything under `crates/engine/src`.
fn library_files() -> Vec<PathBuf> {
    rust_files(&workspace_root().join("crates/engine/src"))
}

#[test]
fn the_library_never_parses_arguments_prints_or_reads_the_environment() {
    let mut problems = Vec::new();
    let files = library_files();
    assert!(
        files.len() > 10,
        "the library's files were not found: {files:?}"
    );
    for path in files {
        let code = code_only(&std::fs::read_to_string(&path).expect("read"));
        let name = path
            .strip_prefix(workspace_root())
            .unwrap_or(&path)
            .display()
            .to_string();
        // Configuration layering is the engine's, in one module.
        let config = path.ends_with("config.rs");
        for p in use_paths(&code) {
            let first = p.split("::").next().unwrap_or_default();
            if ["clap", "clap_complete", "signal_hook", "anyhow"].contains(&first)
                || (first == "figment" && !config)
            {
                problems.push(format!("{name}: use {p} (the binary's, not the library's)"));
            }
            if p.starts_with("std::env") {
                problems.push(format!(
                    "{name}: use {p} (the library reads no environment)"
                ));
            }
        }
        for m in ["println", "print", "eprintln", "eprint", "dbg"] {
            if calls_macro(&code, m) {
                problems.push(format!(
                    "{name}: {m}! (the library prints nothing; send an Event)"
                ));
            }
        }
        for path in [
            &["std", "env"][..],
            &["env", "var"],
            &["env", "var_os"],
            &["clap"],
            &["figment"],
        ] {
            if mentions_path(&code, path) && !(config && path == ["figment"]) {
                problems.push(format!("{name}: {}", path.join("::")));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the library's rule broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checks_themselves_see_what_they_look_for() {
    let code = code_only(
        "// println!(\"x\")\nlet s = \"std::env::var\";\nuse std::{env, io::{self, Write as _}};\nprintln!(\"y\");\n",
    );
    assert!(calls_macro(&code, "println"));
    assert!(!calls_macro("eprintln!(x)", "println"));
    assert_eq!(
        use_paths(&code),
        ["std::env", "std::io::self", "std::io::Write"]
    );
    assert!(
        !mentions_path(&code, &["std", "env", "var"]),
        "a string is not code"
    );
    assert!(mentions_path(
        "let x = std :: env::var(\"A\");",
        &["std", "env", "var"]
    ));
    assert!(!mentions_path("my_env::variable", &["env", "var"]));
}

#[test]
fn the_library_modules_import_each_other_without_a_cycle() {
    let src = workspace_root().join("crates/engine/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in library_files() {
        let module = path
            .strip_prefix(&src)
            .expect("under src")
            .with_extension("")
            .display()
            .to_string();
        let code = code_only(&std::fs::read_to_string(&path).expect("read"));
        let mut deps: BTreeSet<String> = use_paths(&code)
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix("crate::")
                    .map(|r| r.split("::").next().unwrap_or_default().to_owned())
            })
            .collect();
        // Paths written out in expressions (`crate::x::f()`) count too.
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            let m: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            deps.insert(m);
        }
        deps.remove(&module);
        graph.insert(module, deps);
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for deps in graph.values_mut() {
        deps.retain(|d| modules.contains(d));
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle in the pwt library: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn no_function_outside_tests_is_longer_than_80_lines() {
    let root = workspace_root();
    let mut problems = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates")
        .flatten()
        .map(|e| e.path().join("src"))
        .collect();
    dirs.extend([
        root.join("xtask/src"),
        root.join("tests/src"),
        root.join("examples/todo-app/src"),
    ]);
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        for path in rust_files(&dir) {
            let code = code_only(&std::fs::read_to_string(&path).expect("read"));
            for (name, line, len) in functions(&code) {
                if len > 80 {
                    let shown = path
                        .strip_prefix(root)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    problems.push(format!("{shown}:{line}: fn {name} is {len} lines"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "functions over 80 lines:\n{}",
        problems.join("\n")
    );
}

/// The only `unsafe` of pwt's is in the one module of process control, each block saying
/// why it holds.
#[test]
fn unsafe_code_lives_only_in_process_control() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for dir in ["crates", "xtask/src", "examples", "tests/src"] {
        for path in rust_files(&root.join(dir)) {
            let code = code_only(&std::fs::read_to_string(&path).expect("read"));
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let blocks = code.matches("unsafe {").count() + code.matches("unsafe fn").count();
            if blocks > 0 && name != "crates/alloc/src/proc.rs" {
                problems.push(format!("{name}: {blocks} unsafe"));
            }
        }
    }
    let proc = std::fs::read_to_string(root.join("crates/alloc/src/proc.rs")).expect("read");
    let blocks = proc.matches("unsafe {").count();
    let reasons = proc.matches("// SAFETY:").count();
    assert!(
        blocks > 0 && reasons >= blocks,
        "each unsafe block says why: {blocks} blocks, {reasons} reasons"
    );
    assert!(
        problems.is_empty(),
        "unsafe outside crates/alloc/src/proc.rs:\n{}",
        problems.join("\n")
    );
}
