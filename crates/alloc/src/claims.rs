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
    pub repo: String,
    /// Its branch.
    pub branch: String,
}

impl Claimant {
    fn line(&self) -> String {
        format!("{}\t{}\t{}\n", self.registry, self.repo, self.branch)
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim_end_matches('\n').splitn(3, '\t');
        Some(Self {
            registry: parts.next()?.to_owned(),
            repo: parts.next()?.to_owned(),
            branch: parts.next()?.to_owned(),
        })
    }
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
                Ok(held.as_ref() == Some(who))
            }
            Err(e) => Err(io("cannot claim the port in", &path)(e)),
        }
    }

    /// Releases every claim whose repository is gone (`gone` says so of its common dir),
    /// whoever made it: no worktree of a repository that no longer exists uses its ports.
    /// The directory is sticky, so another user's claims stay unless the caller may remove
    /// them. Returns how many went.
    pub fn release_gone(&self, gone: impl Fn(&Path) -> bool) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut seen: std::collections::HashMap<String, bool> = Default::default();
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
            let is_gone = *seen
                .entry(who.repo.clone())
                .or_insert_with(|| gone(Path::new(&who.repo)));
            if is_gone && std::fs::remove_file(e.path()).is_ok() {
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
        };
        let b = Claimant {
            registry: "b".into(),
            repo: "/r/.git".into(),
            branch: "x".into(),
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
    fn claims_of_repositories_that_are_gone_are_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let claims = PortClaims::open(dir.path()).expect("open");
        let who = |repo: &str| Claimant {
            registry: "r".into(),
            repo: repo.into(),
            branch: "x".into(),
        };
        assert!(claims.claim(20001, &who("/gone/.git")).expect("claim"));
        assert!(claims.claim(20002, &who("/gone/.git")).expect("claim"));
        assert!(claims.claim(20003, &who("/here/.git")).expect("claim"));
        let released = claims.release_gone(|p| p == Path::new("/gone/.git"));
        assert_eq!(released, 2);
        let left: Vec<u16> = claims.all().into_iter().map(|(p, _)| p).collect();
        assert_eq!(left, vec![20003]);
    }
}
