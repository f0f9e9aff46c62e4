//! Changes to leases, each under the registry lock: file work only (no network, no hooks, no
//! git writes), so the lock is held for milliseconds.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pwt_alloc::{Lease, LeaseState, Leftover, Owner, State, now, port_is_free, scan_env_files};
use pwt_core::{BranchName, ResourceKind, Resources, resource_names};

use crate::error::{Error, ErrorKind, Result};
use crate::info::main_redis_db;
use crate::plan::{Effects, LeaseAsk, LeaseFacts, LeasePlan, plan_lease};
use crate::project::Project;
use crate::services::RedisPlan;

/// The lease plan, its ports claimed machine-wide. Another user's pwt may claim a port
/// between the read and the claim: then plan again without it.
fn plan_and_claim(
    state: &pwt_alloc::State,
    facts: &mut LeaseFacts<'_>,
    ask: &LeaseAsk<'_>,
    fx: &Effects<'_>,
    claims: Option<&pwt_alloc::PortClaims>,
    who: &pwt_alloc::Claimant,
) -> Result<LeasePlan> {
    for _ in 0..8 {
        let plan = plan_lease(state, facts, ask, fx)?;
        let Some(claims) = claims else {
            return Ok(plan);
        };
        let lost: Vec<u16> = plan
            .lease
            .ports
            .values()
            .copied()
            .filter(|p| !claims.claim(*p, who).unwrap_or(true))
            .collect();
        if lost.is_empty() {
            return Ok(plan);
        }
        facts.claimed.extend(lost);
    }
    Err(Error::new(
        ErrorKind::Exhausted,
        "the ports pwt planned kept being claimed by other users' pwt meanwhile",
    )
    .hint("try again in a moment"))
}

/// Claims of this registry that no lease of it holds any more (a port a lease gave up, a
/// release a kill cut short): other users may have them.
fn release_stale_claims(claims: &pwt_alloc::PortClaims, registry_id: &str, state: &State) {
    let held: HashSet<u16> = state
        .leases
        .iter()
        .flat_map(|l| l.ports.values().copied())
        .collect();
    for (port, who) in claims.all() {
        if who.is_some_and(|w| w.registry == registry_id) && !held.contains(&port) {
            claims.release(port, registry_id);
        }
    }
}

/// What a lease moving to new names keeps away from: the names and Redis DB indexes found
/// held by someone else (on a server, or in the team store), and what others hold in the
/// team store, as last read. It only grows while a set-up runs, so every move makes
/// progress.
#[derive(Clone, Debug, Default)]
pub(crate) struct Avoid {
    /// (kind, name as described) found someone else's.
    pub names: HashSet<(ResourceKind, String)>,
    /// Redis DB indexes found someone else's.
    pub dbs: HashSet<u16>,
    /// What others hold in the team store.
    pub held: Vec<Resources>,
}

impl Avoid {
    /// Notes `kinds` of `resources` as someone else's. False when all of them were noted
    /// already: a move would not get anywhere.
    pub(crate) fn note(&mut self, resources: &Resources, kinds: &[ResourceKind]) -> bool {
        let mut progress = false;
        for kind in kinds {
            if let (ResourceKind::Redis, Some(n)) = (kind, resources.redis_db()) {
                progress |= self.dbs.insert(n);
            } else if let Some(name) = resources.describe(*kind) {
                progress |= self.names.insert((*kind, name));
            }
        }
        progress
    }
}

/// A repository (its common dir) that no longer exists: not there at all, as opposed to
/// one this user may not look into.
pub(crate) fn repo_is_gone(common_dir: &Path) -> bool {
    std::fs::symlink_metadata(common_dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

impl Project {
    /// Releases the machine's port claims of repositories that no longer exist (`pwt gc`;
    /// `pwt new` does it too). Returns how many went.
    pub fn release_gone_claims(&self) -> Result<usize> {
        let Some(claims) = self.leases().port_claims() else {
            return Ok(0);
        };
        let _locked = self.registry.lock()?;
        Ok(claims.release_gone(repo_is_gone))
    }

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
    /// What `docker` says containers publish is never leased, nor a Compose project name
    /// the engine knows given to a new lease.
    pub(crate) fn record_lease(
        &self,
        ask: &LeaseAsk<'_>,
        redis: RedisPlan,
        (explicit, root): (Option<&Path>, Option<&Path>),
        held: &[Resources],
        docker: crate::containers::DockerFacts,
    ) -> Result<LeasePlan> {
        crate::paths::text_root(&self.repo.common_dir, "repository")?;
        let mut locked = self.registry.lock()?;
        let leases = self.leases();
        let claiming = leases.claims_to_make()?;
        let claims = claiming.as_ref().map(|(c, _)| c);
        locked.state.prune_claims();
        let declared = self.declared(root)?;
        let services = self.services();
        let mut main_ports: HashSet<u16> = self.main_ports().into_values().collect();
        main_ports.insert(self.config.proxy_port());
        let project = self.project_name();
        let repo_key = self.repo.key();
        let registry_id = self.registry_id();
        let main_redis_db = self
            .config
            .redis
            .as_ref()
            .map_or(0, |r| main_redis_db(&r.url));
        let mut facts = LeaseFacts {
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
            registry_id: &registry_id,
            claimed: claims
                .map(|c| c.others(&registry_id))
                .unwrap_or_default()
                .into_iter()
                .chain(docker.ports)
                .collect(),
            compose_projects: &docker.projects,
            main_redis_db,
            held,
        };
        let branch = ask.branch.as_str();
        let path = |slug: &pwt_core::Slug| self.lease_path((explicit, root), branch, slug);
        let names = |slug: &str, ports: &_| self.resource_names(branch, slug, ports, redis);
        let fx = Effects {
            path: &path,
            names: &names,
            is_free: &port_is_free,
        };
        let who = pwt_alloc::Claimant {
            registry: registry_id.clone(),
            repo: self.repo.common_dir.clone(),
            branch: branch.to_owned(),
            state_dir: Some(self.registry.dir().to_owned()),
        };
        let plan = plan_and_claim(&locked.state, &mut facts, ask, &fx, claims, &who)?;
        if plan.fresh && !plan.lease.journal.kept.is_empty() {
            locked.state.take_kept(&self.repo.common_dir, branch);
        }
        match locked.state.find_mut(&self.repo.common_dir, branch) {
            Some(slot) => *slot = plan.lease.clone(),
            None => locked.state.leases.push(plan.lease.clone()),
        }
        if let Some(claims) = claims {
            // Under the lock: no pwt of this registry is between its claim and its commit.
            release_stale_claims(claims, &registry_id, &locked.state);
        }
        self.ensure_excluded()?;
        locked.commit()?;
        Ok(plan)
    }

    /// Where the lease of `branch` has its worktree: `root` (an adoption's), else `explicit`
    /// or the template's path for `slug`; UTF-8 only (the registry, the env files and the
    /// variables name it, and they hold text).
    fn lease_path(
        &self,
        (explicit, root): (Option<&Path>, Option<&Path>),
        branch: &str,
        slug: &pwt_core::Slug,
    ) -> Result<PathBuf> {
        let path = match root {
            Some(r) => r.to_owned(),
            None => self.worktree_path(explicit, branch, slug.as_str())?,
        };
        crate::paths::text_root(&path, "worktree")?;
        Ok(path)
    }

    /// Gives the lease other resources of `kinds`, held by someone on the servers or in the
    /// team store whom this registry does not know: the first names, of the disambiguated
    /// slugs in turn, that nobody holds as far as `avoid` and this registry know, or the
    /// lowest free Redis DB index. Under the lock, so no lease of this registry gets them
    /// either. Fails only when no DB index is left (naming who holds them).
    pub(crate) fn reassign(
        &self,
        branch: &str,
        kinds: &[ResourceKind],
        avoid: &Avoid,
        redis: RedisPlan,
    ) -> Result<Lease> {
        let mut locked = self.registry.lock()?;
        let repo = self.repo.common_dir.clone();
        let state = locked.state.clone();
        let Some(lease) = locked.state.find_mut(&repo, branch) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("the lease of {branch:?} vanished"),
            ));
        };
        let others: Vec<&Resources> = state
            .leases
            .iter()
            .filter(|l| !(l.repo == repo && l.branch.as_str() == branch))
            .map(|l| &l.resources)
            .chain(state.kept.iter().map(|k| &k.resources))
            .chain(avoid.held.iter())
            .collect();
        for kind in kinds {
            match (kind, &lease.resources.redis) {
                (ResourceKind::Redis, Some(pwt_core::RedisSlot::Db(_))) => {
                    let RedisPlan::Db(n) = redis else { continue };
                    let next = self.next_db(n, &others, avoid, &state)?;
                    lease.resources.redis = Some(pwt_core::RedisSlot::Db(next));
                }
                _ => {
                    let new = self.next_name(lease, *kind, &others, avoid, redis)?;
                    match kind {
                        ResourceKind::Database => lease.resources.database = new.database,
                        ResourceKind::Vhost => lease.resources.vhost = new.vhost,
                        ResourceKind::Redis => lease.resources.redis = new.redis,
                    }
                }
            }
        }
        let lease = lease.clone();
        locked.commit()?;
        Ok(lease)
    }

    /// The lowest Redis DB index below `n` nobody holds as far as `others` and `avoid` know
    /// (the main worktree's never).
    fn next_db(&self, n: u16, others: &[&Resources], avoid: &Avoid, state: &State) -> Result<u16> {
        let main = self
            .config
            .redis
            .as_ref()
            .map_or(0, |r| crate::info::main_redis_db(&r.url));
        let used: HashSet<u16> = others
            .iter()
            .filter_map(|r| r.redis_db())
            .chain(avoid.dbs.iter().copied())
            .chain([main])
            .collect();
        (1..n).find(|i| !used.contains(i)).ok_or_else(|| {
            let held = avoid.dbs.len()
                + avoid.held.iter().filter(|r| r.redis_db().is_some()).count();
            let here = state
                .leases
                .iter()
                .filter(|l| l.resources.redis_db().is_some())
                .count();
            Error::from(pwt_alloc::AllocError::RedisDbsExhausted {
                max: n.saturating_sub(1),
            })
            .context(format!(
                "every DB index of the Redis server is taken: {held} held by others in the team store or on the server, {here} by this registry's leases"
            ))
        })
    }

    /// The first names of `kind`, of the disambiguated slugs in turn, that nobody holds as
    /// far as `others` and `avoid` know. Each name that is not free is one someone holds,
    /// so among one more candidate than there are holders, one is free.
    fn next_name(
        &self,
        lease: &Lease,
        kind: ResourceKind,
        others: &[&Resources],
        avoid: &Avoid,
        redis: RedisPlan,
    ) -> Result<Resources> {
        let branch = lease.branch.as_str();
        let now = lease.resources.describe(kind).unwrap_or_default();
        let free = |new: &Resources| {
            let name = new.describe(kind);
            new.has(kind)
                && name != Some(now.clone())
                && name
                    .as_ref()
                    .is_some_and(|n| !avoid.names.contains(&(kind, n.clone())))
                && !others.iter().any(|o| o.describe(kind) == name)
        };
        let candidates = others.len() + avoid.names.len() + 2;
        for n in 1..=u32::try_from(candidates).unwrap_or(u32::MAX) {
            let slug = pwt_core::disambiguated_slug_nth(
                lease.slug.as_str(),
                &self.repo.key(),
                branch,
                &self.options.holder,
                n,
            );
            let new = self
                .resource_names(branch, &slug, &lease.ports, redis)?
                .only(&[kind]);
            if free(&new) {
                return Ok(new);
            }
        }
        Err(Error::new(
            ErrorKind::Exists,
            format!("{now} is held by someone else, and so is every other name pwt tried ({candidates})"),
        )
        .hint("put something of your own in the name template (`postgres.database`, `rabbitmq.vhost`, `redis.prefix`)"))
    }

    /// The names the templates give a worktree; on a Redis Cluster in db mode, a prefix.
    pub(crate) fn resource_names(
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
}

impl Project {
    /// The project's leases part: changes to its leases in the registry, each under the
    /// registry's lock, and the machine's port claims.
    pub(crate) fn leases(&self) -> Leases {
        Leases {
            registry: self.registry.clone(),
            repo: self.repo.common_dir.clone(),
            registry_id: self.registry_id(),
            machine_dir: self.options.machine_dir.clone(),
            lock_timeout: self.options.lock_timeout,
        }
    }
}

/// The leases part of a project: the registry (this repository's leases in it, and any
/// other's a reconcile finishes), and the machine's port claims every registry shares.
pub(crate) struct Leases {
    registry: pwt_alloc::Registry,
    repo: PathBuf,
    registry_id: String,
    machine_dir: Option<PathBuf>,
    lock_timeout: std::time::Duration,
}

impl Leases {
    /// The machine's port claims, to be planned and made under a lock every registry
    /// shares (taken after this registry's, always in that order: two registries planning
    /// the same block at once would otherwise each win half of it, again and again), those
    /// of repositories and registries that are gone released first (repositories made and
    /// deleted by the hundred, by agents, CI and scratch clones, would otherwise keep their
    /// ports claimed for good).
    pub(crate) fn claims_to_make(
        &self,
    ) -> Result<Option<(pwt_alloc::PortClaims, pwt_alloc::LockGuard)>> {
        let (Some(claims), Some(dir)) = (self.port_claims(), &self.machine_dir) else {
            return Ok(None);
        };
        let lock = pwt_alloc::machine_lock(dir, "port-claims", self.lock_timeout)?;
        claims.release_gone(repo_is_gone);
        Ok(Some((claims, lock)))
    }

    /// The machine's port claims, where there is a machine directory.
    pub(crate) fn port_claims(&self) -> Option<pwt_alloc::PortClaims> {
        let dir = self.machine_dir.as_ref()?;
        pwt_alloc::PortClaims::open(dir).ok()
    }

    /// Changes the lease of `branch` under the lock; the closure may refuse.
    pub(crate) fn update(
        &self,
        branch: &str,
        f: impl FnOnce(&mut Lease) -> Result<()>,
    ) -> Result<Lease> {
        self.update_in(&self.repo, branch, f)
    }

    /// [`Leases::update`] for a lease of any repository.
    pub(crate) fn update_in(
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
        self.update(branch, |l| {
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
        keep: Vec<ResourceKind>,
        check: impl FnOnce(&Lease) -> Result<()>,
    ) -> Result<Lease> {
        self.update(branch, |l| {
            if let Some(owner) = l.busy() {
                return Err(crate::plan::busy(l, owner));
            }
            check(l)?;
            if leftover.contains(&Leftover::Worktree) && l.dir_id.is_none() {
                l.dir_id = crate::paths::dir_identity(&l.path);
            }
            l.state = LeaseState::Removing;
            l.owner = Some(Owner::current());
            l.leftover = leftover;
            l.keep = keep;
            Ok(())
        })
    }

    /// Deletes the lease of `branch` in `repo`, remembering its ports, and `keep` as kept
    /// data.
    pub(crate) fn release(&self, repo: &Path, branch: &BranchName, keep: &Resources) -> Result<()> {
        let mut locked = self.registry.lock()?;
        if let Some(gone) = locked.state.release(repo, branch.as_str(), keep) {
            // Under the lock, as claims are made.
            if let Some(claims) = self.port_claims() {
                let id = &self.registry_id;
                for p in gone.ports.values() {
                    claims.release(*p, id);
                }
            }
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
