//! The one atomic file write of pwt: a temporary file beside the target, written and
//! fsynced, renamed over it, then the directory fsynced so the rename itself survives a
//! crash. Readers see the old content or the new, never a mix. Temporary files are named
//! `.pwt-tmp-<pid>-<name>` ([`TEMP_MARK`]), so one a killed writer left is known for what it
//! is ([`temp_of`]).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{AllocError, io};

/// How the names of pwt's temporary files begin: `.pwt-tmp-<pid>-<name>`, beside `<name>`.
pub const TEMP_MARK: &str = ".pwt-tmp-";

/// The name a temporary file of pwt's stands for (`.pwt-tmp-123-.env` → `.env`); `None` for
/// any other file.
pub fn temp_of(name: &OsStr) -> Option<&OsStr> {
    use std::os::unix::ffi::OsStrExt as _;
    let rest = name.as_bytes().strip_prefix(TEMP_MARK.as_bytes())?;
    let dash = rest.iter().position(|b| *b == b'-')?;
    let (pid, name) = (&rest[..dash], &rest[dash + 1..]);
    (!pid.is_empty() && pid.iter().all(u8::is_ascii_digit) && !name.is_empty())
        .then(|| OsStr::from_bytes(name))
}

/// The temporary name this process writes `path` under.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(format!("{TEMP_MARK}{}-", std::process::id()));
    name.push(path.file_name().unwrap_or_default());
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically and durably (see the module). `before_rename` runs
/// between the write and the rename (crash tests pause there).
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(),
) -> Result<(), AllocError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot write", path)(e));
    }
    before_rename();
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("cannot replace", path)(e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot flush the directory", dir))
}

/// [`write_atomic_with`], with nothing between write and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AllocError> {
    write_atomic_with(path, bytes, || {})
}

/// Removes what writers killed between their write and their rename left beside `path`.
/// Call it only while no other writer of `path` can be at work (under its lock).
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if temp_of(&e.file_name()) == Some(name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("write again");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
        assert_eq!(
            temp_of(OsStr::new(".pwt-tmp-12-f.json")),
            Some(OsStr::new("f.json"))
        );
        assert_eq!(temp_of(OsStr::new(".pwt-tmp--f.json")), None);
        assert_eq!(temp_of(OsStr::new(".pwt-tmp-x1-f.json")), None);
    }
}
