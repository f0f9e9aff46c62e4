//! The registry lock: `flock` on a file that is never renamed or replaced.
//!
//! `flock` belongs to the open file description, so the kernel drops it when the holder
//! exits, even by `kill -9`, and a second `open` of the same file in the same process does
//! not release it (unlike POSIX `fcntl` locks, which any `close` drops).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{AllocError, io};

/// The directory every user of the machine shares (`/var/tmp/pwt` unless told otherwise):
/// created world-writable with the sticky bit, like `/tmp`, so each user can make files there
/// and remove only their own.
pub fn machine_dir(dir: &Path) -> Result<PathBuf, AllocError> {
    use std::os::unix::fs::PermissionsExt as _;
    if !dir.is_dir() {
        std::fs::create_dir_all(dir)
            .map_err(io("cannot create the machine-wide directory", dir))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    Ok(dir.to_owned())
}

/// A lock every pwt on the machine shares, whoever runs it: `name` is hashed into a file
/// of the machine directory (made readable and writable for all).
pub fn machine_lock(dir: &Path, name: &str, timeout: Duration) -> Result<LockGuard, AllocError> {
    use std::os::unix::fs::PermissionsExt as _;
    let locks = machine_dir(dir)?.join("locks");
    if !locks.is_dir() {
        std::fs::create_dir_all(&locks).map_err(io("cannot create", &locks))?;
        let _ = std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o1777));
    }
    let file = locks.join(format!(
        "{}.lock",
        pwt_core::hex_prefix(pwt_core::stable_hash(name.as_bytes()), 16)
    ));
    let guard = LockGuard::acquire(&file, timeout)?;
    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666));
    Ok(guard)
}

/// Held while the guard lives.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// Takes the lock at `path`, waiting up to `timeout`.
    ///
    /// Polls with a short back-off rather than blocking in the kernel, so that a stuck holder
    /// turns into an error naming it instead of a hang.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<Self, AllocError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("cannot open the lock file", path))?;
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        let mut text = String::new();
                        let _ = file.read_to_string(&mut text);
                        let holder = text
                            .trim()
                            .parse::<u32>()
                            .map(|pid| format!(" (held by pid {pid})"))
                            .unwrap_or_default();
                        return Err(AllocError::LockTimeout {
                            path: path.to_owned(),
                            seconds: timeout.as_secs(),
                            holder,
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(io("cannot lock", path)(e));
                }
            }
        }
        // Record who holds it, for the timeout message of others. Best effort: the lock
        // itself is what matters.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_in_same_process_neither_gets_nor_releases_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.lock");
        let held = LockGuard::acquire(&path, Duration::from_secs(1)).expect("first");
        // A second open in this process must not get the lock...
        let err = LockGuard::acquire(&path, Duration::from_millis(50)).expect_err("held");
        assert!(err.to_string().contains("waiting for the lock"), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // ...and closing it must not have released the first one.
        let other = File::open(&path).expect("open");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(other);
        assert!(matches!(
            File::open(&path).expect("open").try_lock(),
            Err(TryLockError::WouldBlock)
        ));
        drop(held);
        LockGuard::acquire(&path, Duration::from_millis(50)).expect("free again");
    }
}
