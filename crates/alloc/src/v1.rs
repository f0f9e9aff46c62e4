//! Reading registries of format version 1, the first release's: resources as a map of strings,
//! the Redis DB index beside them, the owner as a bare pid, leftovers as words, and data kept
//! by `pwt rm --keep-data` inside the capped list of recent ports. They migrate to the
//! current types here; the next write stores the current format.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pwt_core::{BranchName, DbName, RedisPrefix, RedisSlot, Resources, Slug, Vhost};
use serde::Deserialize;

use crate::lease::{Journal, Kept, Lease, LeaseState, Leftover, RecentPorts};
use crate::owner::Owner;
use crate::registry::{FORMAT_VERSION, State};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateV1 {
    #[allow(dead_code)]
    version: u64,
    leases: Vec<LeaseV1>,
    #[serde(default)]
    recent: Vec<RecentV1>,
}

#[derive(Deserialize)]
struct LeaseV1 {
    repo: PathBuf,
    branch: String,
    slug: Slug,
    path: PathBuf,
    project: String,
    ports: BTreeMap<String, u16>,
    #[serde(default)]
    redis_db: Option<u16>,
    state: LeaseState,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    resources: BTreeMap<String, String>,
    #[serde(default)]
    leftover: Vec<String>,
    created_at: u64,
    updated_at: u64,
}

#[derive(Deserialize)]
struct RecentV1 {
    repo: PathBuf,
    branch: String,
    ports: BTreeMap<String, u16>,
    #[serde(default)]
    kept: Option<KeptV1>,
}

#[derive(Deserialize)]
struct KeptV1 {
    slug: Slug,
    #[serde(default)]
    resources: BTreeMap<String, String>,
    #[serde(default)]
    redis_db: Option<u16>,
}

fn resources(map: &BTreeMap<String, String>, redis_db: Option<u16>) -> Result<Resources, String> {
    let named = |e: pwt_core::NameError| e.to_string();
    let prefix = map
        .get("redis_prefix")
        .map(|p| RedisPrefix::parse(p))
        .transpose()
        .map_err(named)?;
    Ok(Resources {
        database: map
            .get("database")
            .map(|d| DbName::parse(d))
            .transpose()
            .map_err(named)?,
        vhost: map
            .get("vhost")
            .map(|v| Vhost::parse(v))
            .transpose()
            .map_err(named)?,
        redis: prefix
            .map(RedisSlot::Prefix)
            .or(redis_db.map(RedisSlot::Db)),
    })
}

fn branch(name: &str) -> Result<BranchName, String> {
    BranchName::parse(name).map_err(|e| e.to_string())
}

/// Version 1's leftover words: `data` meant every service, `rollback` (a set-up whose undo
/// got stuck) everything.
fn leftovers(words: &[String]) -> Vec<Leftover> {
    let mut out = Vec::new();
    for w in words {
        let add: &[Leftover] = match w.as_str() {
            "database" => &[Leftover::Database],
            "vhost" => &[Leftover::Vhost],
            "redis" => &[Leftover::Redis],
            "worktree" => &[Leftover::Worktree],
            "data" => &[Leftover::Database, Leftover::Vhost, Leftover::Redis],
            _ => &[
                Leftover::Database,
                Leftover::Vhost,
                Leftover::Redis,
                Leftover::Worktree,
            ],
        };
        for l in add {
            if !out.contains(l) {
                out.push(*l);
            }
        }
    }
    out
}

/// Parses a version 1 registry into the current state.
pub(crate) fn migrate(bytes: &[u8]) -> Result<State, String> {
    let old: StateV1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut state = State {
        version: FORMAT_VERSION,
        ..State::default()
    };
    for l in old.leases {
        state.leases.push(Lease {
            branch: branch(&l.branch)?,
            resources: resources(&l.resources, l.redis_db)?,
            // A pid without a start time: compared by pid alone, as version 1 did.
            owner: l.pid.map(|pid| Owner { pid, start: None }),
            journal: Journal::default(),
            leftover: leftovers(&l.leftover),
            keep: Vec::new(),
            dir_id: None,
            compose: None,
            repo: l.repo,
            slug: l.slug,
            marker: None,
            path: l.path,
            project: l.project,
            ports: l.ports,
            state: l.state,
            files: l.files,
            pending_hooks: false,
            pending_files: false,
            created_at: l.created_at,
            updated_at: l.updated_at,
        });
    }
    for r in old.recent {
        let branch = branch(&r.branch)?;
        if let Some(k) = r.kept {
            state.kept.push(Kept {
                repo: r.repo.clone(),
                branch: branch.clone(),
                slug: k.slug,
                marker: None,
                resources: resources(&k.resources, k.redis_db)?,
                kept_at: 0,
            });
        }
        state.recent.push(RecentPorts {
            repo: r.repo,
            branch,
            ports: r.ports,
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry as the first release wrote it, with every field it knew.
    const V1: &str = r#"{
  "version": 1,
  "leases": [
    {
      "repo": "/r/.git",
      "branch": "feat/x",
      "slug": "feat-x",
      "path": "/r.feat-x",
      "project": "r",
      "ports": { "app": 20001 },
      "redis_db": 3,
      "state": "removing",
      "pid": 4242,
      "files": { ".env.worktree": "0123456789abcdef" },
      "resources": { "database": "r_feat_x", "vhost": "/feat-x" },
      "leftover": ["data"],
      "created_at": 10,
      "updated_at": 11
    },
    {
      "repo": "/r/.git",
      "branch": "p",
      "slug": "p",
      "path": "/r.p",
      "project": "r",
      "ports": { "app": 20002 },
      "state": "ready",
      "resources": { "redis_prefix": "p:" },
      "created_at": 10,
      "updated_at": 11
    }
  ],
  "recent": [
    { "repo": "/r/.git", "branch": "old", "ports": { "app": 20009 },
      "kept": { "slug": "old", "resources": { "database": "r_old" }, "redis_db": 5 } }
  ]
}"#;

    #[test]
    fn a_version_1_registry_migrates() {
        let s = migrate(V1.as_bytes()).expect("migrates");
        assert_eq!(s.version, FORMAT_VERSION);
        let x = &s.leases[0];
        assert_eq!(x.branch.as_str(), "feat/x");
        assert_eq!(
            x.resources.database.as_ref().map(DbName::as_str),
            Some("r_feat_x")
        );
        assert_eq!(
            x.resources.vhost.as_ref().map(Vhost::as_str),
            Some("/feat-x")
        );
        assert_eq!(x.resources.redis, Some(RedisSlot::Db(3)));
        assert_eq!(
            x.owner,
            Some(Owner {
                pid: 4242,
                start: None
            })
        );
        assert_eq!(
            x.leftover,
            vec![Leftover::Database, Leftover::Vhost, Leftover::Redis]
        );
        assert_eq!(
            s.leases[1]
                .resources
                .redis_prefix()
                .map(RedisPrefix::as_str),
            Some("p:")
        );
        assert_eq!(s.kept.len(), 1);
        assert_eq!(s.kept[0].resources.redis, Some(RedisSlot::Db(5)));
        assert_eq!(s.recent[0].ports["app"], 20009);
        // It writes back as the current format and reads again the same.
        let text = serde_json::to_string(&s).expect("serializes");
        let again: State = serde_json::from_str(&text).expect("current format");
        assert_eq!(again, s);
    }

    #[test]
    fn a_version_1_registry_with_a_bad_name_is_refused() {
        let bad = V1.replace("\"feat/x\"", "\"../x\"");
        assert!(migrate(bad.as_bytes()).is_err());
    }
}
