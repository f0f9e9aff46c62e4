//! Paths as pwt compares and shows them.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::output;

/// `a/b/../c` → `a/c`, without touching the file system (the path may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    // Resolve symlinks in the part that exists, so paths compare equal to git's.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_owned();
            }
            _ => return out,
        }
    }
    let mut real = fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        real.push(name);
    }
    real
}

/// A path shown to people: relative to `cwd` when that is shorter, control characters removed.
pub fn display_path(p: &Path, cwd: &Path) -> String {
    let abs = p.display().to_string();
    let rel = pathdiff(p, cwd).map(|r| r.display().to_string());
    match rel {
        Some(r) if r.len() < abs.len() => output::printable(&r),
        _ => output::printable(&abs),
    }
}

fn pathdiff(path: &Path, base: &Path) -> Option<PathBuf> {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}
