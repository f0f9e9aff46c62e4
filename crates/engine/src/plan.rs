//! Policy as pure functions: which slug, ports, resource names and Redis DB index a lease
//! gets ([`plan_lease`]), and what a reconcile should do ([`plan_gc`]). Each is computed
//! from the registry state, the configuration and git's facts, passed in; the two effects it
//! needs (is a port free, what do the templates render) come in as functions, so the same
//! input always gives the same plan and the tests below need no machine.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use pwt_alloc::{
    Claim, Declared, Journal, Kept, Lease, LeaseState, Owner, PortRequest, State, WorktreeEntry,
    allocate_ports,
};
use pwt_core::{
    BranchName, MAIN_SLUG, RedisPrefix, RedisSlot, ResourceKind, Resources, Slug,
    disambiguated_slug, owner_marker,
};
use pwt_provision::Marked;

use crate::error::{Error, ErrorKind, Result};
use crate::paths::shell_word;
use crate::services::{RedisPlan, resource_of};

/// What the lease plan needs to know about the repository, the configuration and the machine.
pub(crate) struct LeaseFacts<'a> {
    /// The repository's common dir.
    pub repo: &'a Path,
    /// Its key (the common dir as text), part of hashes and markers.
    pub repo_key: &'a str,
    /// The project name.
    pub project: &'a str,
    /// Port service names, in block order.
    pub services: &'a [String],
    /// The inclusive port range.
    pub range: (u16, u16),
    /// Never leased: the main worktree's ports, and the proxy's own (a worktree on it would
    /// have the proxy call itself).
    pub main_ports: HashSet<u16>,
    /// What the worktrees' env files declare (the cooperative scan).
    pub declared: &'a Declared,
    /// How Redis isolates a new lease.
    pub redis: RedisPlan,
    /// Now, in Unix seconds.
    pub now: u64,
    /// The pwt making the plan.
    pub owner: Owner,
    /// The registry's identity, part of new leases' markers.
    pub registry_id: &'a str,
    /// Ports other registries of the machine (other users) have claimed.
    pub claimed: HashSet<u16>,
    /// The Redis DB index the main worktree uses (its URL's), never leased.
    pub main_redis_db: u16,
    /// What others hold in the team store.
    pub held: &'a [Resources],
    /// The Compose project names the Docker engine knows (some checkout's).
    pub compose_projects: &'a HashSet<String>,
}

/// What is asked for.
pub(crate) struct LeaseAsk<'a> {
    /// The branch.
    pub branch: &'a BranchName,
    /// `pwt new`: a new worktree at a path derived from the slug (an existing lease is an
    /// error); else an adoption of the worktree at this root.
    pub new: bool,
    /// The branch does not exist yet: the set-up creates it.
    pub creates_branch: bool,
}

/// The resource names the templates give a slug and its ports.
pub(crate) type NamesOf<'a> = &'a dyn Fn(&str, &BTreeMap<String, u16>) -> Result<Resources>;

/// The effects a plan consults.
pub(crate) struct Effects<'a> {
    /// The path of a new worktree for a slug.
    pub path: &'a dyn Fn(&Slug) -> Result<PathBuf>,
    /// The resource names the templates give a slug and ports (Redis: its prefix, or `None`
    /// where an index is leased instead).
    pub names: NamesOf<'a>,
    /// True when nothing listens on the port.
    pub is_free: &'a dyn Fn(u16) -> bool,
}

/// A lease to record, and whether it is new.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LeasePlan {
    /// The lease, `creating` unless it was `ready` already.
    pub lease: Lease,
    /// No lease of the branch existed.
    pub fresh: bool,
}

/// The lease of `ask.branch`: the existing one reused (adopt), or a new one. Refuses a
/// branch another live pwt works on, a `pwt new` of a leased branch, and any name or index
/// that would be another's.
pub(crate) fn plan_lease(
    state: &State,
    facts: &LeaseFacts<'_>,
    ask: &LeaseAsk<'_>,
    fx: &Effects<'_>,
) -> Result<LeasePlan> {
    let branch = ask.branch.as_str();
    let existing = state.find(facts.repo, branch);
    if let Some(l) = existing {
        refuse_existing(l, ask.new)?;
    }
    let kept = state.kept_of(facts.repo, branch);
    let slug = match existing {
        Some(l) => l.slug.clone(),
        None => new_slug(state, facts.repo, branch, kept),
    };
    let path = match existing {
        Some(l) => l.path.clone(),
        None => (fx.path)(&slug)?,
    };
    refuse_taken_path(state, facts.repo, branch, &path)?;
    let ports = plan_ports(state, facts, branch, existing, &slug, fx)?;
    let mut lease = match existing {
        Some(l) => Lease {
            ports,
            updated_at: facts.now,
            // Taking over an interrupted set-up makes it this pwt's.
            owner: if l.state == LeaseState::Ready {
                l.owner
            } else {
                Some(facts.owner)
            },
            ..l.clone()
        },
        None => new_lease(facts, ask, slug, path, ports),
    };
    if existing.is_none() {
        lease.marker = Some(pwt_core::registry_marker(
            facts.repo_key,
            lease.slug.as_str(),
            facts.registry_id,
        ));
    }
    if existing.is_none() {
        lease.compose = distinct_compose_name(state, facts, &lease);
    }
    if existing.is_none()
        && let Some(k) = kept.filter(|k| k.slug == lease.slug)
    {
        lease.resources = k.resources.clone();
        lease.journal.kept = k.resources.kinds();
        lease.marker = Some(k.marker());
    }
    name_resources(state, facts, &mut lease, fx)?;
    Ok(LeasePlan {
        lease,
        fresh: existing.is_none(),
    })
}

/// A new lease's Compose project name when `<project>-<slug>` is another checkout's
/// already (a clone of the same repository, another repository with the same project name,
/// a Compose project the engine knows: containers, volumes or networks under that name,
/// left by an earlier worktree or run from elsewhere): that name and a suffix of this
/// repository's and branch's, so neither takes down, mounts or deletes the volumes of the
/// other's. `None` when it is free.
fn distinct_compose_name(state: &State, facts: &LeaseFacts<'_>, lease: &Lease) -> Option<String> {
    let wanted = lease.compose_project();
    let taken = |name: &str| {
        facts.compose_projects.contains(name)
            || state.leases.iter().any(|l| {
                !(l.repo == lease.repo && l.branch == lease.branch) && l.compose_project() == name
            })
    };
    if !taken(&wanted) {
        return None;
    }
    let key = format!("{}\0{}", facts.repo_key, lease.branch.as_str());
    let hash = format!("{:016x}", pwt_core::stable_hash(key.as_bytes()));
    // Longer suffixes, then numbers: one is free, there being only so many names taken.
    (6..=16)
        .step_by(2)
        .map(|n| format!("{wanted}-{}", &hash[..n]))
        .chain((2..).map(|n| format!("{wanted}-{}-{n}", &hash[..6])))
        .find(|name| !taken(&pwt_alloc::compose_name(name)))
}

/// A new branch's slug: the one its kept data is marked after when free (a branch keeps its
/// slug), else derived.
fn new_slug(state: &State, repo: &Path, branch: &str, kept: Option<&Kept>) -> Slug {
    let taken: HashSet<&str> = state
        .of_repo(repo)
        .map(|l| l.slug.as_str())
        .chain([MAIN_SLUG])
        .collect();
    match kept.filter(|k| !taken.contains(k.slug.as_str())) {
        Some(k) => k.slug.clone(),
        None => Slug::derive(branch, |s| taken.contains(s)),
    }
}

fn refuse_taken_path(state: &State, repo: &Path, branch: &str, path: &Path) -> Result<()> {
    let Some(other) = state
        .of_repo(repo)
        .find(|l| l.path == path && l.branch.as_str() != branch)
    else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::Exists,
        format!(
            "{} is already leased to branch {:?}",
            path.display(),
            other.branch.as_str()
        ),
    )
    .hint(format!(
        "`pwt rm {}` first, or choose another path",
        shell_word(other.branch.as_str())
    )))
}

fn new_lease(
    facts: &LeaseFacts<'_>,
    ask: &LeaseAsk<'_>,
    slug: Slug,
    path: PathBuf,
    ports: BTreeMap<String, u16>,
) -> Lease {
    Lease {
        repo: facts.repo.to_owned(),
        branch: ask.branch.clone(),
        slug,
        marker: None,
        path,
        project: facts.project.to_owned(),
        ports,
        resources: Resources::default(),
        state: LeaseState::Creating,
        owner: Some(facts.owner),
        journal: Journal {
            worktree: ask.new,
            branch: ask.new && ask.creates_branch,
            ..Journal::default()
        },
        files: BTreeMap::new(),
        // Until they are done: a set-up killed before them leaves them for `pwt up`.
        pending_hooks: true,
        pending_files: true,
        leftover: Vec::new(),
        keep: Vec::new(),
        dir_id: None,
        compose: None,
        created_at: facts.now,
        updated_at: facts.now,
    }
}

/// The refusal when another live pwt works on the lease.
pub(crate) fn busy(lease: &Lease, owner: &Owner) -> Error {
    let doing = if lease.state == LeaseState::Creating {
        "setting it up"
    } else {
        "removing it"
    };
    Error::new(
        ErrorKind::Busy,
        format!(
            "branch {:?} is busy: another pwt (pid {}) is {doing}",
            lease.branch.as_str(),
            owner.pid
        ),
    )
    .hint("wait for it to finish, then try again (`pwt list` shows it)")
}

fn refuse_existing(l: &Lease, new: bool) -> Result<()> {
    let branch = l.branch.as_str();
    if let Some(owner) = l.busy() {
        return Err(busy(l, owner));
    }
    match l.state {
        LeaseState::Ready if new => Err(Error::new(
            ErrorKind::Exists,
            format!(
                "branch {branch:?} already has a worktree at {}",
                l.path.display()
            ),
        )
        .hint(format!(
            "`pwt up {q}` re-renders its env files; `pwt rm {q}` removes it",
            q = shell_word(branch)
        ))),
        LeaseState::Removing => Err(Error::new(
            ErrorKind::Busy,
            format!("branch {branch:?} was being removed when a pwt stopped; finish that first"),
        )
        .hint(format!("`pwt rm {}`", shell_word(branch)))),
        LeaseState::Creating if !new => Ok(()),
        LeaseState::Creating => Err(Error::new(
            ErrorKind::Busy,
            format!("the set-up of branch {branch:?} was interrupted"),
        )
        .hint("`pwt gc --yes` rolls it back")),
        LeaseState::Ready => Ok(()),
    }
}

fn plan_ports(
    state: &State,
    facts: &LeaseFacts<'_>,
    branch: &str,
    existing: Option<&Lease>,
    slug: &Slug,
    fx: &Effects<'_>,
) -> Result<BTreeMap<String, u16>> {
    let (lo, hi) = facts.range;
    if let Some(l) = existing {
        let same_services = l.ports.keys().eq(facts.services.iter());
        let in_range = l.ports.values().all(|p| (lo..=hi).contains(p));
        let unclaimed = !l
            .ports
            .values()
            .any(|p| facts.claimed.contains(p) || facts.main_ports.contains(p));
        if same_services && in_range && unclaimed {
            return Ok(l.ports.clone());
        }
    }
    let mut taken: HashSet<u16> = facts.declared.ports.clone();
    for l in &state.leases {
        if !(l.repo == facts.repo && l.branch.as_str() == branch) {
            taken.extend(l.ports.values());
        }
    }
    taken.extend(&facts.main_ports);
    taken.extend(&facts.claimed);
    let remembered = existing
        .map(|l| &l.ports)
        .or_else(|| state.recent_ports(facts.repo, branch));
    let req = PortRequest {
        repo: facts.repo_key,
        slug: slug.as_str(),
        services: facts.services,
        range: facts.range,
        remembered,
    };
    allocate_ports(&req, &taken, fx.is_free).map_err(|e| {
        let inside = |p: &&u16| (lo..=hi).contains(*p);
        let leased = state
            .leases
            .iter()
            .flat_map(|l| l.ports.values())
            .filter(inside)
            .count();
        let claimed = facts.claimed.iter().filter(inside).count();
        let declared = facts.declared.ports.iter().filter(inside).count();
        let span = usize::from(hi - lo) + 1;
        Error::from(e).context(format!(
            "no block of {} free ports left in {lo}-{hi} ({span} ports): {leased} leased in this registry, {claimed} claimed by other users' pwt, {declared} named in worktrees' env files, the rest in use by other programs or in blocks too broken up",
            facts.services.len().max(1)
        ))
    })
}

/// Everything another holder has: other leases (any repository), other branches' kept data,
/// and what a live reconcile is dropping.
struct Others<'a> {
    leases: Vec<&'a Resources>,
    claims: Vec<&'a Claim>,
}

impl<'a> Others<'a> {
    fn of(state: &'a State, lease: &Lease, held: &'a [Resources]) -> Self {
        let mine = |repo: &Path, branch: &BranchName| repo == lease.repo && *branch == lease.branch;
        Self {
            leases: state
                .leases
                .iter()
                .filter(|l| !mine(&l.repo, &l.branch))
                .map(|l| &l.resources)
                .chain(
                    state
                        .kept
                        .iter()
                        .filter(|k| !mine(&k.repo, &k.branch))
                        .map(|k| &k.resources),
                )
                .chain(held.iter())
                .collect(),
            claims: state.claims.iter().filter(|c| c.owner.is_alive()).collect(),
        }
    }

    fn all(&self) -> impl Iterator<Item = &Resources> {
        self.leases
            .iter()
            .copied()
            .chain(self.claims.iter().map(|c| &c.resources))
    }

    fn holds(&self, kind: ResourceKind, r: &Resources) -> bool {
        self.all().any(|o| same(kind, o, r))
    }
}

/// True when `a` and `b` name the same resource of `kind`.
fn same(kind: ResourceKind, a: &Resources, b: &Resources) -> bool {
    match kind {
        ResourceKind::Database => a.database.is_some() && a.database == b.database,
        ResourceKind::Vhost => a.vhost.is_some() && a.vhost == b.vhost,
        ResourceKind::Redis => a.redis.is_some() && a.redis == b.redis,
    }
}

/// Names the lease's database, vhost and Redis prefix where configured and not named yet,
/// and leases a Redis DB index in db mode. Names stay once given. A name another holder has
/// is rendered again with a disambiguated slug; if even that is taken, it is an error: never
/// the same resource twice.
fn name_resources(
    state: &State,
    facts: &LeaseFacts<'_>,
    lease: &mut Lease,
    fx: &Effects<'_>,
) -> Result<()> {
    let others = Others::of(state, lease, facts.held);
    let slug = lease.slug.to_string();
    let render = |slug: &str| (fx.names)(slug, &lease.ports);
    let wanted = render(&slug)?;
    let mut alt: Option<Resources> = None;
    for kind in [
        ResourceKind::Database,
        ResourceKind::Vhost,
        ResourceKind::Redis,
    ] {
        if lease.resources.has(kind) || !wanted.has(kind) {
            continue;
        }
        let mut chosen = wanted.only(&[kind]);
        if others.holds(kind, &chosen) {
            let a = match &alt {
                Some(a) => a.clone(),
                None => {
                    let a = render(&disambiguated_slug(
                        &slug,
                        facts.repo_key,
                        lease.branch.as_str(),
                    ))?;
                    alt = Some(a.clone());
                    a
                }
            };
            chosen = a.only(&[kind]);
            if !chosen.has(kind) || others.holds(kind, &chosen) {
                let what = wanted.describe(kind).unwrap_or_default();
                return Err(Error::new(
                    ErrorKind::Exists,
                    format!("{what} is already another worktree's, and the name template does not depend on the slug"),
                )
                .hint("put {{ slug }} in the template"));
            }
        }
        copy_kind(kind, &chosen, &mut lease.resources);
    }
    if let Some(prefix) = lease.resources.redis_prefix() {
        refuse_overlap(prefix, &others, &facts.declared.prefixes)?;
    }
    if let (RedisPlan::Db(n), None) = (facts.redis, &lease.resources.redis) {
        lease.resources.redis = Some(RedisSlot::Db(free_db_index(n, facts, &others)?));
    }
    Ok(())
}

fn copy_kind(kind: ResourceKind, from: &Resources, to: &mut Resources) {
    match kind {
        ResourceKind::Database => to.database = from.database.clone(),
        ResourceKind::Vhost => to.vhost = from.vhost.clone(),
        ResourceKind::Redis => to.redis = from.redis.clone(),
    }
}

/// Refuses a prefix that is a prefix of another holder's (or has one as its prefix): the
/// cleanup of the shorter, `SCAN MATCH <prefix>*`, would reach the longer one's keys. The
/// main worktree's keys have no prefix, so an empty prefix is refused where it is made.
fn refuse_overlap(
    prefix: &RedisPrefix,
    others: &Others<'_>,
    declared: &HashSet<String>,
) -> Result<()> {
    let p = prefix.as_str();
    // Other leases of this registry, and what worktrees git lists declare (another HOME's).
    let known = others
        .all()
        .filter_map(Resources::redis_prefix)
        .map(|o| o.as_str().to_owned())
        .chain(declared.iter().cloned());
    for o in known {
        let o = o.as_str();
        if o != p && (o.starts_with(p) || p.starts_with(o)) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("Redis key prefix {p:?} overlaps {o:?}, another worktree's: removing one would delete keys of the other"),
            )
            .hint("end `redis.prefix` with a character slugs never contain, as the default `pwt:{{ slug }}:` does"));
        }
    }
    Ok(())
}

fn free_db_index(n: u16, facts: &LeaseFacts<'_>, others: &Others<'_>) -> Result<u16> {
    let used: HashSet<u16> = others
        .all()
        .filter_map(Resources::redis_db)
        .chain(facts.declared.redis_dbs.iter().copied())
        .chain([facts.main_redis_db])
        .collect();
    (1..n).find(|i| !used.contains(i)).ok_or_else(|| {
        let count = |it: &mut dyn Iterator<Item = &Resources>| {
            it.filter(|r| r.redis_db().is_some()).count()
        };
        let here = count(&mut others.leases.iter().copied());
        let held = count(&mut facts.held.iter());
        Error::from(pwt_alloc::AllocError::RedisDbsExhausted {
            max: n.saturating_sub(1),
        })
        .context(format!(
            "every DB index of the Redis server is taken: {here} by this registry's leases and kept data, {held} held by others in the team store, {} named in worktrees' env files",
            facts.declared.redis_dbs.len()
        ))
    })
}

/// What a reconcile may do, one item at a time (each is checked again under the lock right
/// before it is done).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// The worktree is gone (deleted outside pwt, git lists it nowhere): remove its data and
    /// release the lease.
    Gone(Lease),
    /// A set-up was interrupted: undo exactly what it made.
    Undo(Lease),
    /// A teardown was interrupted: finish it.
    Finish(Lease),
    /// The worktree was moved (`git worktree move`): record its new path.
    Moved(Lease, PathBuf),
    /// The whole repository is gone: remove the data it can, release the lease.
    RepoGone(Lease),
    /// A resource with this repository's marker that nothing owns or declares.
    Orphan(Orphan),
    /// Data kept by `pwt rm --keep-data` (acted on only with `--kept`).
    Kept(Kept),
    /// A name this holder holds in the team store that no lease or kept data accounts for.
    TeamHold(pwt_provision::Hold),
    /// Containers carrying the marker of a worktree of this repository that is gone (no
    /// lease has the marker, and the directory Compose ran them in is no worktree git
    /// lists).
    Containers(Vec<crate::docker::Container>),
    /// Processes `pwt dev` started (recorded with pid and start time) for a worktree of this
    /// repository that has no lease any more, still running.
    Processes {
        /// The worktree's slug.
        slug: String,
        /// Each, as recorded.
        running: Vec<crate::dev::DevProcess>,
    },
}

/// A marked resource no lease owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// Which service.
    pub kind: ResourceKind,
    /// The one resource.
    pub resources: Resources,
    /// Its marker.
    pub marker: String,
    /// It is marked as kept by `pwt rm --keep-data` (under a registry this gc does not
    /// know): dropped only with `--kept`.
    pub kept: bool,
}

/// A marked resource gc leaves alone, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spared {
    /// The resource (`database "demo_x"`).
    pub what: String,
    /// Why (`declared by the worktree at …`).
    pub why: String,
}

/// What a reconcile found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcPlan {
    /// What it may do.
    pub actions: Vec<Action>,
    /// Resources with this repository's marker and no lease, left alone because a worktree
    /// git lists declares them.
    pub spared: Vec<Spared>,
}

/// What the reconcile plan needs to know.
pub(crate) struct GcFacts<'a> {
    /// The repository's common dir and key.
    pub repo: &'a Path,
    /// Its key.
    pub repo_key: &'a str,
    /// git's worktrees of the repository.
    pub worktrees: &'a [WorktreeEntry],
    /// What the env files of its existing worktrees declare.
    pub declared: &'a Declared,
    /// Resources on the services with a pwt marker (any repository's).
    pub found: &'a [(ResourceKind, Marked)],
    /// Also leases of repositories that no longer exist.
    pub all_repos: bool,
    /// Whether `repo` exists, for other repositories' leases.
    pub repo_exists: &'a dyn Fn(&Path) -> bool,
    /// Whether a lease's worktree directory exists.
    pub path_exists: &'a dyn Fn(&Path) -> bool,
    /// Whether a lease follows its branch to where git shows it (`Project::moved_to`).
    pub follows: &'a dyn Fn(&Lease) -> bool,
}

/// What a reconcile should do. Ownership comes from git's worktree list, the worktrees'
/// env files and the markers, never from the registry alone: a worktree git lists (and whose
/// directory exists) is never gone, and data it declares is never an orphan, whatever the
/// registry says.
pub(crate) fn plan_gc(state: &State, facts: &GcFacts<'_>) -> GcPlan {
    let mut plan = GcPlan::default();
    for lease in state.of_repo(facts.repo) {
        match classify(lease, facts) {
            Some(Action::Gone(l)) if declares(facts.declared, &l) => plan.spared.push(Spared {
                what: format!("the data of {}", l.branch.as_str()),
                why: format!(
                    "its worktree {} is gone, but a worktree git lists declares its slug or data (moved and renamed?): `pwt up` there takes it back",
                    l.path.display()
                ),
            }),
            Some(a) => plan.actions.push(a),
            None => {}
        }
    }
    if facts.all_repos {
        for l in state
            .leases
            .iter()
            .filter(|l| l.repo != facts.repo && !(facts.repo_exists)(&l.repo))
        {
            if l.busy().is_some() {
                continue;
            }
            if (facts.path_exists)(&l.path) {
                // The repository moved (or was renamed), its worktree did not go with it.
                plan.spared.push(Spared {
                    what: format!("the lease of {} ({})", l.branch.as_str(), l.repo.display()),
                    why: format!(
                        "its worktree {} still exists: the repository moved?",
                        l.path.display()
                    ),
                });
                continue;
            }
            plan.actions.push(Action::RepoGone(l.clone()));
        }
    }
    let prefix = pwt_core::repo_marker_prefix(facts.repo_key);
    for (kind, m) in facts.found {
        if !m.marker.starts_with(&prefix) {
            continue;
        }
        let Some(resources) = resource_of(*kind, &m.name) else {
            continue;
        };
        if let Some(spared) = reset_copy(state, *kind, &m.name, &m.marker) {
            plan.spared.push(spared);
            continue;
        }
        if let Some(why) = owned(state, facts, *kind, &resources, &m.marker) {
            if let Some(why) = why {
                plan.spared.push(Spared {
                    what: resources.describe(*kind).unwrap_or_default(),
                    why,
                });
            }
            continue;
        }
        plan.actions.push(Action::Orphan(Orphan {
            kind: *kind,
            resources,
            marker: pwt_core::base_marker(&m.marker).to_owned(),
            kept: pwt_core::is_kept_marker(&m.marker),
        }));
    }
    plan.actions.extend(
        state
            .kept
            .iter()
            .filter(|k| k.repo == facts.repo)
            .cloned()
            .map(Action::Kept),
    );
    plan
}

/// The copy a `reset_database` makes under a name of its own, marked as its worktree's: a
/// reset that stopped before the rename left it, with the data the worktree was being
/// given. Running the reset again finishes it; gc leaves it.
fn reset_copy(state: &State, kind: ResourceKind, name: &str, marker: &str) -> Option<Spared> {
    (kind == ResourceKind::Database
        && name.starts_with("pwt_reset_")
        && state.leases.iter().any(|l| l.marker() == marker))
    .then(|| Spared {
        what: format!("database {name:?}"),
        why: "the copy of a reset_database that stopped before it finished: reset the worktree's database again (pwt mcp's reset_database) to finish it".into(),
    })
}

/// True when a worktree git lists declares the lease's slug or one of its resources.
pub(crate) fn declares(d: &Declared, l: &Lease) -> bool {
    d.slugs.contains(l.slug.as_str()) || declares_resources(d, &l.resources)
}

/// True when a worktree's env file names one of `r`'s resources.
pub(crate) fn declares_resources(d: &Declared, r: &Resources) -> bool {
    r.database
        .as_ref()
        .is_some_and(|n| d.databases.contains(n.as_str()))
        || r.vhost
            .as_ref()
            .is_some_and(|n| d.vhosts.contains(n.as_str()))
        || r.redis_prefix()
            .is_some_and(|p| d.prefixes.contains(p.as_str()))
        || r.redis_db().is_some_and(|n| d.redis_dbs.contains(&n))
}

fn classify(lease: &Lease, facts: &GcFacts<'_>) -> Option<Action> {
    if lease.busy().is_some() {
        return None; // another pwt is working on it right now
    }
    match lease.state {
        LeaseState::Creating => return Some(Action::Undo(lease.clone())),
        LeaseState::Removing => return Some(Action::Finish(lease.clone())),
        LeaseState::Ready => {}
    }
    // Moved with `git worktree move` (another worktree may stand at the old path now, or
    // two swapped), not deleted: follow it, never drop its data. Only to a path pwt can
    // record (`pwt up` there says why not).
    let moved = facts.worktrees.iter().find(|w| {
        w.exists && w.branch.as_deref() == Some(lease.branch.as_str()) && w.root != lease.path
    });
    let moved = moved.filter(|_| (facts.follows)(lease));
    match moved {
        Some(w) if w.root.to_str().is_none() => None,
        Some(w) => Some(Action::Moved(lease.clone(), w.root.clone())),
        None if (facts.path_exists)(&lease.path) => None,
        None => Some(Action::Gone(lease.clone())),
    }
}

/// `Some` when something owns the resource: `Some(None)` for a lease, kept data or a live
/// claim (nothing to say), `Some(Some(why))` for a worktree that declares it without a lease.
fn owned(
    state: &State,
    facts: &GcFacts<'_>,
    kind: ResourceKind,
    r: &Resources,
    marker: &str,
) -> Option<Option<String>> {
    let held = state
        .leases
        .iter()
        .map(|l| &l.resources)
        .chain(state.kept.iter().map(|k| &k.resources))
        .chain(
            state
                .claims
                .iter()
                .filter(|c| c.owner.is_alive())
                .map(|c| &c.resources),
        )
        .any(|o| same(kind, o, r));
    if held {
        return Some(None);
    }
    let d = facts.declared;
    let declared = match kind {
        ResourceKind::Database => r
            .database
            .as_ref()
            .is_some_and(|n| d.databases.contains(n.as_str())),
        ResourceKind::Vhost => r
            .vhost
            .as_ref()
            .is_some_and(|n| d.vhosts.contains(n.as_str())),
        ResourceKind::Redis => match &r.redis {
            Some(RedisSlot::Prefix(p)) => d.prefixes.contains(p.as_str()),
            Some(RedisSlot::Db(n)) => d.redis_dbs.contains(n),
            None => false,
        },
    };
    if declared {
        return Some(Some(
            "a worktree git lists declares it in its env files".into(),
        ));
    }
    // A worktree whose slug makes this marker (env files turned off, or edited).
    let slugs = d.slugs.iter().cloned().chain(
        facts
            .worktrees
            .iter()
            .filter(|w| w.exists && !w.is_main)
            .filter_map(|w| w.branch.as_deref())
            .map(|b| Slug::derive(b, |_| false).to_string()),
    );
    for s in slugs {
        if owner_marker(facts.repo_key, &s) == pwt_core::base_marker(marker) {
            return Some(Some(format!(
                "it carries the marker of worktree `{s}`, which git lists"
            )));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pwt_core::{DbName, Vhost};

    const REPO: &str = "/r/.git";

    fn facts<'a>(
        declared: &'a Declared,
        services: &'a [String],
        redis: RedisPlan,
    ) -> LeaseFacts<'a> {
        LeaseFacts {
            repo: Path::new(REPO),
            repo_key: REPO,
            project: "r",
            services,
            range: (20000, 20099),
            main_ports: HashSet::from([3000]),
            declared,
            redis,
            now: 100,
            owner: Owner {
                pid: 1,
                start: Some(1),
            },
            registry_id: "",
            claimed: HashSet::new(),
            main_redis_db: 0,
            held: &[],
            compose_projects: Box::leak(Box::default()),
        }
    }

    #[test]
    fn a_compose_project_name_the_engine_knows_is_never_given_out_again() {
        let (d, s) = (Declared::default(), vec!["app".to_owned()]);
        let known: &HashSet<String> = Box::leak(Box::new(HashSet::from(["r-feat".to_owned()])));
        let f = LeaseFacts {
            compose_projects: known,
            ..facts(&d, &s, RedisPlan::AsConfigured)
        };
        let lease = |branch: &str| Lease {
            compose: None,
            ..new_lease(
                &f,
                &LeaseAsk {
                    branch: &BranchName::parse(branch).expect("branch"),
                    new: true,
                    creates_branch: true,
                },
                pwt_core::Slug::parse(branch).expect("slug"),
                PathBuf::from("/r.x"),
                BTreeMap::new(),
            )
        };
        let state = State::default();
        assert_eq!(distinct_compose_name(&state, &f, &lease("other")), None);
        let name = distinct_compose_name(&state, &f, &lease("feat")).expect("suffixed");
        assert!(
            name.starts_with("r-feat-") && name.len() == "r-feat-".len() + 6,
            "{name}"
        );
        // Stable for the branch, so its env files say the same every time.
        assert_eq!(
            distinct_compose_name(&state, &f, &lease("feat")),
            Some(name)
        );
    }

    fn names(slug: &str, _: &BTreeMap<String, u16>) -> Result<Resources> {
        Ok(Resources {
            database: Some(DbName::parse(&format!("r_{}", slug.replace('-', "_"))).expect("db")),
            vhost: Some(Vhost::parse(&format!("/{slug}")).expect("vhost")),
            redis: Some(RedisSlot::Prefix(
                RedisPrefix::parse(&format!("{slug}:")).expect("p"),
            )),
        })
    }

    fn db_names(slug: &str, p: &BTreeMap<String, u16>) -> Result<Resources> {
        let mut r = names(slug, p)?;
        r.redis = None;
        Ok(r)
    }

    fn path(slug: &Slug) -> Result<PathBuf> {
        Ok(PathBuf::from(format!("/r.{slug}")))
    }

    fn free(_: u16) -> bool {
        true
    }

    fn lease_in(
        state: &mut State,
        f: &LeaseFacts<'_>,
        branch: &str,
        fx: &Effects<'_>,
    ) -> Result<Lease> {
        let b = BranchName::parse(branch).expect("branch");
        let plan = plan_lease(
            state,
            f,
            &LeaseAsk {
                branch: &b,
                new: true,
                creates_branch: true,
            },
            fx,
        )?;
        state.leases.push(plan.lease.clone());
        Ok(plan.lease)
    }

    #[test]
    fn a_new_lease_is_creating_with_its_journal_and_names() {
        let d = Declared::default();
        let s = vec!["app".to_owned()];
        let f = facts(&d, &s, RedisPlan::AsConfigured);
        let fx = Effects {
            path: &path,
            names: &names,
            is_free: &free,
        };
        let mut state = State::default();
        let l = lease_in(&mut state, &f, "feat/x", &fx).expect("plan");
        assert_eq!(l.state, LeaseState::Creating);
        assert_eq!(l.slug.as_str(), "feat-x");
        assert!(l.journal.worktree && l.journal.branch);
        assert_eq!(
            l.resources.database.as_ref().map(DbName::as_str),
            Some("r_feat_x")
        );
        assert_eq!(l.path, PathBuf::from("/r.feat-x"));
        // The same branch again: refused while it is being set up by a live pwt.
        let again = lease_in(&mut state, &f, "feat/x", &fx);
        assert!(again.is_err());
    }

    #[test]
    fn overlapping_redis_prefixes_are_refused() {
        let d = Declared::default();
        let s = vec!["app".to_owned()];
        let f = facts(&d, &s, RedisPlan::AsConfigured);
        let bare = |slug: &str, _: &BTreeMap<String, u16>| -> Result<Resources> {
            Ok(Resources {
                redis: Some(RedisSlot::Prefix(
                    RedisPrefix::parse(&format!("x-{slug}")).expect("p"),
                )),
                ..Resources::default()
            })
        };
        let fx = Effects {
            path: &path,
            names: &bare,
            is_free: &free,
        };
        let mut state = State::default();
        lease_in(&mut state, &f, "feat", &fx).expect("first");
        let e =
            lease_in(&mut state, &f, "feat-x", &fx).expect_err("x-feat is a prefix of x-feat-x");
        assert!(e.to_string().contains("overlaps"), "{e}");
        assert!(e.hint_text().is_some_and(|h| h.contains("{{ slug }}:")));
    }

    #[test]
    fn kept_data_comes_back_with_its_slug_and_is_journaled_as_kept() {
        let d = Declared::default();
        let s = vec!["app".to_owned()];
        let f = facts(&d, &s, RedisPlan::Db(16));
        let fx = Effects {
            path: &path,
            names: &db_names,
            is_free: &free,
        };
        let mut state = State::default();
        let l = lease_in(&mut state, &f, "k", &fx).expect("plan");
        assert_eq!(l.resources.redis, Some(RedisSlot::Db(1)));
        state.release(Path::new(REPO), "k", &l.resources);
        let again = lease_in(&mut state, &f, "k", &fx).expect("again");
        assert_eq!(again.resources, l.resources);
        assert_eq!(again.journal.kept, l.resources.kinds());
    }

    #[test]
    fn names_held_by_another_repository_are_disambiguated() {
        let d = Declared::default();
        let s = vec!["app".to_owned()];
        let f = facts(&d, &s, RedisPlan::AsConfigured);
        let fx = Effects {
            path: &path,
            names: &names,
            is_free: &free,
        };
        let mut state = State::default();
        let mine = lease_in(&mut state, &f, "x", &fx).expect("first");
        let other = LeaseFacts {
            repo: Path::new("/other/.git"),
            repo_key: "/other/.git",
            ..facts(&d, &s, RedisPlan::AsConfigured)
        };
        let theirs = lease_in(&mut state, &other, "x", &fx).expect("second");
        assert_ne!(mine.resources.database, theirs.resources.database);
        assert_ne!(mine.resources.vhost, theirs.resources.vhost);
        assert_ne!(mine.resources.redis, theirs.resources.redis);
    }

    proptest! {
        /// Any sequence of leases in two repositories: never the same port, database, vhost,
        /// prefix or DB index twice, and the same input always gives the same plan.
        #[test]
        fn never_the_same_thing_twice(branches in proptest::collection::vec("[a-z]{1,3}(/[A-Z_]{0,2})?", 1..30), db_mode in any::<bool>()) {
            let d = Declared::default();
            let s = vec!["web".to_owned(), "api".to_owned()];
            let plan_kind = if db_mode { RedisPlan::Db(8) } else { RedisPlan::AsConfigured };
            let fx = Effects { path: &path, names: if db_mode { &db_names } else { &names }, is_free: &free };
            let mut state = State::default();
            for (i, b) in branches.iter().enumerate() {
                let repo = if i % 2 == 0 { REPO } else { "/s/.git" };
                let f = LeaseFacts { repo: Path::new(repo), repo_key: repo, ..facts(&d, &s, plan_kind) };
                let Ok(b) = BranchName::parse(b) else { continue };
                let ask = LeaseAsk { branch: &b, new: true, creates_branch: false };
                let first = plan_lease(&state, &f, &ask, &fx);
                let second = plan_lease(&state, &f, &ask, &fx);
                prop_assert_eq!(first.is_ok(), second.is_ok());
                if let (Ok(a), Ok(b)) = (first, second) {
                    prop_assert_eq!(&a, &b);
                    state.leases.push(a.lease);
                }
            }
            let mut ports = HashSet::new();
            let mut seen: HashSet<String> = HashSet::new();
            for l in &state.leases {
                for p in l.ports.values() {
                    prop_assert!(ports.insert(*p), "port {} twice", p);
                    prop_assert!(*p != 3000);
                }
                for k in ResourceKind::ALL {
                    if let Some(what) = l.resources.describe(k) {
                        prop_assert!(seen.insert(what.clone()), "{} twice", what);
                    }
                }
            }
        }
    }

    fn gc_facts<'a>(
        worktrees: &'a [WorktreeEntry],
        declared: &'a Declared,
        found: &'a [(ResourceKind, Marked)],
    ) -> GcFacts<'a> {
        GcFacts {
            repo: Path::new(REPO),
            repo_key: REPO,
            worktrees,
            declared,
            found,
            all_repos: false,
            repo_exists: &|_| true,
            path_exists: &|p| p == Path::new("/r.live"),
            follows: &|_| true,
        }
    }

    fn ready(branch: &str) -> Lease {
        let d = Declared::default();
        let s = vec!["app".to_owned()];
        let f = facts(&d, &s, RedisPlan::AsConfigured);
        let fx = Effects {
            path: &path,
            names: &names,
            is_free: &free,
        };
        let mut state = State::default();
        let mut l = lease_in(&mut state, &f, branch, &fx).expect("lease");
        l.state = LeaseState::Ready;
        l.owner = None;
        l.journal = Journal::default();
        l
    }

    #[test]
    fn gc_without_a_registry_spares_what_listed_worktrees_declare() {
        let live = ready("live");
        let marker = owner_marker(REPO, "live");
        let found = vec![(
            ResourceKind::Database,
            Marked {
                name: "r_live".into(),
                marker: marker.clone(),
            },
        )];
        let worktrees = vec![WorktreeEntry {
            root: "/r.live".into(),
            branch: Some("live".into()),
            is_main: false,
            exists: true,
        }];
        // The registry is lost: no lease at all.
        let empty = State::default();
        let declared = Declared {
            databases: HashSet::from(["r_live".to_owned()]),
            ..Declared::default()
        };
        let plan = plan_gc(&empty, &gc_facts(&worktrees, &declared, &found));
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(plan.spared.len(), 1);
        // Env files turned off: the marker of the listed worktree's slug still protects it.
        let plan = plan_gc(&empty, &gc_facts(&worktrees, &Declared::default(), &found));
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        // Once git no longer lists the worktree, it is an orphan.
        let plan = plan_gc(&empty, &gc_facts(&[], &Declared::default(), &found));
        assert!(matches!(&plan.actions[..], [Action::Orphan(o)] if o.marker == marker));
        // With the lease, it is owned; the lease's worktree exists, so nothing to do.
        let mut state = State::default();
        state.leases.push(live);
        let plan = plan_gc(&state, &gc_facts(&worktrees, &Declared::default(), &found));
        assert!(plan.actions.is_empty() && plan.spared.is_empty());
    }

    #[test]
    fn gc_classifies_leases() {
        let mut state = State::default();
        let mut creating = ready("c");
        creating.state = LeaseState::Creating;
        creating.owner = Some(Owner {
            pid: u32::MAX / 2,
            start: None,
        });
        let mut moved = ready("m");
        moved.path = "/r.m-old".into();
        state.leases.extend([creating, moved, ready("gone")]);
        let worktrees = vec![WorktreeEntry {
            root: "/r.m-new".into(),
            branch: Some("m".into()),
            is_main: false,
            exists: true,
        }];
        let d = Declared::default();
        let plan = plan_gc(&state, &gc_facts(&worktrees, &d, &[]));
        assert!(matches!(&plan.actions[0], Action::Undo(l) if l.branch.as_str() == "c"));
        assert!(
            matches!(&plan.actions[1], Action::Moved(l, to) if l.branch.as_str() == "m" && to == Path::new("/r.m-new"))
        );
        assert!(matches!(&plan.actions[2], Action::Gone(l) if l.branch.as_str() == "gone"));
    }
}
