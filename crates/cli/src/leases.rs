//! Changes to leases, each under the registry lock: file work only (no network, no hooks, no
//! git writes), so the lock is held for milliseconds.

use std::path::{Path, PathBuf};

use pwt_alloc::{Lease, LeaseState, Leftover, Owner, State, now, port_is_free, scan_env_files};
use pwt_core::{BranchName, ResourceKind, Resources, resource_names};

use crate::error::{Error, ErrorKind, Result};
use crate::plan::{Effects, LeaseAsk, LeaseFacts, LeasePlan, plan_lease};
use crate::project::Project;
use crate::services::RedisPlan;

impl Project {
    /// What the env files of the repository's worktrees declare (the cooperative scan),
    /// leaving out `skip`.
    pub(crate) fn declared(&self, skip: Option<&Path>) -> Result<pwt_alloc::Declared> {
        let roots: Vec<PathBuf> = self
            .repo
            .worktrees()?
            .into_iter()
            .filter(|w| w.exists)
            .map(|w| w.root)
            .collect();
        let files: Vec<String> = self.env_files()?.into_iter().map(|(_, n)| n).collect();
        let mut names: Vec<&str> = files.iter().map(String::as_str).collect();
        for default in [pwt_core::config::DOTENV_FILE, pwt_core::config::MISE_FILE] {
            if !names.contains(&default) {
                names.push(default);
            }
        }
        Ok(scan_env_files(&roots, &names, skip))
    }

    /// Plans the lease of `branch` and records it (see [`plan_lease`]). `root` is the
    /// worktree of an adoption; a new worktree's path comes from `explicit` or the template.
    pub(crate) fn record_lease(
        &self,
        ask: &LeaseAsk<'_>,
        redis: RedisPlan,
        explicit: Option<&Path>,
        root: Option<&Path>,
    ) -> Result<LeasePlan> {
        let mut locked = self.registry.lock()?;
        locked.state.prune_claims();
        let declared = self.declared(root)?;
        let services = self.services();
        let main_ports = self.main_ports().into_values().collect();
        let project = self.project_name();
        let repo_key = self.repo.key();
        let facts = LeaseFacts {
            repo: &self.repo.common_dir,
            repo_key: &repo_key,
            project: &project,
            services: &services,
            range: (self.config.ports.range[0], self.config.ports.range[1]),
            main_ports,
            declared: &declared,
            redis,
            now: now(),
            owner: Owner::current(),
        };
        let branch = ask.branch.as_str();
        let path = |slug: &pwt_core::Slug| match root {
            Some(r) => Ok(r.to_owned()),
            None => self.worktree_path(explicit, branch, slug.as_str()),
        };
        let names = |slug: &str, ports: &_| self.resource_names(branch, slug, ports, redis);
        let fx = Effects {
            path: &path,
            names: &names,
            is_free: &port_is_free,
        };
        let plan = plan_lease(&locked.state, &facts, ask, &fx)?;
        if plan.fresh && !plan.lease.journal.kept.is_empty() {
            locked.state.take_kept(&self.repo.common_dir, branch);
        }
        match locked.state.find_mut(&self.repo.common_dir, branch) {
            Some(slot) => *slot = plan.lease.clone(),
            None => locked.state.leases.push(plan.lease.clone()),
        }
        self.ensure_excluded()?;
        locked.commit()?;
        Ok(plan)
    }

    /// The names the templates give a worktree; on a Redis Cluster in db mode, a prefix.
    fn resource_names(
        &self,
        branch: &str,
        slug: &str,
        ports: &std::collections::BTreeMap<String, u16>,
        redis: RedisPlan,
    ) -> Result<Resources> {
        let ctx = self.context(branch, slug, ports);
        let mut names = resource_names(&self.config, &ctx, &self.templates)?;
        if redis == RedisPlan::ClusterPrefix {
            names.redis = pwt_core::redis_prefix_name(&self.config, &ctx, &self.templates)?
                .map(pwt_core::RedisSlot::Prefix);
        }
        Ok(names)
    }

    /// Changes the lease of `branch` under the lock; the closure may refuse.
    pub(crate) fn update_lease(
        &self,
        branch: &str,
        f: impl FnOnce(&mut Lease) -> Result<()>,
    ) -> Result<Lease> {
        self.update_lease_in(&self.repo.common_dir, branch, f)
    }

    /// [`Project::update_lease`] for a lease of any repository.
    pub(crate) fn update_lease_in(
        &self,
        repo: &Path,
        branch: &str,
        f: impl FnOnce(&mut Lease) -> Result<()>,
    ) -> Result<Lease> {
        let mut locked = self.registry.lock()?;
        let Some(lease) = locked.state.find_mut(repo, branch) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "the lease of branch {branch:?} vanished from the registry (did `pwt gc` remove it?)"
                ),
            ));
        };
        f(lease)?;
        lease.updated_at = now();
        let lease = lease.clone();
        locked.commit()?;
        Ok(lease)
    }

    /// Records, before creating them, the resources a set-up found absent.
    pub(crate) fn record_creating(&self, branch: &str, kinds: &[ResourceKind]) -> Result<Lease> {
        self.update_lease(branch, |l| {
            for k in kinds {
                if !l.journal.creating.contains(k) {
                    l.journal.creating.push(*k);
                }
            }
            Ok(())
        })
    }

    /// Marks the lease `removing` by this process, with what is to go, unless another live
    /// pwt works on it (busy). `check` may refuse on the lease as it is under the lock.
    pub(crate) fn mark_removing(
        &self,
        branch: &str,
        leftover: Vec<Leftover>,
        check: impl FnOnce(&Lease) -> Result<()>,
    ) -> Result<Lease> {
        self.update_lease(branch, |l| {
            if let Some(owner) = l.busy() {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "branch {:?} is being {} by another pwt (pid {})",
                        l.branch.as_str(),
                        if l.state == LeaseState::Creating {
                            "set up"
                        } else {
                            "removed"
                        },
                        owner.pid
                    ),
                )
                .hint("wait for it to finish, then try again"));
            }
            check(l)?;
            l.state = LeaseState::Removing;
            l.owner = Some(Owner::current());
            l.leftover = leftover;
            Ok(())
        })
    }

    /// Deletes the lease of `branch` in `repo`, remembering its ports, and `keep` as kept
    /// data.
    pub(crate) fn release(&self, repo: &Path, branch: &BranchName, keep: &Resources) -> Result<()> {
        let mut locked = self.registry.lock()?;
        if locked.state.release(repo, branch.as_str(), keep).is_some() {
            locked.commit()?;
        }
        Ok(())
    }

    /// The registry, locked, for a reconcile's re-check.
    pub(crate) fn with_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut locked = self.registry.lock()?;
        let out = f(&mut locked.state)?;
        if out.is_some() {
            locked.commit()?;
        }
        Ok(out)
    }
}
