//! Paths as pwt compares them, and text as a shell reads it.

use std::fs;
use std::path::{Component, Path, PathBuf};

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

/// `s` as one shell word, for commands suggested in hints: as it is when it holds only safe
/// characters, else single-quoted (control characters removed), so pasting it never expands
/// `$(…)` from a branch name.
pub fn shell_word(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@%,".contains(&b));
    if safe {
        s.to_owned()
    } else {
        let printable: String = s.chars().filter(|c| !c.is_control()).collect();
        format!("'{}'", printable.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shell_words() {
        assert_eq!(super::shell_word("feature/x-1"), "feature/x-1");
        assert_eq!(
            super::shell_word("feat/$(touch${IFS}pwned)"),
            "'feat/$(touch${IFS}pwned)'"
        );
        assert_eq!(super::shell_word("feat/x'y"), "'feat/x'\\''y'");
        assert_eq!(super::shell_word("/tmp/a b"), "'/tmp/a b'");
    }
}
