//! The one teardown. `pwt rm` ([`Project::remove`]), every reconcile action and the undo of a
//! failed set-up call [`Project::teardown`] with a [`TeardownPlan`] saying what goes; it
//! drops each resource only with the worktree's marker, removes the worktree last, and
//! releases the lease only when everything is gone (else it stays `removing`, listing what
//! is left, so running it again finishes).

use std::ffi::OsStr;
use std::path::Path;

use pwt_alloc::{Lease, LeaseState, Leftover};
use pwt_core::{BranchName, RedisPrefix, ResourceKind, Resources};
use pwt_provision::{Outcome, ProvisionError};

use crate::env_files::content_hash;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Released, Reporter, Step, joined};
use crate::faults::FaultPoint;
use crate::git::{changes, changes_besides_removal};
use crate::hooks::run_hooks;
use crate::paths::shell_word;
use crate::project::{Project, Selector, Target};
use crate::services::{Services, chain, lease_marker, with_progress};

/// `pwt rm`.
#[derive(Clone, Debug, Default)]
pub struct RemoveRequest {
    /// The worktree (`"feature/login".into()`: a branch, slug or path as a person types
    /// it). An empty name is refused: name what goes.
    pub target: Selector,
    /// Remove even with uncommitted or untracked changes (they are lost).
    pub force: bool,
    /// Keep the database, vhost and Redis data: `pwt new` of the branch finds them again.
    pub keep_data: bool,
    /// Keep the worktree directory; release only what pwt set up.
    pub keep_worktree: bool,
    /// Also delete the branch (`git branch -d`; with `force`, `-D`).
    pub delete_branch: bool,
    /// Run the pre-remove hooks.
    pub hooks: bool,
    /// Also delete the named volumes of the worktree's Compose containers.
    pub volumes: bool,
}

/// What `pwt rm` did.
#[derive(Clone, Debug)]
pub enum Removal {
    /// It removed this.
    Removed(Removed),
    /// There was nothing to remove, for this reason: no lease of that name (already
    /// removed, say: removing is idempotent), or a worktree pwt does not manage.
    Nothing(String),
}

/// What a removal removed.
#[derive(Clone, Debug)]
pub struct Removed {
    /// The branch.
    pub branch: BranchName,
    /// What went, in order.
    pub removed: Vec<Released>,
    /// The data was kept (`keep_data`, with services configured).
    pub data_kept: bool,
    /// The branch was deleted.
    pub branch_deleted: bool,
}

impl Removed {
    /// What went, for people: `database "demo_x", vhost "/demo/x", the worktree` (`its
    /// lease` when nothing else went).
    pub fn summary(&self) -> String {
        if self.removed.is_empty() {
            return "its lease".to_owned();
        }
        let each: Vec<String> = self.removed.iter().map(ToString::to_string).collect();
        each.join(", ")
    }
}

/// Why a half-made worktree is not removed.
enum InUse {
    /// Another pwt set it up again.
    Elsewhere(String),
    /// Someone works in it.
    Work(String),
}

/// What happens to the worktree directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorktreeStep {
    /// `git worktree remove` (twice `--force` with `force`).
    Remove { force: bool },
    /// Only the env files pwt wrote go (unless edited).
    EnvFiles,
    /// It is gone already: drop git's record (`git worktree prune`).
    Prune,
    /// A set-up was adding it: remove it and git's record, whatever state it is in.
    Made,
    /// Leave it.
    Keep,
}

/// What happens to the branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BranchStep {
    /// Leave it.
    Keep,
    /// `git branch -d` (`-D` with `force`); a refusal is a warning.
    Delete { force: bool },
    /// The set-up being undone made it and never finished, so nobody has committed on it:
    /// `git branch -D`, quietly.
    DeleteMade,
}

/// What a teardown removes.
#[derive(Clone, Debug)]
pub(crate) struct TeardownPlan {
    /// The resources to drop.
    pub data: Vec<ResourceKind>,
    /// A set-up recorded it was creating the database: an unmarked one of the name goes too.
    pub created_database: bool,
    pub worktree: WorktreeStep,
    pub branch: BranchStep,
    /// Run the pre-remove hooks first; `force` goes on when they fail.
    pub hooks: bool,
    pub force: bool,
    /// Resources released as kept data.
    pub keep: Resources,
    /// Release the lease at the end (a partial undo of a `ready` worktree keeps it).
    pub release: bool,
    /// The set-up being undone was killed: a request it had sent may still be landing on a
    /// server, so what was not there is looked for once more a moment later.
    pub settle: bool,
    /// It finishes a teardown that was interrupted: a worktree half removed by a killed
    /// `git worktree remove` may be found.
    pub resume: bool,
}

/// What a teardown did.
#[derive(Clone, Debug, Default)]
pub(crate) struct TeardownReport {
    pub removed: Vec<Released>,
    /// What is left, with why.
    pub stuck: Vec<String>,
    pub branch_deleted: bool,
}

impl TeardownPlan {
    fn base(data: Vec<ResourceKind>, worktree: WorktreeStep) -> Self {
        Self {
            data,
            created_database: false,
            worktree,
            branch: BranchStep::Keep,
            hooks: false,
            force: false,
            keep: Resources::default(),
            release: true,
            settle: false,
            resume: false,
        }
    }

    /// Undo a set-up a stopped pwt left: [`TeardownPlan::undo`], settling first.
    pub fn undo_interrupted(lease: &Lease) -> Self {
        let mut p = Self::undo(lease);
        p.settle = true;
        p
    }

    /// Undo an interrupted or failed set-up: exactly what its journal says it was making.
    pub fn undo(lease: &Lease) -> Self {
        let j = &lease.journal;
        let mut p = Self::base(
            j.creating.clone(),
            if j.worktree {
                WorktreeStep::Made
            } else {
                WorktreeStep::EnvFiles
            },
        );
        p.created_database = j.creating.contains(&ResourceKind::Database);
        if j.branch {
            p.branch = BranchStep::DeleteMade;
        }
        p.keep = lease.resources.only(&j.kept);
        p
    }

    /// Undo what a set-up of an already ready worktree created; the lease stays.
    pub fn partial_undo(lease: &Lease) -> Self {
        let mut p = Self::undo(lease);
        p.worktree = WorktreeStep::Keep;
        p.branch = BranchStep::Keep;
        p.keep = Resources::default();
        p.release = false;
        p
    }

    /// The worktree was deleted outside pwt: its data and git's record go.
    pub fn gone(lease: &Lease) -> Self {
        Self::base(lease.resources.kinds(), WorktreeStep::Prune)
    }

    /// Its repository is gone: the data pwt can reach goes.
    pub fn repo_gone(lease: &Lease) -> Self {
        Self::base(lease.resources.kinds(), WorktreeStep::Keep)
    }

    /// Finish an interrupted teardown: what its leftovers list (or, for an interrupted undo
    /// of a set-up, the rest of that undo).
    pub fn finish(lease: &Lease) -> Self {
        if !lease.journal.is_empty() {
            return Self::undo_interrupted(lease);
        }
        let data: Vec<ResourceKind> = lease.leftover.iter().filter_map(|l| l.kind()).collect();
        let worktree = if lease.leftover.contains(&Leftover::Worktree) {
            WorktreeStep::Remove { force: false }
        } else {
            WorktreeStep::Keep
        };
        let mut p = Self::base(data, worktree);
        p.resume = true;
        // What the interrupted teardown was asked to keep (`--keep-data`), nothing more.
        p.keep = lease.resources.only(&lease.keep);
        p
    }

    /// `pwt rm`.
    fn rm(lease: &Lease, req: &RemoveRequest, exists: bool) -> Self {
        let data = if req.keep_data {
            Vec::new()
        } else {
            lease.resources.kinds()
        };
        let worktree = match (exists, req.keep_worktree) {
            (false, _) => WorktreeStep::Prune,
            (true, true) => WorktreeStep::EnvFiles,
            (true, false) => WorktreeStep::Remove { force: req.force },
        };
        let mut p = Self::base(data, worktree);
        p.hooks = req.hooks && exists;
        p.force = req.force;
        if req.keep_data {
            p.keep = lease.resources.clone();
        }
        if req.delete_branch {
            p.branch = BranchStep::Delete { force: req.force };
        }
        p
    }

    /// What it will remove, for the lease's leftover list.
    pub(crate) fn leftover(&self) -> Vec<Leftover> {
        let mut out: Vec<Leftover> = self.data.iter().map(|k| Leftover::of(*k)).collect();
        if matches!(
            self.worktree,
            WorktreeStep::Remove { .. } | WorktreeStep::Made
        ) {
            out.push(Leftover::Worktree);
        }
        out
    }
}

/// The `pwt rm` that finishes a removal: the branch and every flag this one was given, so
/// the second run does what the first was asked.
fn rm_again(lease: &Lease, req: &RemoveRequest) -> String {
    let mut out = format!("pwt rm {}", shell_word(lease.branch.as_str()));
    for (on, flag) in [
        (req.force, "--force"),
        (req.keep_data, "--keep-data"),
        (req.keep_worktree, "--keep-worktree"),
        (req.delete_branch, "--delete-branch"),
        (req.volumes, "--volumes"),
        (!req.hooks, "--no-hooks"),
    ] {
        if on {
            out.push(' ');
            out.push_str(flag);
        }
    }
    out
}

impl Project {
    /// Tears a worktree down: pre-remove hooks, its data (each only with its marker), the
    /// worktree, the lease. Refuses (nothing touched) when the worktree has uncommitted or
    /// untracked changes, unless `force`; refuses as busy while another pwt sets it up or
    /// removes it. Never the main worktree.
    pub fn remove(&self, req: &RemoveRequest, reporter: &mut dyn Reporter) -> Result<Removal> {
        self.require_approval(crate::approvals::Gate {
            hooks: req.hooks && !self.config.hooks.pre_remove.is_empty(),
            processes: false,
            env: false,
        })?;
        // A registry that cannot be read is an error, not "nothing to do".
        self.state()?;
        let lease = match self.removable(&req.target)? {
            Ok(l) => l,
            Err(why) => return Ok(Removal::Nothing(why)),
        };
        let _turn = crate::inflight::Turn::take(&lease.repo, lease.branch.as_str(), "removing")?;
        // Another branch's worktree at the recorded path is never removed.
        let req = &RemoveRequest {
            keep_worktree: req.keep_worktree || self.not_its_own(&lease, req)?,
            ..req.clone()
        };
        let exists = lease.path.exists();
        if exists && !req.keep_worktree {
            // Not even with --force: the other worktree's work is not this one's to discard.
            self.refuse_nested(&lease)?;
        }
        if exists && !req.keep_worktree && !req.force {
            self.refuse_dirty(&lease)?;
            self.refuse_losses(&lease)?;
        }
        self.refuse_without_docker(&lease)?;
        // A set-up that stopped half-way, or the undo of one: finish undoing it.
        let plan = if lease.state == LeaseState::Creating || !lease.journal.is_empty() {
            let mut p = TeardownPlan::undo_interrupted(&lease);
            p.force = req.force;
            p
        } else {
            // A removal resumed keeps what the first run kept (`--keep-data`), asked again
            // or not: its data is not this run's to drop.
            let resumed = lease.state == LeaseState::Removing;
            let req = &RemoveRequest {
                keep_data: req.keep_data || (resumed && !lease.keep.is_empty()),
                ..req.clone()
            };
            let mut p = TeardownPlan::rm(&lease, req, exists);
            p.resume = resumed;
            p
        };
        let lease = self.leases().mark_removing(
            lease.branch.as_str(),
            plan.leftover(),
            plan.keep.kinds(),
            |_| Ok(()),
        )?;
        self.options.faults.pause(FaultPoint::AfterMarkRemoving);
        // Its containers first: Docker holds their ports until they go, whatever listens.
        let containers = self
            .stop_containers(&lease, req.volumes, reporter)
            .map_err(|e| {
                // Nothing else went: the lease stays `removing`, for `pwt rm` to finish.
                e.context(format!(
                    "nothing of {:?} was removed while its containers run",
                    lease.branch.as_str()
                ))
                .hint(format!(
                    "once Docker answers (`docker info`), `{}` finishes the removal",
                    rm_again(&lease, req)
                ))
            })?;
        self.stop_processes(&lease, exists && !req.keep_worktree, reporter);
        let mut report = self.teardown(&lease, &plan, reporter)?;
        report.removed.splice(0..0, containers);
        if !report.stuck.is_empty() {
            return Err(self.incomplete(&lease, &report, req));
        }
        self.forget_dev_processes(lease.slug.as_str());
        Ok(Removal::Removed(Removed {
            branch: lease.branch.clone(),
            removed: report.removed,
            data_kept: req.keep_data && !lease.resources.is_empty(),
            branch_deleted: report.branch_deleted,
        }))
    }

    /// Stops what runs for the worktree before anything of it goes: every process listening
    /// on its leased ports and, when its directory goes too (`in_dir`), every process working
    /// inside it; each named as it goes (SIGTERM, SIGKILL after a grace period), and those
    /// that outlive both in a warning. pwt and the processes that started it are spared.
    fn stop_processes(&self, lease: &Lease, in_dir: bool, reporter: &mut dyn Reporter) {
        let running = self.running_processes(lease.slug.as_str());
        for p in &running {
            reporter.report(Event::Step(Step::StopProcess {
                name: p.name.clone(),
                pid: p.pid,
                why: "started by `pwt dev`".to_owned(),
            }));
        }
        for (p, stopped) in crate::dev::stop_these(running, std::time::Duration::from_secs(5)) {
            if !stopped {
                reporter.report(Event::Warning(format!(
                    "could not stop {} (pid {}), started by `pwt dev`; stop it yourself",
                    p.name, p.pid
                )));
            }
        }
        let ports: Vec<u16> = lease.ports.values().copied().collect();
        let mut found: Vec<(crate::processes::Found, String)> = Vec::new();
        for f in crate::processes::listening_on(&ports) {
            if crate::containers::is_docker_proxy(&f.name) {
                // Docker's, for a container that is not this worktree's: Docker would hold
                // the port anyway.
                reporter.report(Event::Warning(format!(
                    "a port of the worktree is published by a container of another Compose project (docker-proxy, pid {}); left alone: `docker ps` shows it",
                    f.pid
                )));
                continue;
            }
            found.push((f, "listening on a port of the worktree".to_owned()));
        }
        if in_dir {
            for f in crate::processes::working_in(&lease.path) {
                if !found.iter().any(|(g, _)| g.pid == f.pid) {
                    found.push((f, "working in the worktree".to_owned()));
                }
            }
        }
        if found.is_empty() {
            return;
        }
        for (f, why) in &found {
            reporter.report(Event::Step(Step::StopProcess {
                name: f.name.clone(),
                pid: f.pid,
                why: why.clone(),
            }));
        }
        let procs: Vec<crate::processes::Found> = found.into_iter().map(|(f, _)| f).collect();
        for f in crate::processes::stop(&procs, std::time::Duration::from_secs(5)) {
            reporter.report(Event::Warning(format!(
                "could not stop {} (pid {}): it belongs to another user, or ignores SIGKILL; stop it yourself",
                f.name, f.pid
            )));
        }
    }

    /// The lease `pwt rm` may remove (or why there is nothing to do): never the main
    /// worktree, one pwt does not manage, or one another live pwt works on.
    fn removable(&self, target: &Selector) -> Result<std::result::Result<Lease, String>> {
        let lease = match self.select(target) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Err(format!("no worktree or lease for {target}")));
            }
            Err(e) => return Err(e),
            Ok(Target::Main(_)) => {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    "refusing to remove the main worktree",
                ));
            }
            Ok(Target::Unmanaged(w)) => {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    format!(
                        "the worktree at {} is not managed by pwt, so pwt will not remove it",
                        w.root.display()
                    ),
                )
                .hint(format!(
                    "`git worktree remove {}`",
                    shell_word(&w.root.display().to_string())
                )));
            }
            Ok(Target::Leased(l)) => l,
        };
        // A whole worktree goes: a path must be its root, never a directory inside it.
        let path = match target {
            Selector::Path(p) => Some(p.as_path()),
            Selector::Name(n) if n != lease.branch.as_str() && n != lease.slug.as_str() => {
                Some(Path::new(n.as_str()))
            }
            _ => None,
        };
        if let Some(p) = path
            && std::fs::canonicalize(self.cwd.join(p)).is_ok_and(|p| p != lease.path)
        {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "{} is a directory inside the worktree of {:?} at {}, not that worktree: `pwt rm` removes a whole worktree, named by its branch, slug or root",
                    p.display(),
                    lease.branch.as_str(),
                    lease.path.display()
                ),
            )
            .hint(format!(
                "`pwt rm {}` removes that worktree",
                shell_word(lease.branch.as_str())
            )));
        }
        if let Some(owner) = lease.busy() {
            return Err(crate::plan::busy(&lease, owner));
        }
        // Where git shows its branch (moved): recorded there before anything goes, so what
        // is there is checked and removed, never another worktree at the old path.
        self.follow_moved(lease.branch.as_str(), &lease.path)?;
        Ok(Ok(*lease))
    }

    /// What is the lease's worktree by git's word. Refused unless `force`: the recorded
    /// path holds another branch's worktree (renamed there, or another took the place: its
    /// data may be in use there), or the worktree is gone and one git lists names its data
    /// in its env files (moved and renamed). True: another branch's worktree is at the
    /// recorded path, and is never removed (with `force`, only the data and lease go).
    fn not_its_own(&self, lease: &Lease, req: &RemoveRequest) -> Result<bool> {
        let branch = lease.branch.as_str();
        let worktrees = self.repo.worktrees()?;
        let there = worktrees.iter().find(|w| w.exists && w.root == lease.path);
        if there.is_some_and(|w| w.branch.as_deref() == Some(branch)) || req.force {
            return Ok(there.is_some_and(|w| w.branch.as_deref() != Some(branch)));
        }
        let why = match there {
            Some(w) => format!(
                "{} is now the worktree of {}, not of {branch:?} (its branch renamed, or another worktree took its place), and may use its data",
                lease.path.display(),
                w.branch
                    .as_deref()
                    .map_or("a detached HEAD".to_owned(), |b| format!("{b:?}"))
            ),
            None if crate::plan::declares(&self.declared(None)?, lease) => format!(
                "the worktree of {branch:?} at {} is gone, but a worktree git lists names its data in its env files (moved and renamed?)",
                lease.path.display()
            ),
            None => return Ok(false),
        };
        Err(Error::new(ErrorKind::Refused, format!("{why}; nothing was removed")).hint(
            "`pwt up` in that worktree takes the lease over; --force drops the data and lease (never that worktree)",
        ))
    }

    /// The error of a teardown that left something: what is left, what went, and how to
    /// finish.
    fn incomplete(&self, lease: &Lease, report: &TeardownReport, req: &RemoveRequest) -> Error {
        let left: Vec<&str> = self
            .state()
            .ok()
            .and_then(|s| {
                s.find(&self.repo.common_dir, lease.branch.as_str())
                    .cloned()
            })
            .map(|l| l.leftover.iter().map(|x| x.as_str()).collect())
            .unwrap_or_default();
        let mut msg = format!(
            "could not remove everything of {:?}; the lease stays `removing` ({}):\n  {}",
            lease.branch.as_str(),
            left.join(", "),
            report.stuck.join("\n  ")
        );
        if !report.removed.is_empty() {
            msg.push_str(&format!("\n  removed: {}", joined(&report.removed)));
        }
        Error::new(ErrorKind::Incomplete, msg).hint(format!(
            "fix the cause and run `{}` again to finish",
            rm_again(lease, req)
        ))
    }

    /// Refuses to delete what git does not see as changes but someone would miss: an env
    /// file of pwt's edited by hand since pwt wrote it, and ignored files matching
    /// `files.keep` (`.env*`, `*.sqlite3`).
    fn refuse_losses(&self, lease: &Lease) -> Result<()> {
        let lost = self.losses(lease)?;
        if lost.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} holds files that would be lost with it; nothing was removed:\n    {}",
                lease.path.display(),
                lost.join("\n    ")
            ),
        )
        .hint("move them out of the worktree, or pass --force to delete them with it (`pwt rm --keep-worktree` leaves the directory and releases the rest)"))
    }

    /// What git does not see as changes but someone would miss if the worktree went: env
    /// files of pwt's edited by hand, ignored files matching `files.keep`.
    fn losses(&self, lease: &Lease) -> Result<Vec<String>> {
        let mut lost = Vec::new();
        for (name, hash) in &lease.files {
            if let Ok(bytes) = std::fs::read(lease.path.join(name))
                && &content_hash(&bytes) != hash
            {
                lost.push(format!(
                    "{name} (pwt's env file, edited by hand since pwt wrote it)"
                ));
            }
        }
        let keep = &self.config.files.keep;
        if !keep.is_empty() {
            let matches = |rel: &str| {
                let name = rel.rsplit('/').next().unwrap_or(rel);
                keep.iter().any(|p| crate::git::name_matches(p, name))
            };
            for entry in crate::git::ignored(&lease.path)? {
                let entry = entry.to_string_lossy().into_owned();
                let trimmed = entry.trim_end_matches('/');
                let name = std::path::Path::new(trimmed)
                    .file_name()
                    .unwrap_or_default();
                if pwt_alloc::temp_of(name).is_some() {
                    continue;
                }
                if lease.files.contains_key(trimmed) {
                    continue;
                }
                if matches(trimmed) {
                    lost.push(format!("{entry} (ignored by git, matches files.keep)"));
                } else if entry.ends_with('/') {
                    // git names an ignored directory once: what is in it counts too.
                    for inner in files_within(&lease.path, trimmed) {
                        if matches(&inner) {
                            lost.push(format!("{inner} (ignored by git, matches files.keep)"));
                        }
                    }
                }
            }
        }
        Ok(lost)
    }

    /// Refuses to delete a worktree that holds another one (made with `--path`, or by
    /// another tool): its files, processes and git record are that worktree's.
    fn refuse_nested(&self, lease: &Lease) -> Result<()> {
        let inner = self.worktrees_inside(&lease.path);
        if inner.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = inner
            .iter()
            .map(|k| format!("    {} ({})", k.root.display(), k.what))
            .collect();
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} holds another worktree, which would be deleted with it (--force included); nothing was removed:\n{}",
                lease.path.display(),
                lines.join("\n")
            ),
        )
        .hint(match &inner[0].branch {
            Some(b) => format!(
                "remove it first (`pwt rm {}` or `git worktree remove`), or move it out (`git worktree move`); `pwt rm --keep-worktree` releases the rest and leaves the directory",
                shell_word(b)
            ),
            None => "move it out of the worktree, or remove it yourself; `pwt rm --keep-worktree` releases the rest and leaves the directory".into(),
        }))
    }

    fn refuse_dirty(&self, lease: &Lease) -> Result<()> {
        let dirty = if lease.state == LeaseState::Removing
            && lease.leftover.contains(&Leftover::Worktree)
        {
            changes_besides_removal(&lease.path)?
        } else {
            changes(&lease.path)?
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = dirty.iter().take(10).map(|l| format!("    {l}")).collect();
        let more = match dirty.len() {
            n if n > 10 => format!("\n    … and {} more", n - 10),
            _ => String::new(),
        };
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} has uncommitted or untracked changes; nothing was removed:\n{}{more}",
                lease.path.display(),
                shown.join("\n")
            ),
        )
        .hint("commit or stash them, or pass --force to discard them"))
    }

    /// The one teardown of `lease`, which this process has marked `removing` (or, for a
    /// partial undo, which is `ready`).
    pub(crate) fn teardown(
        &self,
        lease: &Lease,
        plan: &TeardownPlan,
        reporter: &mut dyn Reporter,
    ) -> Result<TeardownReport> {
        let branch = lease.branch.as_str();
        if plan.hooks {
            self.pre_remove_hooks(lease, plan.force, reporter)?;
        }
        let spared;
        let mut theirs_now = false;
        let plan = match self.in_use(lease, plan) {
            None => plan,
            Some(InUse::Elsewhere(why)) => {
                // Set up again by another pwt (another HOME, say): it is theirs now.
                reporter.report(Event::Warning(format!(
                    "left {} and its data in place: {why}; only this pwt's lease goes",
                    lease.path.display()
                )));
                spared = TeardownPlan {
                    data: Vec::new(),
                    worktree: WorktreeStep::Keep,
                    branch: BranchStep::Keep,
                    ..plan.clone()
                };
                theirs_now = true;
                &spared
            }
            Some(InUse::Work(why)) => {
                // Back to an interrupted set-up, which `pwt up` can take over.
                self.leases().update_in(&lease.repo, branch, |l| {
                    l.state = LeaseState::Creating;
                    l.owner = None;
                    l.leftover.clear();
                    Ok(())
                })?;
                return Ok(TeardownReport {
                    stuck: vec![format!(
                        "{} has {why}, so the interrupted set-up is not rolled back; `pwt up {b}` finishes the set-up and keeps it, `pwt rm --force {b}` discards it",
                        lease.path.display(),
                        b = shell_word(branch)
                    )],
                    ..TeardownReport::default()
                });
            }
        };
        let mut report = TeardownReport::default();
        let mut left: Vec<Leftover> = Vec::new();
        self.drop_data(lease, plan, reporter, &mut report, &mut left)?;
        self.options.faults.pause(FaultPoint::AfterData);
        self.worktree_step(lease, plan, reporter, &mut report, &mut left);
        self.options.faults.pause(FaultPoint::AfterWorktree);
        if !left.is_empty() {
            self.leases().update_in(&lease.repo, branch, |l| {
                l.state = LeaseState::Removing;
                l.leftover = left;
                Ok(())
            })?;
            return Ok(report);
        }
        if plan.release {
            self.release_all(lease, plan, !theirs_now, reporter)?;
        }
        match plan.branch {
            BranchStep::Keep => {}
            BranchStep::DeleteMade => report.branch_deleted = self.git().delete_branch(branch, true).is_ok(),
            BranchStep::Delete { force } => match self.git().delete_branch(branch, force) {
                Ok(()) => report.branch_deleted = true,
                Err(_) => reporter.report(Event::Warning(format!(
                    "branch {branch:?} was kept: git refused to delete it (not fully merged?); `git branch -D {}` deletes it anyway",
                    shell_word(branch)
                ))),
            },
        }
        Ok(report)
    }

    /// Releases the lease at the end of a teardown (kept data marked so on its servers),
    /// and, with `holds`, its names in the team store, also those a killed set-up claimed
    /// and never got to create.
    fn release_all(
        &self,
        lease: &Lease,
        plan: &TeardownPlan,
        holds: bool,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        if holds {
            let kinds: Vec<ResourceKind> = lease
                .resources
                .kinds()
                .into_iter()
                .filter(|k| !plan.keep.has(*k))
                .collect();
            let released = self
                .team()
                .map_or(Ok(()), |t| t.release(lease, &lease.resources.only(&kinds)));
            if let Err(e) = released {
                reporter.report(Event::Warning(format!(
                    "the team store still names them: {}",
                    chain(&e)
                )));
            }
        }
        self.leases()
            .release(&lease.repo, &lease.branch, &plan.keep)?;
        self.mark_kept(lease, &plan.keep, reporter);
        Ok(())
    }

    /// Whether the half-made worktree an undo would remove is in use now: set up again by
    /// another pwt (its env files are not what this lease wrote), or holding someone's work
    /// (new commits, or changes after the checkout had finished).
    fn in_use(&self, lease: &Lease, plan: &TeardownPlan) -> Option<InUse> {
        let path = &lease.path;
        if !plan.settle || plan.worktree != WorktreeStep::Made || !path.exists() {
            return None;
        }
        let rendered: Vec<String> = self
            .lease_environment(lease)
            .ok()
            .and_then(|env| self.render_env_files(lease.slug.as_str(), &env).ok())
            .map(|files| {
                files
                    .into_iter()
                    .map(|(_, _, text, _)| content_hash(text.as_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        for (_, name) in self.env_files().unwrap_or_default() {
            let file = path.join(&name);
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let hash = content_hash(&bytes);
            if !lease.files.values().any(|h| *h == hash) && !rendered.contains(&hash) {
                return Some(InUse::Elsewhere(format!(
                    "{} was written by another pwt",
                    file.display()
                )));
            }
        }
        if plan.force {
            return None;
        }
        self.work_since_checkout(lease).map(InUse::Work)
    }

    /// What someone did in the worktree of an interrupted set-up since its checkout
    /// finished (`new commits`, `uncommitted or untracked changes`): then it is theirs to
    /// keep, not the set-up's to roll back.
    pub(crate) fn work_since_checkout(&self, lease: &Lease) -> Option<String> {
        let tip = lease.journal.checked_out.as_ref()?;
        if !lease.path.exists() {
            return None;
        }
        if crate::git::head_of(&lease.path).as_ref() != Some(tip) {
            return Some("new commits".into());
        }
        match changes(&lease.path) {
            Ok(c) if !c.is_empty() => return Some("uncommitted or untracked changes".into()),
            Ok(_) => {}
            Err(_) => return None,
        }
        if let Some(first) = self.losses(lease).ok().and_then(|l| l.into_iter().next()) {
            return Some(format!("files that would be lost ({first})"));
        }
        self.worktrees_inside(&lease.path)
            .first()
            .map(|k| format!("{} inside it ({})", k.root.display(), k.what))
    }

    fn pre_remove_hooks(
        &self,
        lease: &Lease,
        force: bool,
        reporter: &mut dyn Reporter,
    ) -> Result<()> {
        let env = self.lease_environment(lease)?;
        let result = run_hooks(
            "pre-remove",
            &self.config.hooks.pre_remove,
            &lease.path,
            &env,
            &self.options,
            reporter,
        );
        match result {
            Ok(()) => Ok(()),
            Err(e) if force => {
                reporter.report(Event::Warning(format!(
                    "{}; going on because of --force",
                    chain(&e)
                )));
                Ok(())
            }
            Err(e) => {
                self.leases().update(lease.branch.as_str(), |l| {
                    l.state = LeaseState::Ready;
                    l.owner = None;
                    l.leftover.clear();
                    l.dir_id = None;
                    Ok(())
                })?;
                Err(e
                    .context("teardown stopped before removing anything")
                    .hint("fix the hook, or pass --force to go on despite it"))
            }
        }
    }

    fn drop_data(
        &self,
        lease: &Lease,
        plan: &TeardownPlan,
        reporter: &mut dyn Reporter,
        report: &mut TeardownReport,
        left: &mut Vec<Leftover>,
    ) -> Result<()> {
        let resources = lease.resources.only(&plan.data);
        if resources.is_empty() {
            return Ok(());
        }
        let services = Services::new(self)?;
        if !services.any() {
            return Ok(());
        }
        let spare = self.spared_prefixes(lease)?;
        let marker = lease_marker(lease);
        let mut steps = services
            .block_on(with_progress(
                vec!["removing data".into()],
                reporter,
                services.drop(&resources, &marker, plan.created_database, &spare),
            ))
            .unwrap_or_default();
        if plan.settle {
            // Not there (yet): a request the killed pwt sent may still land. PostgreSQL's
            // drop waits for such a CREATE DATABASE itself (an advisory lock); the others are
            // looked at once more.
            let absent: Vec<ResourceKind> = steps
                .iter()
                .filter(|s| {
                    s.kind != ResourceKind::Database && matches!(s.result, Ok(Outcome::Absent))
                })
                .map(|s| s.kind)
                .collect();
            if !absent.is_empty() {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let again = services
                    .block_on(services.drop(&resources.only(&absent), &marker, false, &spare))
                    .unwrap_or_default();
                steps.retain(|s| !absent.contains(&s.kind));
                steps.extend(again);
            }
        }
        let gone: Vec<ResourceKind> = ResourceKind::ALL
            .into_iter()
            .filter(|k| {
                steps
                    .iter()
                    .filter(|s| s.kind == *k)
                    .all(|s| s.result.is_ok())
            })
            .collect();
        let released = self
            .team()
            .map_or(Ok(()), |t| t.release(lease, &resources.only(&gone)));
        if let Err(e) = released {
            reporter.report(Event::Warning(format!(
                "the team store still names them: {}",
                chain(&e)
            )));
        }
        for s in steps {
            match s.result {
                Ok(Outcome::Removed) => report.removed.extend(s.released),
                Ok(_) => {}
                Err(e @ ProvisionError::NotOurs { .. }) => {
                    reporter.report(Event::Warning(format!("left in place: {e}")));
                }
                Err(e) => {
                    left.push(Leftover::of(s.kind));
                    report.stuck.push(format!("{}: {}", s.what, chain(&e)));
                }
            }
        }
        Ok(())
    }

    /// Marks kept data as kept on the servers themselves, so no other registry (another
    /// HOME, a lost one) takes it for an orphan.
    fn mark_kept(&self, lease: &Lease, keep: &Resources, reporter: &mut dyn Reporter) {
        if keep.is_empty() {
            return;
        }
        let Ok(services) = Services::new(self) else {
            return;
        };
        let kept = pwt_core::kept_marker(&lease_marker(lease));
        for s in services
            .block_on(services.remark(keep, &kept))
            .unwrap_or_default()
        {
            if let Err(e) = s.result {
                reporter.report(Event::Warning(format!(
                    "{} is kept, but could not be marked so on its server ({}); this registry still knows",
                    s.what,
                    chain(&e)
                )));
            }
        }
    }

    /// Other holders' Redis prefixes that start with this lease's: their keys match its
    /// `SCAN MATCH` too, and must stay.
    fn spared_prefixes(&self, lease: &Lease) -> Result<Vec<RedisPrefix>> {
        let Some(mine) = lease.resources.redis_prefix() else {
            return Ok(Vec::new());
        };
        let state = self.state()?;
        let mut out: Vec<RedisPrefix> = state
            .leases
            .iter()
            .filter(|l| !(l.repo == lease.repo && l.branch == lease.branch))
            .map(|l| &l.resources)
            .chain(state.kept.iter().map(|k| &k.resources))
            .filter_map(Resources::redis_prefix)
            .filter(|p| p.as_str() != mine.as_str() && p.as_str().starts_with(mine.as_str()))
            .cloned()
            .collect();
        out.dedup();
        Ok(out)
    }

    fn worktree_step(
        &self,
        lease: &Lease,
        plan: &TeardownPlan,
        reporter: &mut dyn Reporter,
        report: &mut TeardownReport,
        left: &mut Vec<Leftover>,
    ) {
        let path = &lease.path;
        let step = plan.worktree;
        let prune = [OsStr::new("worktree"), OsStr::new("prune")];
        let deletes = matches!(step, WorktreeStep::Made | WorktreeStep::Remove { .. });
        if deletes && let Some(why) = self.holds_another(path) {
            left.push(Leftover::Worktree);
            report.stuck.push(why);
            return;
        }
        let result = match step {
            WorktreeStep::Keep => return,
            WorktreeStep::EnvFiles => {
                for k in self.remove_env_files(path, &lease.files) {
                    reporter.report(Event::Warning(format!(
                        "kept {}: it was edited since pwt wrote it",
                        k.display()
                    )));
                }
                if lease.files.is_empty() {
                    self.remove_rendered_env_files(lease);
                }
                return;
            }
            WorktreeStep::Prune => {
                let _ = self.git().worktree(&prune);
                return;
            }
            WorktreeStep::Made => self.git().remove_made_worktree(path),
            WorktreeStep::Remove { .. } if !path.exists() => self.git().worktree(&prune),
            // A removal killed half-way left files without the `.git` that made them a
            // worktree: finish it, when it is still the directory that removal began on.
            WorktreeStep::Remove { .. } if plan.resume && !path.join(".git").exists() => {
                match (&lease.dir_id, crate::paths::dir_identity(path)) {
                    (Some(was), Some(now)) if *was != now => Err(Error::new(
                        ErrorKind::Refused,
                        format!(
                            "{} is not the directory the interrupted removal began on (it was made again since): left in place",
                            path.display()
                        ),
                    )),
                    _ => self.git().finish_worktree_removal(path),
                }
            }
            WorktreeStep::Remove { force } => {
                let mut args = vec![OsStr::new("worktree"), OsStr::new("remove")];
                if force {
                    // Twice: also a locked worktree, as the user asked for force.
                    args.extend([OsStr::new("--force"), OsStr::new("--force")]);
                } else if plan.resume {
                    // Killed half-way through git's own removal: the files it deleted read
                    // as changes to git, and the check above found nothing else.
                    args.push(OsStr::new("--force"));
                }
                args.push(path.as_os_str());
                self.git().worktree(&args)
            }
        };
        match result {
            Ok(()) if step == WorktreeStep::Made && !lease.journal.worktree => {}
            Ok(()) => report.removed.push(Released::Worktree),
            Err(e) => {
                left.push(Leftover::Worktree);
                report
                    .stuck
                    .push(format!("worktree {}: {}", path.display(), chain(&e)));
            }
        }
    }

    /// Why the directory at `path` must not be deleted: it holds another worktree or
    /// repository, left in place with it.
    fn holds_another(&self, path: &std::path::Path) -> Option<String> {
        if !path.exists() {
            return None;
        }
        let inner = self.worktrees_inside(path);
        if inner.is_empty() {
            return None;
        }
        let names: Vec<String> = inner
            .iter()
            .map(|k| format!("{} ({})", k.root.display(), k.what))
            .collect();
        Some(format!(
            "worktree {}: it holds another worktree, left in place with it: {}",
            path.display(),
            names.join(", ")
        ))
    }

    /// An adoption undone before pwt recorded its env files: they go when they are exactly
    /// what pwt renders for it (so nobody else's file is touched).
    fn remove_rendered_env_files(&self, lease: &Lease) {
        let Ok(env) = self.lease_environment(lease) else {
            return;
        };
        let Ok(files) = self.render_env_files(lease.slug.as_str(), &env) else {
            return;
        };
        for (_, name, text, _) in files {
            let path = lease.path.join(name);
            if std::fs::read(&path).is_ok_and(|b| b == text.as_bytes()) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Directories of installed dependencies: their files are the package manager's, not
/// someone's work (`.env.example` files ship in npm packages).
const DEPENDENCY_DIRS: &[&str] = &[
    "node_modules",
    ".venv",
    "venv",
    "vendor",
    "target",
    "__pycache__",
    ".tox",
    ".git",
];

/// The files under `root/rel` (relative to `root`), links not followed, dependency
/// directories left out.
fn files_within(root: &std::path::Path, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![rel.to_owned()];
    while let Some(dir) = todo.pop() {
        if dir
            .rsplit('/')
            .next()
            .is_some_and(|n| DEPENDENCY_DIRS.contains(&n))
        {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let path = format!("{dir}/{}", e.file_name().to_string_lossy());
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(_) => out.push(path),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}
