//! Port claims every user of the machine shares: one file per leased port in the machine
//! directory, made with `O_EXCL` (so two claims of one port never both succeed), naming the
//! registry that holds it. Each registry knows only its own leases; the claims make a port
//! leased by another user's pwt — whose server may not listen yet, so no bind probe sees it —
//! count as taken.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{AllocError, io};
use crate::lock::machine_dir;

/// The claims directory of a machine directory.
#[derive(Clone, Debug)]
pub struct PortClaims {
    dir: PathBuf,
}

/// Who holds a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// The registry's identity.
    pub registry: String,
    /// The repository (common dir) of the lease.
    pub repo: PathBuf,
    /// Its branch.
    pub branch: String,
    /// The registry's state directory; `None` in claims of older pwts.
    pub state_dir: Option<PathBuf>,
}

impl Claimant {
    /// One line: tab-separated fields, paths with `%`, tab, newline and bytes outside
    /// ASCII percent-encoded (any path reads back the same).
    fn line(&self) -> String {
        let mut line = format!(
            "{}\t{}\t{}",
            self.registry,
            encode_path(&self.repo),
            self.branch
        );
        if let Some(d) = &self.state_dir {
            line.push('\t');
            line.push_str(&encode_path(d));
        }
        line.push('\n');
        line
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim_end_matches('\n').split('\t');
        Some(Self {
            registry: parts.next()?.to_owned(),
            repo: decode_path(parts.next()?),
            branch: parts.next()?.to_owned(),
            state_dir: parts.next().map(decode_path),
        })
    }
}

fn encode_path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut out = String::new();
    for b in p.as_os_str().as_bytes() {
        if b.is_ascii_graphic() && *b != b'%' || *b == b' ' {
            out.push(char::from(*b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

impl PortClaims {
    /// The claims under `machine` (created world-writable, sticky).
    pub fn open(machine: &Path) -> Result<Self, AllocError> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = machine_dir(machine)?.join("ports");
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
        Ok(Self { dir })
    }

    /// Every claimed port and who holds it.
    pub fn all(&self) -> Vec<(u16, Option<Claimant>)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let port: u16 = e.file_name().to_str()?.parse().ok()?;
                let who = std::fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| Claimant::parse(&t));
                Some((port, who))
            })
            .collect()
    }

    /// Ports claimed by other registries than `registry`.
    pub fn others(&self, registry: &str) -> HashSet<u16> {
        self.all()
            .into_iter()
            .filter(|(_, who)| who.as_ref().is_none_or(|w| w.registry != registry))
            .map(|(p, _)| p)
            .collect()
    }

    /// Claims `port` for `who`. `Ok(false)` when someone else holds it; a claim of `who`'s
    /// own is fine.
    pub fn claim(&self, port: u16, who: &Claimant) -> Result<bool, AllocError> {
        let path = self.dir.join(port.to_string());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(who.line().as_bytes())
                    .map_err(io("cannot write", &path))?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| Claimant::parse(&t));
                // Its own (an older pwt's claim names no state directory). One of its own
                // registry and repository for another branch is a renamed branch's (the
                // registry, whose lock the caller holds, leases the port to no one else):
                // it becomes this branch's.
                match held {
                    Some(h) if h.registry == who.registry && h.repo == who.repo => {
                        if h.branch != who.branch {
                            std::fs::write(&path, who.line()).map_err(io("cannot write", &path))?;
                        }
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
            Err(e) => Err(io("cannot claim the port in", &path)(e)),
        }
    }

    /// Releases every claim whose repository and registry are both gone (`gone` says so of a
    /// path), whoever made it: no worktree of a repository that no longer exists uses its
    /// ports, and no registry that no longer exists leases them. A repository that is only
    /// away (an unmounted disk) keeps its claims while its registry is there. Claims of
    /// older pwts, which do not name their registry, go with their repository. The
    /// directory is sticky, so another user's claims stay unless the caller may remove
    /// them. Returns how many went.
    pub fn release_gone(&self, gone: impl Fn(&Path) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut seen: std::collections::HashMap<PathBuf, bool> = Default::default();
        let mut is_gone = |p: &Path| *seen.entry(p.to_owned()).or_insert_with(|| gone(p));
        let mut released = 0;
        for e in entries.flatten() {
            if e.file_name()
                .to_str()
                .and_then(|n| n.parse::<u16>().ok())
                .is_none()
            {
                continue;
            }
            let Some(who) = std::fs::read_to_string(e.path())
                .ok()
                .and_then(|t| Claimant::parse(&t))
            else {
                continue;
            };
            let stale = is_gone(&who.repo) && who.state_dir.as_deref().is_none_or(&mut is_gone);
            if stale && std::fs::remove_file(e.path()).is_ok() {
                released += 1;
            }
        }
        released
    }

    /// Gives up `port` if `registry` holds it.
    pub fn release(&self, port: u16, registry: &str) {
        let path = self.dir.join(port.to_string());
        let ours = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Claimant::parse(&t))
            .is_some_and(|w| w.registry == registry);
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_claimed_once_and_released_only_by_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let claims = PortClaims::open(dir.path()).expect("open");
        let a = Claimant {
            registry: "a".into(),
            repo: "/r/.git".into(),
            branch: "x".into(),
            state_dir: None,
        };
        let b = Claimant {
            registry: "b".into(),
            repo: "/r/.git".into(),
            branch: "x".into(),
            state_dir: Some("/home/b/.local/state/pwt".into()),
        };
        assert!(claims.claim(20001, &a).expect("claim"));
        assert!(claims.claim(20001, &a).expect("again, own"));
        assert!(!claims.claim(20001, &b).expect("taken"));
        assert_eq!(claims.others("b"), HashSet::from([20001]));
        assert!(claims.others("a").is_empty());
        claims.release(20001, "b");
        assert!(!claims.claim(20001, &b).expect("still a's"));
        claims.release(20001, "a");
        assert!(claims.claim(20001, &b).expect("free now"));
    }

    #[test]
    fn claims_of_repositories_that_are_gone_are_released_while_their_registry_is_gone_too() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let claims = PortClaims::open(dir.path()).expect("open");
        let who = |repo: &Path, state: Option<&str>| Claimant {
            registry: "r".into(),
            repo: repo.to_owned(),
            branch: "x".into(),
            state_dir: state.map(PathBuf::from),
        };
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9\tx/.git"));
        assert!(
            claims
                .claim(20001, &who(Path::new("/gone/.git"), None))
                .expect("claim")
        );
        assert!(
            claims
                .claim(20002, &who(Path::new("/gone/.git"), Some("/gone-state")))
                .expect("claim")
        );
        assert!(
            claims
                .claim(20003, &who(Path::new("/gone/.git"), Some("/home/a/state")))
                .expect("claim")
        );
        assert!(
            claims
                .claim(20004, &who(odd, Some("/gone-state")))
                .expect("claim")
        );
        // Any path reads back as it was written.
        let back: Vec<PathBuf> = claims
            .all()
            .into_iter()
            .filter_map(|(_, w)| w.map(|w| w.repo))
            .collect();
        assert!(back.iter().any(|p| p == odd), "{back:?}");
        let gone = |p: &Path| p.starts_with("/gone") || p == Path::new("/gone-state");
        assert_eq!(claims.release_gone(gone), 2);
        let mut left: Vec<u16> = claims.all().into_iter().map(|(p, _)| p).collect();
        left.sort_unstable();
        // A repository only away, with its registry there, keeps its claim; one whose name
        // has a tab or bytes outside UTF-8 is not taken for gone.
        assert_eq!(left, vec![20003, 20004]);
    }
}
