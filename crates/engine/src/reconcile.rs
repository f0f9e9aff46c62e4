//! Reconcile (`pwt gc`): find what was left behind ([`Project::reconcile_plan`], from git's
//! worktree list, the worktrees' env files and the markers on the services), then do one
//! item at a time ([`Project::reconcile`]), each checked again under the registry lock right
//! before it happens, so a reconcile and a concurrent `new`, `up` or `rm` cannot hurt each
//! other. Every removal goes through the one teardown.

use std::path::Path;

use pwt_alloc::{Claim, LeaseState, Owner};
use pwt_core::{ResourceKind, Resources};

use crate::error::{Error, ErrorKind, Result};
use crate::events::Reporter;
use crate::git::changes_besides_removal;
use crate::paths::shell_word;
use crate::plan::{Action, GcFacts, GcPlan, Orphan, plan_gc};
use crate::project::Project;
use crate::remove::{TeardownPlan, WorktreeStep};
use crate::services::{Services, chain};

/// What `pwt gc` looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReconcileRequest {
    /// Also drop data kept by `pwt rm --keep-data`.
    pub kept: bool,
    /// Also release leases of repositories that no longer exist.
    pub all_repos: bool,
}

/// What a reconcile found, and the services it could not ask.
#[derive(Clone, Debug, Default)]
pub struct Reconciliation {
    /// What it may do, and what it spares.
    pub plan: GcPlan,
    /// Services that could not be asked for orphans.
    pub problems: Vec<String>,
}

/// What [`Project::reconcile_due`] did: each item done (its branch, or what it was),
/// skipped with why, or failed with the error.
#[derive(Clone, Debug, Default)]
pub struct Reconciled {
    /// Done.
    pub done: Vec<String>,
    /// Skipped: another pwt works on it.
    pub skipped: Vec<(String, String)>,
    /// Failed.
    pub failed: Vec<(String, String)>,
}

impl Action {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Self::Gone(l) => format!(
                "{}: worktree gone ({}): stop what still runs for it, remove its data and lease",
                l.branch.as_str(),
                l.path.display()
            ),
            Self::Undo(l) => format!("{}: set-up interrupted: roll it back", l.branch.as_str()),
            Self::Finish(l) => format!("{}: teardown interrupted: finish it", l.branch.as_str()),
            Self::Moved(l, to) => format!(
                "{}: worktree moved to {}: follow it",
                l.branch.as_str(),
                to.display()
            ),
            Self::RepoGone(l) => format!(
                "{}: repository {} is gone: release its lease",
                l.branch.as_str(),
                l.repo.display()
            ),
            Self::Orphan(o) if o.kept => format!(
                "{}: kept by `pwt rm --keep-data` (a registry this pwt does not know holds it)",
                o.resources.describe(o.kind).unwrap_or_default()
            ),
            Self::Orphan(o) => format!(
                "{}: pwt's, but no worktree owns it",
                o.resources.describe(o.kind).unwrap_or_default()
            ),
            Self::Containers(list) => {
                let names: Vec<&str> = list.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "container(s) {} of a worktree that is gone ({}): remove them",
                    names.join(", "),
                    list.first()
                        .and_then(|c| c.working_dir.as_deref())
                        .map(|d| d.display().to_string())
                        .unwrap_or_default()
                )
            }
            Self::Processes { slug, running } => {
                let each: Vec<String> = running
                    .iter()
                    .map(|p| format!("{} (pid {})", p.name, p.pid))
                    .collect();
                format!(
                    "{}: started by `pwt dev` for worktree {slug:?}, which pwt no longer has: stop them",
                    each.join(", ")
                )
            }
            Self::TeamHold(h) => format!(
                "{} {:?} on {}: held in the team store for {}, which has no lease here: let it go",
                h.kind, h.name, h.server, h.who.branch
            ),
            Self::Kept(k) => {
                let what: Vec<String> = k
                    .resources
                    .kinds()
                    .into_iter()
                    .filter_map(|kind| k.resources.describe(kind))
                    .collect();
                format!(
                    "{}: {}: kept by `pwt rm --keep-data`",
                    k.branch.as_str(),
                    what.join(", ")
                )
            }
        }
    }

    /// The branch it is about, for lease actions.
    pub fn branch(&self) -> Option<&str> {
        match self {
            Self::Gone(l)
            | Self::Undo(l)
            | Self::Finish(l)
            | Self::Moved(l, _)
            | Self::RepoGone(l) => Some(l.branch.as_str()),
            Self::Kept(k) => Some(k.branch.as_str()),
            Self::TeamHold(h) => Some(h.who.branch.as_str()),
            Self::Orphan(_) | Self::Containers(_) | Self::Processes { .. } => None,
        }
    }

    /// True when `pwt gc --yes` does it (kept data only with `--kept`).
    pub fn is_due(&self, req: &ReconcileRequest) -> bool {
        !matches!(
            self,
            Self::Kept(_) | Self::Orphan(Orphan { kept: true, .. })
        ) || req.kept
    }
}

impl Project {
    /// What a reconcile would do in this repository.
    pub fn reconcile_plan(&self, req: &ReconcileRequest) -> Result<Reconciliation> {
        let state = self.state()?;
        let worktrees = self.repo.worktrees()?;
        let declared = self.declared(None)?;
        let services = Services::new(self)?;
        let (found, problems) = services.block_on(services.marked()).unwrap_or_default();
        let repo_key = self.repo.key();
        let facts = GcFacts {
            repo: &self.repo.common_dir,
            repo_key: &repo_key,
            worktrees: &worktrees,
            declared: &declared,
            found: &found,
            all_repos: req.all_repos,
            repo_exists: &|p: &Path| p.exists(),
            path_exists: &|p: &Path| p.exists(),
            follows: &|l| self.moved_to(l, &worktrees).is_some(),
        };
        let mut plan = plan_gc(&state, &facts);
        self.spare_interrupted_work(&mut plan);
        plan.actions
            .extend(self.orphan_containers(&state, &worktrees));
        plan.actions.extend(self.stray_dev_processes(&state));
        let mut problems = problems;
        let stale = self
            .team()
            .map_or(Ok(Vec::new()), |t| t.stale_holds(&state, &declared));
        match stale {
            Ok(holds) => plan.actions.extend(holds.into_iter().map(Action::TeamHold)),
            Err(e) => problems.push(format!("cannot read the team store: {}", chain(&e))),
        }
        Ok(Reconciliation { plan, problems })
    }

    /// Does every item of `found` that `req` makes due ([`Action::is_due`]), one by one;
    /// an item another pwt took over meanwhile is skipped (not a failure of this run),
    /// and the port claims of repositories that no longer exist are released first.
    pub fn reconcile_due(
        &self,
        found: &Reconciliation,
        req: &ReconcileRequest,
        reporter: &mut dyn Reporter,
    ) -> Reconciled {
        let mut out = Reconciled::default();
        // No decision to make: nothing can use the ports of a repository that is gone.
        let released = self.release_gone_claims().unwrap_or(0);
        if released > 0 {
            out.done.push(format!(
                "released {released} port claim(s) of repositories that no longer exist"
            ));
        }
        for a in found.plan.actions.iter().filter(|a| a.is_due(req)) {
            let label = a.describe();
            match self.reconcile(a, reporter) {
                Ok(()) => out.done.push(a.branch().map_or(label, str::to_owned)),
                Err(e) if e.kind() == ErrorKind::Busy => out.skipped.push((label, e.to_string())),
                Err(e) => out.failed.push((label, e.report().replace('\n', " "))),
            }
        }
        out
    }

    /// Does one item of a reconcile plan, after checking under the lock that it still holds.
    pub fn reconcile(&self, action: &Action, reporter: &mut dyn Reporter) -> Result<()> {
        match action {
            Action::Gone(l) => {
                // Its containers first (Compose ran them in the directory that is gone), and
                // what provably runs for it: its `pwt dev` groups, processes still working
                // in its deleted directory.
                self.stop_containers(l, false, reporter)?;
                self.stop_what_ran_in_gone(l, reporter);
                let lease = self.mark_removing_in(
                    &l.repo,
                    l.branch.as_str(),
                    |now| {
                        let gone = now.state == LeaseState::Ready
                            && !now.path.exists()
                            && !self.git_lists(now.branch.as_str());
                        still(gone, now.branch.as_str())
                    },
                    TeardownPlan::gone(l),
                )?;
                self.finish_teardown(&lease, &TeardownPlan::gone(&lease), reporter)
            }
            Action::Undo(l) => {
                let lease = self.mark_removing_in(
                    &l.repo,
                    l.branch.as_str(),
                    |now| {
                        still(
                            now.state == LeaseState::Creating && now.interrupted(),
                            now.branch.as_str(),
                        )
                    },
                    TeardownPlan::undo_interrupted(l),
                )?;
                self.finish_teardown(&lease, &TeardownPlan::undo_interrupted(&lease), reporter)
            }
            Action::Finish(l) => self.finish_interrupted_teardown(l, reporter),
            Action::Moved(l, to) => {
                let shown = self.moved_to(l, &self.repo.worktrees()?) == Some(to.as_path());
                let to = to.clone();
                self.leases()
                    .update_in(&l.repo, l.branch.as_str(), |now| {
                        still(now.path == l.path && shown, now.branch.as_str())?;
                        now.path = to;
                        Ok(())
                    })
                    .map(|_| ())
            }
            Action::RepoGone(l) => {
                let lease = self.mark_removing_in(
                    &l.repo,
                    l.branch.as_str(),
                    |now| still(!now.repo.exists(), now.branch.as_str()),
                    TeardownPlan::repo_gone(l),
                )?;
                self.finish_teardown(&lease, &TeardownPlan::repo_gone(&lease), reporter)
            }
            Action::Orphan(o) => self.drop_orphan(o),
            Action::TeamHold(h) => self.release_stale_hold(h),
            Action::Containers(list) => self.remove_orphan_containers(list),
            Action::Processes { slug, running } => self.stop_stray(slug, running, reporter),
            Action::Kept(k) => self.drop_kept(k),
        }
    }

    /// Lets go a team hold no lease accounts for, checked again first: a lease made
    /// meanwhile accounts for it.
    fn release_stale_hold(&self, h: &pwt_provision::Hold) -> Result<()> {
        let state = self.state()?;
        let Some(team) = self.team() else {
            return Ok(());
        };
        if team.stale_holds(&state, &self.declared(None)?)?.contains(h) {
            team.release_hold(h)
        } else {
            Err(Error::new(
                ErrorKind::Busy,
                "a lease holds it now; left alone",
            ))
        }
    }

    /// Drops data kept with `pwt rm --keep-data`, claimed first so no two runs drop it.
    fn drop_kept(&self, k: &pwt_alloc::Kept) -> Result<()> {
        let taken = self.leases().with_state(|state| {
            let Some(k) = state.take_kept(&k.repo, k.branch.as_str()) else {
                return Ok(None);
            };
            state.claims.push(claim(&k.repo, &k.marker(), &k.resources));
            Ok(Some(k))
        })?;
        let Some(k) = taken else {
            return Err(changed(k.branch.as_str()));
        };
        let marker = k.marker();
        self.drop_claimed(&k.resources, &marker)
    }

    /// True when git lists a worktree of `branch` whose directory exists.
    fn git_lists(&self, branch: &str) -> bool {
        self.repo
            .worktrees()
            .map(|ws| {
                ws.iter()
                    .any(|w| w.exists && w.branch.as_deref() == Some(branch))
            })
            .unwrap_or(true)
    }

    fn mark_removing_in(
        &self,
        repo: &Path,
        branch: &str,
        check: impl FnOnce(&pwt_alloc::Lease) -> Result<()>,
        plan: TeardownPlan,
    ) -> Result<pwt_alloc::Lease> {
        let leftover = plan.leftover();
        let keep = plan.keep.kinds();
        self.leases().update_in(repo, branch, |l| {
            if let Some(owner) = l.busy() {
                return Err(Error::new(
                    ErrorKind::Busy,
                    format!("another pwt (pid {}) works on it now", owner.pid),
                ));
            }
            check(l)?;
            if leftover.contains(&pwt_alloc::Leftover::Worktree) && l.dir_id.is_none() {
                l.dir_id = crate::paths::dir_identity(&l.path);
            }
            l.state = LeaseState::Removing;
            l.owner = Some(Owner::current());
            l.leftover = leftover;
            l.keep = keep;
            Ok(())
        })
    }

    /// Running `pwt dev` records of worktrees of this repository without a lease (the main
    /// worktree's aside): one action per worktree.
    fn stray_dev_processes(&self, state: &pwt_alloc::State) -> Vec<Action> {
        let leased: Vec<&str> = state
            .of_repo(&self.repo.common_dir)
            .map(|l| l.slug.as_str())
            .collect();
        self.records()
            .slugs()
            .into_iter()
            .filter(|s| s != pwt_core::MAIN_SLUG && !leased.contains(&s.as_str()))
            .filter_map(|slug| {
                let running = self.running_processes(&slug);
                (!running.is_empty()).then_some(Action::Processes { slug, running })
            })
            .collect()
    }

    /// Stops what gc found running for a worktree without a lease, checked again first:
    /// still no lease of the slug, each still the recorded process (pid and start time).
    fn stop_stray(
        &self,
        slug: &str,
        running: &[crate::dev::DevProcess],
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let state = self.state()?;
        if state
            .of_repo(&self.repo.common_dir)
            .any(|l| l.slug.as_str() == slug)
        {
            return Err(Error::new(
                ErrorKind::Busy,
                format!("worktree {slug:?} has a lease again since gc looked; left alone"),
            ));
        }
        let now: Vec<crate::dev::DevProcess> = self
            .running_processes(slug)
            .into_iter()
            .filter(|p| running.contains(p))
            .collect();
        for (p, stopped) in crate::dev::stop_these(now, std::time::Duration::from_secs(5)) {
            if stopped {
                reporter.report(crate::events::Event::Step(
                    crate::events::Step::StopProcess {
                        name: p.name.clone(),
                        pid: p.pid,
                        why: format!("started by `pwt dev` for {slug:?}, which is gone"),
                    },
                ));
            } else {
                reporter.report(crate::events::Event::Warning(format!(
                    "could not stop {} (pid {}); stop it yourself",
                    p.name, p.pid
                )));
            }
        }
        self.forget_dev_processes(slug);
        Ok(())
    }

    /// Stops what provably ran for the gone worktree of `lease`: its `pwt dev` groups (pid
    /// and start time recorded) and processes whose working directory is inside its
    /// deleted directory, each named.
    fn stop_what_ran_in_gone(&self, lease: &pwt_alloc::Lease, reporter: &mut dyn Reporter) {
        let slug = lease.slug.as_str();
        let running = self.running_processes(slug);
        for p in &running {
            reporter.report(crate::events::Event::Step(
                crate::events::Step::StopProcess {
                    name: p.name.clone(),
                    pid: p.pid,
                    why: "started by `pwt dev` in the deleted worktree".to_owned(),
                },
            ));
        }
        for (p, stopped) in crate::dev::stop_these(running, std::time::Duration::from_secs(5)) {
            if !stopped {
                reporter.report(crate::events::Event::Warning(format!(
                    "could not stop {} (pid {}); stop it yourself",
                    p.name, p.pid
                )));
            }
        }
        let found = crate::processes::working_in(&lease.path);
        for f in &found {
            reporter.report(crate::events::Event::Step(
                crate::events::Step::StopProcess {
                    name: f.name.clone(),
                    pid: f.pid,
                    why: "working in the deleted worktree".to_owned(),
                },
            ));
        }
        for f in crate::processes::stop(&found, std::time::Duration::from_secs(5)) {
            reporter.report(crate::events::Event::Warning(format!(
                "could not stop {} (pid {}); stop it yourself",
                f.name, f.pid
            )));
        }
    }

    /// Containers with this repository's marker (`PWT_OWNER`) whose worktree is gone: no
    /// lease of this registry has the marker, and Compose ran them in a directory that is no
    /// worktree git lists. One action per Compose project.
    fn orphan_containers(
        &self,
        state: &pwt_alloc::State,
        worktrees: &[pwt_alloc::WorktreeEntry],
    ) -> Vec<Action> {
        let Some(docker) = self.docker() else {
            return Vec::new();
        };
        let prefix = pwt_core::repo_marker_prefix(&self.repo.key());
        let mut by_project: std::collections::BTreeMap<String, Vec<crate::docker::Container>> =
            Default::default();
        for c in docker.containers(&[]).unwrap_or_default() {
            let Some(owner) = c.owner.as_deref().filter(|o| o.starts_with(&prefix)) else {
                continue;
            };
            // PWT_OWNER comes from a worktree's env file (`.env.docker`): a container
            // started with it, by Compose or `docker run --env-file`, is that worktree's.
            let leased = state.leases.iter().any(|l| l.marker() == owner);
            let listed = c
                .working_dir
                .as_deref()
                .is_some_and(|d| worktrees.iter().any(|w| w.exists && d.starts_with(&w.root)));
            if !leased && !listed {
                by_project
                    .entry(c.project.clone().unwrap_or_else(|| c.name.clone()))
                    .or_default()
                    .push(c);
            }
        }
        by_project.into_values().map(Action::Containers).collect()
    }

    /// Removes containers gc found, each checked again first: still this repository's
    /// marker, still no lease of it.
    fn remove_orphan_containers(&self, list: &[crate::docker::Container]) -> Result<()> {
        let Some(docker) = self.docker() else {
            return Ok(());
        };
        let state = self.state()?;
        let now: Vec<crate::docker::Container> = docker
            .containers(&[])?
            .into_iter()
            .filter(|c| list.iter().any(|o| o.id == c.id && o.owner == c.owner))
            .filter(|c| {
                !state
                    .leases
                    .iter()
                    .any(|l| Some(l.marker().as_str()) == c.owner.as_deref())
            })
            .collect();
        docker.remove(&now).map(|_| ())
    }

    /// An interrupted set-up whose worktree holds someone's work since its checkout is
    /// not rolled back: it is named among what gc spares, with the two ways on.
    fn spare_interrupted_work(&self, plan: &mut GcPlan) {
        let mut spared = Vec::new();
        plan.actions.retain(|a| {
            let Action::Undo(l) = a else { return true };
            let Some(work) = self.work_since_checkout(l) else {
                return true;
            };
            let b = shell_word(l.branch.as_str());
            spared.push(crate::plan::Spared {
                what: format!("the interrupted set-up of {}", l.branch.as_str()),
                why: format!(
                    "{} has {work} since its checkout: `pwt up {b}` finishes the set-up and keeps it, `pwt rm --force {b}` discards it",
                    l.path.display()
                ),
            });
            false
        });
        plan.spared.extend(spared);
    }

    fn finish_teardown(
        &self,
        lease: &pwt_alloc::Lease,
        plan: &TeardownPlan,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let report = self.teardown(lease, plan, reporter)?;
        if report.stuck.is_empty() {
            return Ok(());
        }
        let b = shell_word(lease.branch.as_str());
        let now = self
            .state()
            .ok()
            .and_then(|s| s.find(&lease.repo, lease.branch.as_str()).map(|l| l.state));
        let hint = match now {
            Some(LeaseState::Creating) => format!(
                "the set-up stays interrupted: `pwt up {b}` finishes it, `pwt rm --force {b}` discards it"
            ),
            _ => format!(
                "the lease stays `removing`; `pwt rm {b}` or `pwt gc` finishes it once the cause is fixed"
            ),
        };
        Err(Error::new(ErrorKind::Incomplete, report.stuck.join("; ")).hint(hint))
    }

    fn finish_interrupted_teardown(
        &self,
        l: &pwt_alloc::Lease,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let plan = TeardownPlan::finish(l);
        // Half removed already (no `.git`): nothing of the user's can be told apart to keep.
        let whole = l.path.join(".git").exists();
        if plan.worktree == (WorktreeStep::Remove { force: false }) && whole {
            let dirty = changes_besides_removal(&l.path)?;
            if !dirty.is_empty() {
                return Err(
                    Error::new(ErrorKind::Refused, "it has uncommitted changes").hint(format!(
                        "`pwt rm --force {}` if they can go",
                        shell_word(l.branch.as_str())
                    )),
                );
            }
        }
        let lease = self.mark_removing_in(
            &l.repo,
            l.branch.as_str(),
            |now| {
                still(
                    now.state == LeaseState::Removing && now.interrupted(),
                    now.branch.as_str(),
                )
            },
            plan,
        )?;
        self.finish_teardown(&lease, &TeardownPlan::finish(&lease), reporter)
    }

    /// Claims an orphan under the lock (refusing when something owns it now), drops it with
    /// its marker, and lets the claim go.
    fn drop_orphan(&self, o: &Orphan) -> Result<()> {
        let declared = self.declared(None)?;
        if declared_by(&declared, o) {
            return Err(Error::new(
                ErrorKind::Busy,
                "a worktree declares it now; left alone",
            ));
        }
        let claimed = self.leases().with_state(|state| {
            state.prune_claims();
            let held = state
                .leases
                .iter()
                .map(|l| &l.resources)
                .chain(state.kept.iter().map(|k| &k.resources))
                .chain(state.claims.iter().map(|c| &c.resources))
                .any(|r| holds(r, o.kind, &o.resources));
            if held {
                return Ok(None);
            }
            state
                .claims
                .push(claim(&self.repo.common_dir, &o.marker, &o.resources));
            Ok(Some(()))
        })?;
        if claimed.is_none() {
            return Err(Error::new(
                ErrorKind::Busy,
                "a worktree owns it now; left alone",
            ));
        }
        self.drop_claimed(&o.resources, &o.marker)
    }

    /// Drops claimed resources (marker-checked), then forgets the claim, whatever happened.
    fn drop_claimed(&self, resources: &Resources, marker: &str) -> Result<()> {
        let services = Services::new(self)?;
        let steps = services
            .block_on(services.drop(resources, marker, false, &[]))
            .unwrap_or_default();
        let me = Owner::current();
        self.leases().with_state(|state| {
            state
                .claims
                .retain(|c| !(c.owner == me && c.marker == marker && &c.resources == resources));
            Ok(Some(()))
        })?;
        let failed: Vec<String> = steps
            .into_iter()
            .filter_map(|s| s.result.err().map(|e| format!("{}: {}", s.what, chain(&e))))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Service, failed.join("; ")))
        }
    }
}

fn claim(repo: &Path, marker: &str, resources: &Resources) -> Claim {
    Claim {
        repo: repo.to_owned(),
        marker: marker.to_owned(),
        resources: resources.clone(),
        owner: Owner::current(),
    }
}

fn holds(r: &Resources, kind: ResourceKind, o: &Resources) -> bool {
    match kind {
        ResourceKind::Database => r.database.is_some() && r.database == o.database,
        ResourceKind::Vhost => r.vhost.is_some() && r.vhost == o.vhost,
        ResourceKind::Redis => r.redis.is_some() && r.redis == o.redis,
    }
}

fn declared_by(d: &pwt_alloc::Declared, o: &Orphan) -> bool {
    crate::plan::declares_resources(d, &o.resources)
}

fn still(holds: bool, branch: &str) -> Result<()> {
    if holds { Ok(()) } else { Err(changed(branch)) }
}

fn changed(branch: &str) -> Error {
    Error::new(
        ErrorKind::Busy,
        format!("{branch:?} changed since gc looked; left alone"),
    )
    .hint("run `pwt gc` again")
}
