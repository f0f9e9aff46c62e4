//! The one set-up: `pwt new` ([`Project::create`]), `pwt up` ([`Project::adopt`]), the Claude
//! Code hook and every embedder go through [`Project::set_up`]. Each outside effect is
//! recorded in the lease before it happens, so a failure here, or a kill anywhere, can be
//! undone exactly: by this run, or later by reconcile.

use std::path::{Path, PathBuf};

use pwt_alloc::{Lease, LeaseState};
use pwt_core::{BranchName, Environment, ResourceKind};
use pwt_provision::{Outcome, Presence};

use crate::approvals::Gate;
use crate::error::{Error, ErrorKind, Result, Rollback};
use crate::events::{Event, Reporter, Step};
use crate::faults::FaultPoint;
use crate::git::add_args;
use crate::hooks::run_hooks;
use crate::paths::shell_word;
use crate::plan::LeaseAsk;
use crate::project::{Project, Target};
use crate::remove::TeardownPlan;
use crate::services::{Provisioned, Services, chain, lease_marker, service_of, with_progress};

/// `pwt new`: a branch (made if missing), its worktree and environment.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The branch.
    pub branch: BranchName,
    /// Start a new branch from this commit, branch or tag (default: HEAD).
    pub base: Option<String>,
    /// Put the worktree here (relative to the directory the project was opened in) instead
    /// of `worktree.path`.
    pub path: Option<PathBuf>,
    /// Run the post-create hooks.
    pub hooks: bool,
    /// When a hook fails, keep what was set up (`pwt up` runs the hooks again) instead of
    /// rolling it all back.
    pub keep_on_failure: bool,
}

impl CreateRequest {
    /// `pwt new BRANCH`: from HEAD, at `worktree.path`, hooks run, rolled back on failure.
    pub fn new(branch: BranchName) -> Self {
        Self {
            branch,
            base: None,
            path: None,
            hooks: true,
            keep_on_failure: false,
        }
    }
}

/// `pwt up`: an existing worktree adopted, or set up again.
#[derive(Clone, Debug, Default)]
pub struct AdoptRequest {
    /// Which worktree; `None`: the one pwt runs in.
    pub target: Option<crate::Selector>,
    /// Overwrite env files even if they were edited or not written by pwt.
    pub force: bool,
    /// Run the post-create hooks (the first time, or when they failed before).
    pub hooks: bool,
    /// When a hook fails, keep what was set up instead of rolling it back.
    pub keep_on_failure: bool,
}

/// What a set-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetUpOutcome {
    /// A new worktree.
    Created,
    /// An existing worktree, new to pwt.
    Adopted,
    /// It was set up already; missing resources were made again, env files re-rendered.
    UpToDate,
}

/// A worktree that is set up.
#[derive(Clone, Debug)]
pub struct SetUp {
    /// Its lease, `ready`.
    pub lease: Lease,
    /// Its environment.
    pub env: Environment,
    /// What happened.
    pub outcome: SetUpOutcome,
    /// Where it was before, when `pwt up` found it moved.
    pub moved_from: Option<PathBuf>,
    /// The gitignored files brought from the main worktree (a new lease only).
    pub brought: crate::include::Brought,
}

/// How the worktree comes to be.
enum Checkout {
    /// `git worktree add` with these arguments.
    Add(Vec<std::ffi::OsString>),
    /// It exists.
    Existing,
}

impl Project {
    /// Creates the branch (if missing) and its worktree, leases ports, provisions the
    /// services, writes the env files and runs the post-create hooks. On any failure,
    /// everything this run made is rolled back, and the error says what was undone.
    pub fn create(&self, req: &CreateRequest, reporter: &mut dyn Reporter) -> Result<SetUp> {
        self.require_approval(Gate {
            hooks: req.hooks && !self.config.hooks.post_create.is_empty(),
            processes: false,
            env: true,
        })?;
        let branch = req.branch.as_str();
        let _turn = crate::inflight::Turn::take(&self.repo.common_dir, branch, "setting up")?;
        // A set-up of this branch that a killed pwt left is rolled back first (then git no
        // longer lists its half-made worktree).
        self.clear_interrupted(&req.branch, reporter)?;
        self.follow_moves()?;
        if let Some(base) = &req.base
            && base.starts_with('-')
        {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("invalid --base {base:?}: it starts with '-' and would read as an option"),
            ));
        }
        if let Some(w) = self
            .repo
            .worktrees()?
            .into_iter()
            .find(|w| w.branch.as_deref() == Some(branch))
        {
            // The main worktree's branch is asking for what cannot be (usage); another
            // worktree's exists already.
            let kind = if w.is_main {
                ErrorKind::Invalid
            } else {
                ErrorKind::Exists
            };
            return Err(Error::new(
                kind,
                format!(
                    "branch {branch:?} is already checked out at {}",
                    w.root.display()
                ),
            )
            .hint(if w.is_main {
                "that is the main worktree, which needs no set-up (`pwt env` prints its environment); a new worktree needs a branch of its own".to_owned()
            } else {
                crate::paths::up_hint(&w.root, "sets up that worktree")
            }));
        }
        let exists = self.repo.branch_exists(branch);
        // Like `git worktree add PATH BRANCH`: a branch that exists in exactly one remote is
        // checked out from there, tracking it, instead of a new branch from HEAD.
        let from_remote =
            !exists && req.base.is_none() && self.repo.remotes_with_branch(branch).len() == 1;
        if exists && req.base.is_some() {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("branch {branch:?} already exists, so --base has nothing to do"),
            )
            .hint("drop --base, or pick a new branch name"));
        }
        let ask = LeaseAsk {
            branch: &req.branch,
            new: true,
            creates_branch: !exists,
        };
        self.set_up(
            &ask,
            SetUpHow {
                explicit: req.path.as_deref(),
                root: None,
                base: req.base.as_deref(),
                checkout_existing: exists || from_remote,
                force: false,
                hooks: req.hooks,
                keep_on_failure: req.keep_on_failure,
            },
            reporter,
        )
        .map(|(s, _)| s)
    }

    /// Adopts an existing worktree (default: the one pwt runs in): what `create` does, minus
    /// `git worktree add`. Idempotent: again, it keeps the ports and the resources (making
    /// any that went missing) and re-renders the env files; hooks run the first time only.
    pub fn adopt(&self, req: &AdoptRequest, reporter: &mut dyn Reporter) -> Result<SetUp> {
        self.require_approval(Gate {
            hooks: req.hooks && !self.config.hooks.post_create.is_empty(),
            processes: false,
            env: true,
        })?;
        self.follow_moves()?;
        let (root, branch, moved_from) = self.adoption_target(req.target.as_ref())?;
        let branch = BranchName::parse(&branch)?;
        let _turn =
            crate::inflight::Turn::take(&self.repo.common_dir, branch.as_str(), "adopting")?;
        self.take_over_interrupted(&branch, reporter)?;
        let ask = LeaseAsk {
            branch: &branch,
            new: false,
            creates_branch: false,
        };
        let (mut done, _) = self.set_up(
            &ask,
            SetUpHow {
                explicit: None,
                root: Some(&root),
                base: None,
                checkout_existing: true,
                force: req.force,
                hooks: req.hooks,
                keep_on_failure: req.keep_on_failure,
            },
            reporter,
        )?;
        done.moved_from = moved_from;
        Ok(done)
    }

    /// The worktree `pwt up` sets up: its root, branch and (when git moved it) old path.
    fn adoption_target(
        &self,
        target: Option<&crate::Selector>,
    ) -> Result<(PathBuf, String, Option<PathBuf>)> {
        match self.resolve(target)? {
            Target::Main(_) => Err(Error::new(
                ErrorKind::Invalid,
                "this is the main worktree: it uses the defaults (`main` ports, main database) and needs no set-up",
            )
            .hint("`pwt env` prints them; `pwt new BRANCH` makes a worktree")),
            Target::Leased(l) if l.path.exists() => {
                let worktrees = self.repo.worktrees()?;
                let here = worktrees.iter().find(|w| w.root == l.path);
                match here.and_then(|w| w.branch.clone()) {
                    // Its branch renamed in place: the lease takes the new name.
                    Some(b) if b != l.branch.as_str() => {
                        self.rename_lease(&l, &b)?;
                        Ok((l.path.clone(), b, None))
                    }
                    _ => {
                        let old = self.follow_moved(l.branch.as_str(), &l.path)?;
                        Ok((l.path.clone(), l.branch.to_string(), old))
                    }
                }
            }
            // The lookup already followed a move (`Project::moved_to`): git shows its branch
            // nowhere this lease can follow.
            Target::Leased(l) => Err(Error::new(
                ErrorKind::NotFound,
                format!("the worktree of {:?} at {} is gone", l.branch.as_str(), l.path.display()),
            )
            .hint(format!(
                "`pwt gc` cleans up after it; `pwt new {}` makes a new one",
                shell_word(l.branch.as_str())
            ))),
            // The lookup gave a lease that moved here already; this one is not such.
            Target::Unmanaged(w) => match w.branch {
                Some(b) => {
                    self.refuse_leased_elsewhere(&b, &w.root)?;
                    let renamed = self.follow_renamed(&w.root, &b)?;
                    Ok((w.root, b, renamed))
                }
                None => Err(Error::new(
                    ErrorKind::Invalid,
                    format!("the worktree at {} has a detached HEAD; pwt keys worktrees by branch", w.root.display()),
                )
                .hint(format!(
                    "`git -C {} switch -c NAME`, then `pwt up`",
                    shell_word(&w.root.display().to_string())
                ))),
            },
        }
    }
}

/// How one set-up goes.
struct SetUpHow<'a> {
    explicit: Option<&'a Path>,
    root: Option<&'a Path>,
    base: Option<&'a str>,
    checkout_existing: bool,
    force: bool,
    hooks: bool,
    keep_on_failure: bool,
}

/// One set-up in progress: what it recorded and made, so it can be undone exactly.
struct Run<'p> {
    project: &'p Project,
    services: Services,
    lease: Lease,
    fresh: bool,
    /// Resources this run created: an undo drops these and nothing else.
    created: Vec<ResourceKind>,
    /// This run's `git worktree add` succeeded: an undo removes that worktree (and the
    /// branch, if it made it), never one somebody else made at the path meanwhile.
    checked_out: bool,
    /// How Redis isolates this lease.
    redis: crate::services::RedisPlan,
    /// Names and Redis DB indexes found someone else's: never tried again.
    avoid: crate::leases::Avoid,
    /// What a killed set-up of this lease (taken over by this run) was creating: this
    /// run's to finish, or to undo.
    inherited: Vec<ResourceKind>,
}

impl Project {
    /// The one set-up path. Returns what was set up and whether the lease is new.
    fn set_up(
        &self,
        ask: &LeaseAsk<'_>,
        how: SetUpHow<'_>,
        reporter: &mut dyn Reporter,
    ) -> Result<(SetUp, bool)> {
        let services = Services::new(self)?;
        let redis = services.redis_plan(reporter)?;
        let held = match self.team() {
            Some(team) => team.held_by_others(ask.branch.as_str())?,
            None => Vec::new(),
        };
        // Asked before the registry's lock, which is never held across another program.
        let docker = self.docker_facts().unwrap_or_else(|| {
            reporter.report(Event::Warning(
                "the Docker engine does not answer: ports its containers publish (stopped ones too), and the Compose project names it knows, cannot be kept out of this lease; start Docker and `pwt up` checks the ports again".into(),
            ));
            crate::containers::DockerFacts::default()
        });
        let plan = self.record_lease(ask, redis, (how.explicit, how.root), &held, docker)?;
        self.options.faults.pause(FaultPoint::AfterLease);
        let checkout = match (plan.fresh && ask.new, how.root) {
            (true, _) => Checkout::Add(add_args(
                ask.branch.as_str(),
                &plan.lease.path,
                how.base,
                how.checkout_existing,
            )),
            _ => Checkout::Existing,
        };
        // A lease still `creating` that the plan gave this run was left by a killed pwt
        // (a live one's is refused as busy): what its journal says it was making is ours.
        let inherited = match plan.lease.state {
            LeaseState::Creating if !plan.fresh => plan.lease.journal.creating.clone(),
            _ => Vec::new(),
        };
        let mut run = Run {
            inherited,
            project: self,
            services,
            fresh: plan.fresh,
            lease: plan.lease,
            created: Vec::new(),
            checked_out: false,
            redis,
            avoid: Default::default(),
        };
        match run.forward(&checkout, &how, reporter) {
            Ok(done) => Ok((done, run.fresh)),
            Err(e) if e.kind() == ErrorKind::Hook && how.keep_on_failure => {
                let lease = self.leases().update(ask.branch.as_str(), |l| {
                    l.state = LeaseState::Ready;
                    l.owner = None;
                    l.journal = Default::default();
                    l.pending_hooks = true;
                    Ok(())
                })?;
                Err(e.context(format!(
                    "{} is set up, but a post-create hook failed; it was kept (--keep-on-failure)",
                    lease.path.display()
                ))
                .hint(format!(
                    "fix the hook, then `pwt up {}` runs the hooks again; `pwt rm {}` removes it all",
                    shell_word(ask.branch.as_str()),
                    shell_word(ask.branch.as_str())
                )))
            }
            Err(e) => Err(run.undo(e, reporter)),
        }
    }

    /// The lease of `branch`, whose worktree git shows at `root` (moved with `git worktree
    /// move`, or swapped with another), follows it there: its old path. `root` must be
    /// UTF-8.
    pub(crate) fn follow_moved(&self, branch: &str, root: &Path) -> Result<Option<PathBuf>> {
        let state = self.state()?;
        let Some(lease) = state.find(&self.repo.common_dir, branch) else {
            return Ok(None);
        };
        let worktrees = self.repo.worktrees()?;
        if lease.busy().is_some() || self.moved_to(lease, &worktrees) != Some(root) {
            return Ok(None);
        }
        crate::paths::text_root(root, "worktree")?;
        let root = root.to_owned();
        self.leases().update(branch, |l| {
            l.path = root;
            Ok(())
        })?;
        Ok(Some(lease.path.clone()))
    }

    /// Every lease of this repository whose worktree moved is recorded where git shows it:
    /// its old path is free for a new worktree, or the one now there.
    fn follow_moves(&self) -> Result<()> {
        let worktrees = self.repo.worktrees()?;
        for l in self.state()?.of_repo(&self.repo.common_dir) {
            if let Some(to) = self
                .moved_to(l, &worktrees)
                .filter(|t| t.to_str().is_some())
            {
                self.follow_moved(l.branch.as_str(), to)?;
            }
        }
        Ok(())
    }

    /// Refuses to set up the worktree at `root` under `branch` while that branch's lease is
    /// another worktree's (one renamed in place keeps it until `pwt up` there).
    fn refuse_leased_elsewhere(&self, branch: &str, root: &Path) -> Result<()> {
        let state = self.state()?;
        let Some(l) = state
            .find(&self.repo.common_dir, branch)
            .filter(|l| l.path != root)
        else {
            return Ok(());
        };
        Err(Error::new(
            ErrorKind::Exists,
            format!(
                "the lease of {branch:?} belongs to the worktree at {} (its branch renamed there?), not to {}",
                l.path.display(),
                root.display()
            ),
        )
        .hint(format!(
            "`pwt up` in {} gives that lease its new branch, then `pwt up` here; or `pwt rm {} --force` releases it",
            if l.path.exists() {
                shell_word(&l.path.display().to_string())
            } else {
                "the worktree that names its data in its env files".to_owned()
            },
            shell_word(branch)
        )))
    }

    /// The lease `l`, whose worktree git now shows on branch `to` at its recorded path
    /// (renamed in place), takes that name, unless `to` has a lease of its own.
    fn rename_lease(&self, l: &Lease, to: &str) -> Result<()> {
        let state = self.state()?;
        if state.find(&self.repo.common_dir, to).is_some() || l.busy().is_some() {
            return Ok(());
        }
        let to = BranchName::parse(to)?;
        let path = l.path.clone();
        self.leases().update(l.branch.as_str(), |now| {
            if now.path != path {
                return Err(Error::new(ErrorKind::Busy, "the lease changed meanwhile"));
            }
            now.branch = to;
            Ok(())
        })?;
        Ok(())
    }

    /// A worktree moved and its branch renamed keeps its lease: the env files pwt wrote name
    /// the slug, and the lease of that slug whose worktree is gone (or is this one) follows
    /// it (new path, new branch). Returns the old path.
    fn follow_renamed(&self, root: &Path, branch: &str) -> Result<Option<PathBuf>> {
        let state = self.state()?;
        if state.find(&self.repo.common_dir, branch).is_some() {
            return Ok(None);
        }
        let Some(slug) = self.slug_at(root) else {
            return Ok(None);
        };
        let Some(old) = state
            .of_repo(&self.repo.common_dir)
            .find(|l| {
                l.slug.as_str() == slug
                    && (!l.path.exists() || l.path == root)
                    && l.busy().is_none()
            })
            .cloned()
        else {
            return Ok(None);
        };
        let new_branch = BranchName::parse(branch)?;
        let root = root.to_owned();
        self.leases().update(old.branch.as_str(), |l| {
            l.path = root;
            l.branch = new_branch;
            Ok(())
        })?;
        Ok(Some(old.path))
    }

    /// `pwt up` of a worktree whose `pwt new` was killed takes the set-up over: the worktree,
    /// now adopted, is the user's and is never removed by an undo. A checkout that was
    /// killed half-way is refused (it would be marked ready with files missing).
    fn take_over_interrupted(
        &self,
        branch: &BranchName,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let state = self.state()?;
        let Some(l) = state.find(&self.repo.common_dir, branch.as_str()) else {
            return Ok(());
        };
        if l.state != LeaseState::Creating || !l.interrupted() || !l.journal.worktree {
            return Ok(());
        }
        if l.journal.checked_out.is_none() {
            return Err(Error::new(
                ErrorKind::Busy,
                format!(
                    "the checkout of {:?} was stopped half-way by a pwt that was killed",
                    branch.as_str()
                ),
            )
            .hint(format!(
                "`pwt gc --yes` rolls it back; then `pwt new {}`",
                shell_word(branch.as_str())
            )));
        }
        reporter.report(Event::Warning(format!(
            "taking over the interrupted set-up of {:?}",
            branch.as_str()
        )));
        self.leases()
            .update(branch.as_str(), |l| {
                l.journal.worktree = false;
                l.journal.branch = false;
                Ok(())
            })
            .map(|_| ())
    }

    /// A set-up of `branch` that a pwt left when it stopped is undone first, as `pwt gc`
    /// would; one being done by a live pwt is left alone (and the plan refuses it as busy).
    fn clear_interrupted(&self, branch: &BranchName, reporter: &mut dyn Reporter) -> Result<()> {
        let state = self.state()?;
        let Some(l) = state.find(&self.repo.common_dir, branch.as_str()) else {
            return Ok(());
        };
        // Another pwt sets it up or removes it right now: busy, not "checked out already".
        if let Some(owner) = l.busy() {
            return Err(crate::plan::busy(l, owner));
        }
        if l.state != LeaseState::Creating || !l.interrupted() {
            return Ok(());
        }
        reporter.report(Event::Warning(format!(
            "a set-up of {:?} was interrupted earlier; rolling it back first",
            branch.as_str()
        )));
        let lease =
            self.leases()
                .mark_removing(branch.as_str(), Vec::new(), Vec::new(), |now| {
                    if now.state == LeaseState::Creating && now.interrupted() {
                        Ok(())
                    } else {
                        Err(Error::new(
                            ErrorKind::Busy,
                            format!("branch {:?} changed meanwhile", branch.as_str()),
                        ))
                    }
                })?;
        let report = self.teardown(&lease, &TeardownPlan::undo_interrupted(&lease), reporter)?;
        match report.stuck.is_empty() {
            true => Ok(()),
            false => Err(Error::new(
                ErrorKind::Incomplete,
                format!(
                    "the interrupted set-up of {:?} could not be rolled back: {}",
                    branch.as_str(),
                    report.stuck.join("; ")
                ),
            )
            .hint(format!(
                "`pwt rm {}` finishes it once the cause is fixed",
                shell_word(branch.as_str())
            ))),
        }
    }
}

impl Run<'_> {
    /// The steps, in order. Each effect is recorded before it happens.
    fn forward(
        &mut self,
        checkout: &Checkout,
        how: &SetUpHow<'_>,
        reporter: &mut dyn Reporter,
    ) -> Result<SetUp> {
        let p = self.project;
        self.checkout_and_provision(checkout, reporter)?;
        p.options.faults.pause(FaultPoint::AfterCheckout);
        p.options.cancel.check()?;
        // A new lease brings them; one whose set-up was killed before they were all here
        // brings what is missing (nothing is ever written over).
        let brought = if self.fresh || self.lease.pending_files {
            p.bring_files(&self.lease.path, reporter)?
        } else {
            Default::default()
        };
        p.options.cancel.check()?;
        let env = p.lease_environment(&self.lease)?;
        let files = p.write_env_files(
            &self.lease.path,
            self.lease.slug.as_str(),
            &env,
            &self.lease.files,
            how.force,
            reporter,
        )?;
        let branch = self.lease.branch.to_string();
        self.lease = p.leases().update(&branch, |l| {
            l.files = files;
            l.pending_files = false;
            Ok(())
        })?;
        p.options.faults.pause(FaultPoint::AfterEnvFiles);
        if how.hooks && (self.fresh || self.lease.pending_hooks) {
            run_hooks(
                "post-create",
                &p.config.hooks.post_create,
                &self.lease.path,
                &env,
                &p.options,
                reporter,
            )?;
        }
        p.options.faults.pause(FaultPoint::BeforeReady);
        p.options.cancel.check()?;
        let was_ready = self.lease.state == LeaseState::Ready;
        // The hooks stay pending when this run skipped them (`--no-hooks`) on a set-up
        // that was waiting for them; a new worktree made with `--no-hooks` has none due.
        let pending = !how.hooks && !self.fresh && self.lease.pending_hooks;
        self.lease = p.leases().update(&branch, |l| {
            l.state = LeaseState::Ready;
            l.owner = None;
            l.journal = Default::default();
            l.leftover.clear();
            l.pending_hooks = pending;
            l.dir_id = None;
            Ok(())
        })?;
        let outcome = match (&checkout, self.fresh, was_ready) {
            (Checkout::Add(_), _, _) => SetUpOutcome::Created,
            (_, true, _) | (_, _, false) => SetUpOutcome::Adopted,
            _ => SetUpOutcome::UpToDate,
        };
        Ok(SetUp {
            lease: self.lease.clone(),
            env,
            outcome,
            moved_from: None,
            brought,
        })
    }

    /// Looks at each resource's name: one with pwt's name and no (or another) marker stops
    /// the set-up before anything is made; the absent ones are recorded as being created.
    fn journal_resources(&mut self) -> Result<()> {
        let p = self.project;
        if self.lease.resources.is_empty() || !self.services.any() {
            return Ok(());
        }
        let marker = self.marker();
        // The servers arbitrate: a name (or DB index) someone else holds there, whoever
        // they are, is given up for the next one, until one is free (each one given up is
        // never tried again, so this ends), or no DB index is left.
        loop {
            let found = self
                .services
                .block_on(self.services.probe(&self.lease.resources))
                .unwrap_or_default();
            let mut absent = Vec::new();
            let mut held = Vec::new();
            for (kind, presence) in found {
                match presence? {
                    Presence::Absent => absent.push(kind),
                    Presence::Marked(m) if pwt_core::same_owner(&m, &marker) => {}
                    Presence::Marked(_) => held.push(kind),
                    // An index is a slot, not a name: one with someone's keys is skipped.
                    Presence::Unmarked
                        if self.lease.resources.redis_db().is_some()
                            && kind == ResourceKind::Redis =>
                    {
                        held.push(kind)
                    }
                    // Made by the killed set-up this run took over, which was stopped
                    // before it marked it: ours, made again.
                    Presence::Unmarked
                        if kind == ResourceKind::Database && self.inherited.contains(&kind) =>
                    {
                        self.drop_inherited_database()?;
                        absent.push(kind);
                    }
                    Presence::Unmarked => {
                        return Err(self.not_ours(kind, "it has no pwt marker".into()));
                    }
                }
            }
            if held.is_empty() {
                if !absent.is_empty() {
                    self.lease = p
                        .leases()
                        .record_creating(self.lease.branch.as_str(), &absent)?;
                }
                return Ok(());
            }
            if !self.fresh || !self.avoid.note(&self.lease.resources, &held) {
                let kind = held[0];
                return Err(self.not_ours(kind, "another worktree's marker is on it".into()));
            }
            self.move_names(&held)?;
        }
    }

    /// Drops the database a killed set-up created and never marked (the journal says it
    /// was creating it after seeing the name free).
    fn drop_inherited_database(&self) -> Result<()> {
        let only = self.lease.resources.only(&[ResourceKind::Database]);
        let steps = self
            .services
            .block_on(self.services.drop(&only, &self.marker(), true, &[]))
            .unwrap_or_default();
        match first_failure(steps) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn not_ours(&self, kind: ResourceKind, found: String) -> Error {
        Error::transparent(
            ErrorKind::Exists,
            pwt_provision::ProvisionError::NotOurs {
                service: service_of(kind),
                url: self.services.url_of(kind),
                what: self.lease.resources.describe(kind).unwrap_or_default(),
                found,
            },
        )
    }

    /// The names settled before anything is created: claimed in the team store, looked at
    /// on the servers (someone else's given up for the next), the absent ones journaled.
    fn settle_names(&mut self) -> Result<()> {
        self.claim_names(self.fresh)?;
        self.journal_resources()?;
        let p = self.project;
        p.options.faults.pause(FaultPoint::AfterJournal);
        p.options.cancel.check()
    }

    /// Claims the lease's names in the team store, when there is one: a name another holder
    /// took meanwhile is given up for the next when `may_move`.
    fn claim_names(&mut self, may_move: bool) -> Result<()> {
        let p = self.project;
        let Some(team) = p.team() else {
            return Ok(());
        };
        let redis = self.redis;
        self.lease = team.claim(
            self.lease.clone(),
            may_move,
            &mut self.avoid,
            &mut |branch, kinds, avoid| p.reassign(branch, kinds, avoid, redis),
        )?;
        Ok(())
    }

    /// `git worktree add` on a thread of its own and, at once on this one, the names
    /// settled and the services created.
    fn checkout_and_provision(
        &mut self,
        checkout: &Checkout,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let p = self.project;
        if matches!(checkout, Checkout::Add(_)) {
            reporter.report(Event::Step(Step::AddWorktree {
                path: self.lease.path.clone(),
            }));
        }
        let adder = p.git();
        let (git, steps) = std::thread::scope(|scope| {
            let git = scope.spawn(|| match checkout {
                Checkout::Add(args) => adder.add(args),
                Checkout::Existing => Ok(()),
            });
            let steps = self.settle_names().map(|()| {
                let marker = self.marker();
                self.services
                    .block_on(with_progress(
                        vec!["setting up the worktree and its services".into()],
                        reporter,
                        self.services.provision(&self.lease.resources, &marker),
                    ))
                    .unwrap_or_default()
            });
            let git = git
                .join()
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Git, "the git thread panicked")));
            (git, steps)
        });
        let steps = match steps {
            Ok(steps) => steps,
            Err(e) => {
                self.record_checkout(checkout, &git)?;
                return Err(e);
            }
        };
        self.created = steps
            .iter()
            .filter(|s| matches!(s.result, Ok(Outcome::Created)))
            .map(|s| s.kind)
            .collect();
        self.record_checkout(checkout, &git)?;
        git.map_err(|e| e.context(format!("cannot check out {:?}", self.lease.branch.as_str())))?;
        let steps = self.retry_taken(steps)?;
        match first_failure(steps) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A name found free that someone else took between the look and the create (another
    /// registry creating the same branch at the same moment): give it up for the next one
    /// and create that, until one holds (each one given up is never tried again).
    fn retry_taken(&mut self, mut steps: Vec<Provisioned>) -> Result<Vec<Provisioned>> {
        loop {
            let taken: Vec<ResourceKind> = steps
                .iter()
                .filter(|s| matches!(s.result, Err(pwt_provision::ProvisionError::NotOurs { .. })))
                .map(|s| s.kind)
                .collect();
            // A lease that had its names before keeps them (its data is under them): the
            // first failure is the answer.
            if taken.is_empty() || !self.fresh || !self.avoid.note(&self.lease.resources, &taken) {
                break;
            }
            self.move_names(&taken)?;
            self.journal_resources()?;
            let marker = self.marker();
            let again = self
                .services
                .block_on(
                    self.services
                        .provision(&self.lease.resources.only(&taken), &marker),
                )
                .unwrap_or_default();
            self.created.extend(
                again
                    .iter()
                    .filter(|s| matches!(s.result, Ok(Outcome::Created)))
                    .map(|s| s.kind),
            );
            steps.retain(|s| !taken.contains(&s.kind));
            steps.extend(again);
        }
        Ok(steps)
    }

    fn marker(&self) -> String {
        lease_marker(&self.lease)
    }

    /// Gives this run's new lease the next names for `kinds` (someone else's on a server);
    /// the team store follows: the names given up are let go, the new ones claimed.
    fn move_names(&mut self, kinds: &[ResourceKind]) -> Result<()> {
        let p = self.project;
        let before = self.lease.resources.only(kinds);
        self.lease = p.reassign(self.lease.branch.as_str(), kinds, &self.avoid, self.redis)?;
        if let Some(team) = p.team() {
            team.release(&self.lease, &before)?;
        }
        self.claim_names(true)?;
        Ok(())
    }

    /// Notes what this run's `git worktree add` made, for an undo (and, in the journal, for
    /// a later run's).
    fn record_checkout(&mut self, checkout: &Checkout, git: &Result<()>) -> Result<()> {
        if !matches!(checkout, Checkout::Add(_)) {
            return Ok(());
        }
        // Interrupted by our own cancel, git leaves what it had made: ours to remove too.
        if git
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::Cancelled)
        {
            self.checked_out = true;
        }
        if git.is_ok() {
            self.checked_out = true;
            let head = crate::git::head_of(&self.lease.path).unwrap_or_default();
            self.lease = self
                .project
                .leases()
                .update(self.lease.branch.as_str(), |l| {
                    l.journal.checked_out = Some(head);
                    Ok(())
                })?;
        }
        Ok(())
    }

    /// Undoes what this run made and returns `cause`, saying what was undone and what not.
    fn undo(&mut self, cause: Error, reporter: &mut dyn Reporter) -> Error {
        let p = self.project;
        let branch = self.lease.branch.to_string();
        let cause = cause.context(format!("cannot set up the worktree for {branch:?}"));
        let lease = match p.state() {
            Ok(s) => s.find(&p.repo.common_dir, &branch).cloned(),
            Err(_) => None,
        };
        let Some(mut lease) = lease else {
            return cause;
        };
        if lease.state == LeaseState::Ready {
            lease.journal.creating = self.created.clone();
        }
        // Only what this run made: the resources it created, the worktree and branch only
        // if its own `git worktree add` succeeded (another pwt, or a person, may have made
        // them at the same moment).
        let created: Vec<ResourceKind> = self
            .created
            .iter()
            .chain(&self.inherited)
            .copied()
            .collect();
        let checked_out = self.checked_out;
        let narrow = |l: &mut Lease| {
            l.journal.creating.retain(|k| created.contains(k));
            l.journal.worktree &= checked_out;
            l.journal.branch &= checked_out;
        };
        let marked = if lease.state == LeaseState::Ready {
            narrow(&mut lease);
            Ok(lease.clone())
        } else {
            p.leases()
                .mark_removing(&branch, Vec::new(), Vec::new(), |_| Ok(()))
                .and_then(|_| {
                    p.leases().update(&branch, |l| {
                        narrow(l);
                        Ok(())
                    })
                })
        };
        let lease = match marked {
            Ok(l) => l,
            Err(e) => {
                return cause.with_rollback(Rollback {
                    undone: Vec::new(),
                    stuck: vec![format!("everything ({})", chain(&e))],
                });
            }
        };
        let plan = if lease.state == LeaseState::Ready {
            TeardownPlan::partial_undo(&lease)
        } else {
            TeardownPlan::undo(&lease)
        };
        match p.teardown(&lease, &plan, reporter) {
            Ok(r) => {
                let mut rb = Rollback {
                    undone: r.removed,
                    stuck: r.stuck,
                };
                if !rb.stuck.is_empty() {
                    rb.stuck.push(format!(
                        "the lease stays `removing`: `pwt rm {}` finishes the cleanup once the cause is fixed",
                        shell_word(&branch)
                    ));
                }
                cause.with_rollback(rb)
            }
            Err(e) => cause.with_rollback(Rollback {
                undone: Vec::new(),
                stuck: vec![chain(&e)],
            }),
        }
    }
}

/// The first failed step as an error naming it, with the service's own words as causes.
fn first_failure(steps: Vec<Provisioned>) -> Option<Error> {
    steps
        .into_iter()
        .find_map(|s| s.result.err())
        .map(Error::from)
}
