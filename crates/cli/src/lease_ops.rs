//! Lease changes under the registry lock. Each function takes the lock, does file work only
//! (no network, no hooks, no git writes), commits and releases it: milliseconds.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use pwt_alloc::{
    AllocError, Lease, LeaseState, PortRequest, State, allocate_ports, now, port_is_free,
    process_alive, scan_env_files,
};
use pwt_core::{ResourceNames, Slug, disambiguated_slug, redis_prefix_name, resource_names};

use crate::output::sh;
use crate::services::{self, RedisPlan};
use crate::session::Session;

/// How `lease` treats an existing lease of the branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `pwt new`: an existing lease is an error.
    New,
    /// `pwt up`: an existing lease is reused.
    Adopt,
}

/// The slug every repository's main worktree holds implicitly.
pub const MAIN_SLUG: &str = "main";

impl Session {
    /// Reuses or creates the lease of `branch`. `path_for` gives the worktree path from the
    /// slug (new worktrees are named after it). Returns the lease and whether it is new.
    pub fn lease(
        &self,
        branch: &str,
        mode: Mode,
        redis: RedisPlan,
        path_for: impl FnOnce(&Slug) -> Result<PathBuf>,
    ) -> Result<(Lease, bool)> {
        let repo = self.repo.common_dir.clone();
        let mut locked = self.registry.lock()?;
        let services = self.services();
        if let Some(existing) = locked.state.find(&repo, branch) {
            let busy = existing
                .pid
                .filter(|p| *p != std::process::id() && process_alive(*p));
            match (mode, existing.state, busy) {
                (_, LeaseState::Creating | LeaseState::Removing, Some(pid)) => bail!(
                    "branch {branch:?} is being {} by another pwt (pid {pid})\n  hint: wait for it, then `pwt list`",
                    if existing.state == LeaseState::Creating {
                        "set up"
                    } else {
                        "removed"
                    }
                ),
                (Mode::New, LeaseState::Ready, _) => bail!(
                    "branch {branch:?} already has a worktree at {}\n  hint: `pwt up {q}` re-renders its env files; `pwt rm {q}` removes it",
                    existing.path.display(),
                    q = sh(branch)
                ),
                (Mode::New, LeaseState::Removing, None) => bail!(
                    "branch {branch:?} was being removed when a pwt stopped; finish that first\n  hint: `pwt rm {q}`",
                    q = sh(branch)
                ),
                _ => {}
            }
            let keys: Vec<&String> = existing.ports.keys().collect();
            if keys == services.iter().collect::<Vec<_>>() || mode == Mode::New {
                // A stale `creating` lease of a dead process is taken over as it is.
                let mut lease = existing.clone();
                lease.pid = Some(std::process::id());
                lease.updated_at = now();
                self.assign_resources(&locked.state, &mut lease, redis, &HashSet::new())?;
                let slot = locked.state.find_mut(&repo, branch).expect("found above");
                *slot = lease.clone();
                self.ensure_excluded()?;
                locked.commit()?;
                return Ok((lease, false));
            }
        }
        let old = locked.state.find(&repo, branch).cloned();
        let slug = match &old {
            Some(l) => l.slug.clone(),
            None => {
                let taken: HashSet<&str> = locked
                    .state
                    .of_repo(&repo)
                    .map(|l| l.slug.as_str())
                    .chain([MAIN_SLUG])
                    .collect();
                Slug::derive(branch, |s| taken.contains(s))
            }
        };
        let path = match &old {
            Some(l) => l.path.clone(),
            None => path_for(&slug)?,
        };
        if let Some(other) = locked
            .state
            .of_repo(&repo)
            .find(|l| l.path == path && l.branch != branch)
        {
            bail!(
                "{} is already leased to branch {:?}\n  hint: `pwt rm {}` first, or choose another path",
                path.display(),
                other.branch,
                sh(&other.branch)
            );
        }
        let roots: Vec<PathBuf> = self.repo.worktrees()?.into_iter().map(|w| w.root).collect();
        let files: Vec<String> = self.env_files()?.into_iter().map(|(_, n)| n).collect();
        let mut scan_names: Vec<&str> = files.iter().map(String::as_str).collect();
        for default in [pwt_core::config::DOTENV_FILE, pwt_core::config::MISE_FILE] {
            if !scan_names.contains(&default) {
                scan_names.push(default);
            }
        }
        let declared = scan_env_files(&roots, &scan_names, Some(&path));
        let mut taken: HashSet<u16> = declared.ports;
        for l in &locked.state.leases {
            if !(l.repo == repo && l.branch == branch) {
                taken.extend(l.ports.values());
            }
        }
        taken.extend(self.config().services().values().filter_map(|s| s.main));
        let repo_key = self.repo.key();
        let [lo, hi] = self.config().ports.range;
        let remembered = old
            .as_ref()
            .map(|l| l.ports.clone())
            .or_else(|| locked.state.recent_ports(&repo, branch).cloned());
        let req = PortRequest {
            repo: &repo_key,
            slug: slug.as_str(),
            services: &services,
            range: (lo, hi),
            remembered: remembered.as_ref(),
        };
        let ports = allocate_ports(&req, &taken, port_is_free)?;
        let t = now();
        let mut lease = Lease {
            repo: repo.clone(),
            branch: branch.to_owned(),
            slug,
            path,
            project: self.project(),
            ports,
            redis_db: old.as_ref().and_then(|l| l.redis_db),
            state: old.as_ref().map_or(LeaseState::Creating, |l| l.state),
            pid: Some(std::process::id()),
            files: old.as_ref().map(|l| l.files.clone()).unwrap_or_default(),
            resources: old
                .as_ref()
                .map(|l| l.resources.clone())
                .unwrap_or_default(),
            leftover: Vec::new(),
            created_at: old.as_ref().map_or(t, |l| l.created_at),
            updated_at: t,
        };
        self.assign_resources(&locked.state, &mut lease, redis, &declared.redis_dbs)?;
        match locked.state.find_mut(&repo, branch) {
            Some(slot) => *slot = lease.clone(),
            None => locked.state.leases.push(lease.clone()),
        }
        self.ensure_excluded()?;
        locked.commit()?;
        Ok((lease, old.is_none()))
    }

    /// Names the lease's database, vhost and Redis prefix (where configured and not named
    /// yet) and leases a Redis DB index in `db` mode. Names stay once given. A name another
    /// worktree (of any repository) already has is re-rendered with a disambiguated slug;
    /// if even that is taken, it is an error: never the same resource twice.
    fn assign_resources(
        &self,
        state: &State,
        lease: &mut Lease,
        redis: RedisPlan,
        declared_dbs: &HashSet<u16>,
    ) -> Result<()> {
        let others = |kind: &str| -> HashSet<String> {
            state
                .leases
                .iter()
                .filter(|l| !(l.repo == lease.repo && l.branch == lease.branch))
                .filter_map(|l| l.resources.get(kind).cloned())
                .collect()
        };
        let ctx = self.context(&lease.branch, lease.slug.as_str(), &lease.ports);
        let mut names = resource_names(self.config(), &ctx, &self.templates)?;
        if redis == RedisPlan::ClusterPrefix && lease.redis_db.is_none() {
            names.redis_prefix = redis_prefix_name(self.config(), &ctx, &self.templates)?;
        }
        let redis_databases = match redis {
            RedisPlan::Db(n) if !lease.resources.contains_key(services::REDIS_PREFIX) => Some(n),
            _ => None,
        };
        let wanted = [
            (services::DATABASE, names.database.map(|n| n.to_string())),
            (services::VHOST, names.vhost.map(|n| n.to_string())),
            (
                services::REDIS_PREFIX,
                names.redis_prefix.map(|n| n.to_string()),
            ),
        ];
        let mut alt: Option<ResourceNames> = None;
        for (kind, name) in wanted {
            let Some(name) = name else { continue };
            if lease.resources.contains_key(kind) {
                continue;
            }
            let taken = others(kind);
            let chosen = if taken.contains(&name) {
                let names = match &alt {
                    Some(a) => a.clone(),
                    None => {
                        let mut c = ctx.clone();
                        c.slug = disambiguated_slug(
                            lease.slug.as_str(),
                            &lease.repo.to_string_lossy(),
                            &lease.branch,
                        );
                        let mut a = resource_names(self.config(), &c, &self.templates)?;
                        if redis == RedisPlan::ClusterPrefix {
                            a.redis_prefix = redis_prefix_name(self.config(), &c, &self.templates)?;
                        }
                        alt = Some(a.clone());
                        a
                    }
                };
                let second = match kind {
                    services::DATABASE => names.database.map(|n| n.to_string()),
                    services::VHOST => names.vhost.map(|n| n.to_string()),
                    _ => names.redis_prefix.map(|n| n.to_string()),
                };
                match second {
                    Some(n) if !taken.contains(&n) => n,
                    _ => bail!(
                        "{kind} {name:?} is already another worktree's, and the name template does not depend on the slug\n  hint: put {{{{ slug }}}} in the template"
                    ),
                }
            } else {
                name
            };
            lease.resources.insert(kind.to_owned(), chosen);
        }
        if lease.redis_db.is_none() && redis_databases.is_some() {
            // A branch whose data was kept finds its DB index again.
            lease.redis_db = state
                .recent
                .iter()
                .find(|r| r.repo == lease.repo && r.branch == lease.branch)
                .and_then(|r| r.kept.as_ref())
                .filter(|k| k.slug == lease.slug)
                .and_then(|k| k.redis_db);
        }
        if let Some(n) = redis_databases
            && lease.redis_db.is_none()
        {
            let used: HashSet<u16> = state
                .leases
                .iter()
                .filter(|l| !(l.repo == lease.repo && l.branch == lease.branch))
                .filter_map(|l| l.redis_db)
                .chain(declared_dbs.iter().copied())
                // DBs kept by `pwt rm --keep-data` of other branches stay reserved.
                .chain(
                    state
                        .recent
                        .iter()
                        .filter(|r| !(r.repo == lease.repo && r.branch == lease.branch))
                        .filter_map(|r| r.kept.as_ref().and_then(|k| k.redis_db)),
                )
                .collect();
            let index = (1..n).find(|i| !used.contains(i));
            lease.redis_db = Some(index.ok_or(AllocError::RedisDbsExhausted {
                max: n.saturating_sub(1),
            })?);
        }
        Ok(())
    }

    /// Marks the lease ready, recording the env file hashes.
    pub fn mark_ready(&self, branch: &str, files: BTreeMap<String, String>) -> Result<Lease> {
        self.update(branch, |l| {
            l.state = LeaseState::Ready;
            l.pid = None;
            l.files = files;
            l.leftover.clear();
        })
    }

    /// Marks the lease as being removed by this process.
    pub fn mark_removing(&self, branch: &str, leftover: Vec<String>) -> Result<Lease> {
        self.update(branch, |l| {
            l.state = LeaseState::Removing;
            l.pid = Some(std::process::id());
            l.leftover = leftover;
        })
    }

    /// Changes one lease under the lock.
    pub fn update(&self, branch: &str, f: impl FnOnce(&mut Lease)) -> Result<Lease> {
        let mut locked = self.registry.lock()?;
        let Some(lease) = locked.state.find_mut(&self.repo.common_dir, branch) else {
            bail!(
                "the lease of branch {branch:?} vanished from the registry (did `pwt gc` remove it?)"
            );
        };
        f(lease);
        lease.updated_at = now();
        let lease = lease.clone();
        locked.commit()?;
        Ok(lease)
    }

    /// Deletes the lease of `branch` in `repo`, remembering its ports.
    pub fn release(&self, repo: &Path, branch: &str) -> Result<()> {
        self.release_with(repo, branch, false)
    }

    /// [`Session::release`]; with `keep_data`, its resources are remembered as kept.
    pub fn release_with(&self, repo: &Path, branch: &str, keep_data: bool) -> Result<()> {
        let mut locked = self.registry.lock()?;
        if locked.state.release_with(repo, branch, keep_data).is_some() {
            locked.commit()?;
        }
        Ok(())
    }
}
