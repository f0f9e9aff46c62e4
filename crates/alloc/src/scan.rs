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
    /// Every `DATABASE_NAME`.
    pub databases: HashSet<String>,
    /// Every `RABBITMQ_VHOST`.
    pub vhosts: HashSet<String>,
    /// Every non-empty `REDIS_KEY_PREFIX`.
    pub prefixes: HashSet<String>,
    /// Every `PWT_SLUG`.
    pub slugs: HashSet<String>,
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
                let named = match k.as_str() {
                    "DATABASE_NAME" => Some(&mut out.databases),
                    "RABBITMQ_VHOST" => Some(&mut out.vhosts),
                    "REDIS_KEY_PREFIX" if !v.is_empty() => Some(&mut out.prefixes),
                    "PWT_SLUG" => Some(&mut out.slugs),
                    _ => None,
                };
                if let Some(set) = named {
                    set.insert(v);
                    continue;
                }
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
            "DJANGO_PORT=8012\nREDIS_DB=3\nNAME=x\nDATABASE_NAME='demo_a'\nREDIS_KEY_PREFIX=''\n",
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
        assert_eq!(d.databases, HashSet::from(["demo_a".to_owned()]));
        assert!(
            d.prefixes.is_empty(),
            "the main worktree's empty prefix is nobody's"
        );
        let d = scan_env_files(
            &[a.clone(), b],
            &[".env.worktree", ".mise.local.toml"],
            Some(&a),
        );
        assert_eq!(d.ports, HashSet::from([14315]));
    }
}
