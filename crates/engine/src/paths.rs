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

pub use pwt_core::shell_word;

/// `path`, when it is UTF-8, as the root of a worktree (or a repository: `what`) must be:
/// the registry, the env files and the variables name it, and they hold text.
pub(crate) fn text_root<'a>(path: &'a Path, what: &str) -> crate::Result<&'a str> {
    path.to_str().ok_or_else(|| {
        crate::Error::new(
            crate::ErrorKind::Invalid,
            format!(
                "the {what} path {} is not UTF-8: pwt's registry and env files, and the programs that read them, need it as text",
                path.display()
            ),
        )
        .hint(match what {
            "worktree" => "use a path of UTF-8 characters (`pwt new BRANCH --path DIR`, or `git worktree move`)",
            _ => "move it to a path of UTF-8 characters",
        })
    })
}

/// The hint that `pwt up` `does` for the worktree at `root` (`sets it up`), or, at a path
/// that is not UTF-8, that it must move first.
pub(crate) fn up_hint(root: &Path, does: &str) -> String {
    match root.to_str() {
        Some(r) => format!("`pwt up {}` {does}", shell_word(r)),
        None => "its path is not UTF-8, which pwt cannot manage: `git worktree move` it to a path of UTF-8 characters, then `pwt up` there".to_owned(),
    }
}

/// A directory's identity, `device:inode:birth`: another directory made at the same path
/// later has another (a freed inode number is often handed out again at once, so the
/// birth time counts too, where the filesystem keeps one).
pub(crate) fn dir_identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())?;
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(format!("{}:{}:{born}", m.dev(), m.ino()))
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
