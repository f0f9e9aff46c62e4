//! The cooperative scan: ports and Redis DB indexes that worktrees of the repository declare
//! in their env files count as taken, whoever wrote them (pwt, an older script, a person).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pwt_core::parse_assignments;

/// What the env files of a repository's worktrees declare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// Every value of a variable whose name ends in `PORT` that is a port number.
    pub ports: HashSet<u16>,
    /// Every `REDIS_DB` value.
    pub redis_dbs: HashSet<u16>,
}

/// Reads `files` (names relative to each root) in every worktree root except `skip`.
/// Missing and unreadable files are passed over: the scan only adds caution.
pub fn scan_env_files(roots: &[PathBuf], files: &[&str], skip: Option<&Path>) -> Declared {
    let mut out = Declared::default();
    for root in roots {
        if skip.is_some_and(|s| s == root) {
            continue;
        }
        for name in files {
            let Ok(text) = std::fs::read_to_string(root.join(name)) else {
                continue;
            };
            for (k, v) in parse_assignments(&text) {
                let Ok(n) = v.trim().parse::<u16>() else {
                    continue;
                };
                if k.ends_with("PORT") && n != 0 {
                    out.ports.insert(n);
                } else if k == "REDIS_DB" {
                    out.redis_dbs.insert(n);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hand_written_and_seed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::create_dir_all(&b).expect("mkdir");
        std::fs::write(
            a.join(".env.worktree"),
            "DJANGO_PORT=8012\nREDIS_DB=3\nNAME=x\n",
        )
        .expect("write");
        std::fs::write(
            b.join(".mise.local.toml"),
            "[env]\nFRONTEND_PORT = \"14315\"\nBACKEND_PORT = \"nope\"\n",
        )
        .expect("write");
        let d = scan_env_files(
            &[a.clone(), b.clone()],
            &[".env.worktree", ".mise.local.toml"],
            None,
        );
        assert_eq!(d.ports, HashSet::from([8012, 14315]));
        assert_eq!(d.redis_dbs, HashSet::from([3]));
        let d = scan_env_files(
            &[a.clone(), b],
            &[".env.worktree", ".mise.local.toml"],
            Some(&a),
        );
        assert_eq!(d.ports, HashSet::from([14315]));
    }
}
