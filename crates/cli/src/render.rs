//! How a worktree is shown: the JSON object (the engine's `WorktreeOut`, whose schema is in
//! `schemas/`) and the human summary printed by `new` and `up`.

use std::path::Path;

use pwt::WorktreeInfo;
use serde_json::Value;

use super::output::{Style, display_path, printable};

/// How a worktree is shown.
pub trait Show {
    /// The JSON object.
    fn to_json(&self) -> Value;
    /// `db demo_x · vhost /x · redis x:` for tables.
    fn data_cell(&self) -> String;
    /// The multi-line summary of `new` / `up`.
    fn print_summary(&self, style: Style, cwd: &Path, files: &[String], verb: &str);
}

impl Show for WorktreeInfo {
    fn to_json(&self) -> Value {
        serde_json::to_value(pwt::WorktreeOut::from(self)).expect("a worktree serializes")
    }

    fn data_cell(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.database {
            parts.push(format!("db {d}"));
        }
        if let Some(v) = &self.vhost {
            parts.push(format!("vhost {v}"));
        }
        if let Some(p) = self.redis_prefix.as_ref().filter(|p| !p.is_empty()) {
            parts.push(format!("redis {p}"));
        }
        if let Some(n) = self.redis_db {
            parts.push(format!("redis db {n}"));
        }
        printable(&parts.join(" · "))
    }

    fn print_summary(&self, style: Style, cwd: &Path, files: &[String], verb: &str) {
        println!(
            "{} {} {}",
            style.green("✓"),
            style.bold(&printable(&self.branch)),
            style.dim(&format!("{verb} (slug {})", self.slug))
        );
        let mut rows: Vec<(String, String)> = vec![("path".into(), display_path(&self.path, cwd))];
        for p in &self.ports {
            rows.push((
                p.name.clone(),
                format!("http://localhost:{}  {}", p.port, style.dim(&p.env)),
            ));
        }
        if let Some(url) = &self.url {
            rows.push(("proxy".into(), url.clone()));
        }
        if let Some(d) = &self.database {
            rows.push(("database".into(), printable(d)));
        }
        if let Some(v) = &self.vhost {
            rows.push(("vhost".into(), printable(v)));
        }
        if let Some(p) = self.redis_prefix.as_ref().filter(|p| !p.is_empty()) {
            rows.push(("redis".into(), format!("key prefix {}", printable(p))));
        }
        if let Some(n) = self.redis_db {
            rows.push(("redis".into(), format!("DB {n}")));
        }
        if !files.is_empty() {
            rows.push(("env".into(), files.join(", ")));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            println!("  {k:<width$}  {v}");
        }
    }
}
