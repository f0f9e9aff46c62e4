//! How a worktree is shown: the JSON object (the engine's `WorktreeOut`, whose schema is in
//! `schemas/`) and the human summary printed by `new` and `up`.

use std::path::Path;

use anyhow::Result;
use pwt::{Lease, WorktreeInfo};

use super::output::{Style, display_path, print_json, printable};

/// `db demo_x · vhost /x · redis x:` for tables.
pub fn data_cell(w: &WorktreeInfo) -> String {
    let mut parts = Vec::new();
    if let Some(d) = &w.database {
        parts.push(format!("db {d}"));
    }
    if let Some(v) = &w.vhost {
        parts.push(format!("vhost {v}"));
    }
    if let Some(p) = w.redis_prefix.as_ref().filter(|p| !p.is_empty()) {
        parts.push(format!("redis {p}"));
    }
    if let Some(n) = w.redis_db {
        parts.push(format!("redis db {n}"));
    }
    printable(&parts.join(" · "))
}

/// The worktree of `lease`, as `new` and `up` print it: its JSON object, or a summary that
/// says it was `verb` (`created`, `adopted`).
pub fn print_worktree(
    project: &pwt::Project,
    lease: &Lease,
    json: bool,
    cwd: &Path,
    verb: &str,
) -> Result<()> {
    let w = pwt::lease_info(project.config(), lease, false);
    if json {
        return print_json(&pwt::WorktreeOut::from(&w));
    }
    let style = Style::stdout();
    println!(
        "{} {} {}",
        style.green("✓"),
        style.bold(&printable(&w.branch)),
        style.dim(&format!("{verb} (slug {})", w.slug))
    );
    let mut rows: Vec<(String, String)> = vec![("path".into(), display_path(&w.path, cwd))];
    for p in &w.ports {
        let url = format!("http://localhost:{}  {}", p.port, style.dim(&p.env));
        rows.push((p.name.clone(), url));
    }
    let mut add = |k: &str, v: Option<String>| rows.extend(v.map(|v| (k.to_owned(), v)));
    add("proxy", w.url.clone());
    add("database", w.database.as_deref().map(printable));
    add("vhost", w.vhost.as_deref().map(printable));
    let prefix = w.redis_prefix.as_deref().filter(|p| !p.is_empty());
    add(
        "redis",
        prefix.map(|p| format!("key prefix {}", printable(p))),
    );
    add("redis", w.redis_db.map(|n| format!("DB {n}")));
    let files: Vec<&str> = lease.files.keys().map(String::as_str).collect();
    add("env", (!files.is_empty()).then(|| files.join(", ")));
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
    Ok(())
}
