//! A repository opened for the lifecycle: [`Project::open`] from explicit inputs (the
//! directory, the state directory, the configuration), what a name on a command line means
//! ([`Target`]), a worktree's environment, and where a new worktree goes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pwt_alloc::{Lease, Registry, RegistryOptions, Repo, State, WorktreeEntry};

pub use crate::faults::Faults;
use pwt_core::{
    Config, Environment, MAIN_SLUG, TemplateContext, Templates, Worktree, WorktreeFacts,
    build_environment, service_variables,
};

use crate::error::{Error, ErrorKind, Result};
use crate::paths::{normalize, shell_word};

/// How a program opens a project. Everything pwt needs from outside comes through here; the
/// library reads no environment variable.
#[derive(Clone)]
pub struct Options {
    /// The machine-wide state directory (the registry and its locks).
    pub state_dir: PathBuf,
    /// The merged, validated configuration of the repository.
    pub config: Config,
    /// Pauses at named moments, for crash tests. [`Faults::default`] has none.
    pub faults: Faults,
    /// Set by the caller (on Ctrl-C) to stop a set-up at its next step and roll it back,
    /// and `infra up`, `git worktree add` or `pwt dev`'s foreground run with it. Once set it
    /// stays set: every later set-up of this project is refused as cancelled. To stop one
    /// foreground run of processes and go on, give [`Project::supervise`] a flag of its own.
    pub cancel: Cancel,
    /// Where the stdout of hooks and git goes.
    pub child_output: ChildOutput,
    /// How long to wait for the registry lock.
    pub lock_timeout: Duration,
    /// The directory all users of the machine share (port claims, machine-wide locks);
    /// `None`: none, each registry on its own.
    pub machine_dir: Option<PathBuf>,
    /// Who holds leases in the team store (`user@host`).
    pub holder: String,
    /// Keep worktrees beside the main worktree (under its parent directory, in no hidden
    /// directory) whatever `worktree.path` says. [`Project::open`] turns it on by itself
    /// when `worktree.path` is the repository's pwt.toml's, so a committed file cannot check
    /// a branch out into `~/.config/git`, say.
    pub confine_worktrees: bool,
    /// What happens when the repository's pwt.toml would run something not approved on this
    /// machine. [`Project::open`] reads that file itself: whatever the configuration, a
    /// hook, process or `[env]` entry of it runs only when approved (`pwt trust`, or
    /// [`Approvals::Ask`](crate::Approvals::Ask) answered yes: both remembered under the
    /// state directory) or trusted ([`Approvals::Trust`](crate::Approvals::Trust), for this
    /// project only, remembered nowhere).
    pub approvals: crate::approvals::Approvals,
    /// The user's home directory: where [`Project::diagnose`] looks for the browsers'
    /// certificate stores when the proxy serves HTTPS. `None`: not looked at.
    pub home: Option<PathBuf>,
}

impl Options {
    /// Options for `config` as the caller built it: no faults, no cancellation, children's
    /// stdout on the caller's, a 30 s lock timeout, port claims shared by every user of the
    /// machine in [`DEFAULT_MACHINE_DIR`] (as the binary's), the holder `uid<N>@<host>`,
    /// approvals refused. Prefer [`Options::loaded`] with [`crate::LoadedConfig::load`]: the
    /// configuration as the binary layers it.
    pub fn new(state_dir: impl Into<PathBuf>, config: Config) -> Self {
        Self {
            state_dir: state_dir.into(),
            config,
            faults: Faults::default(),
            cancel: Cancel::default(),
            child_output: ChildOutput::Inherit,
            lock_timeout: Duration::from_secs(30),
            machine_dir: Some(PathBuf::from(DEFAULT_MACHINE_DIR)),
            holder: format!(
                "uid{}@{}",
                pwt_alloc::proc::uid(),
                pwt_alloc::proc::hostname()
            ),
            confine_worktrees: false,
            approvals: crate::approvals::Approvals::default(),
            home: None,
        }
    }

    /// Options as the `pwt` command makes them, to share its worktrees: `at`'s state
    /// directory (the registry), machine directory and holder ([`crate::Locations`]), with
    /// `loaded` as [`Options::loaded`] takes it.
    pub fn at(at: &crate::Locations, loaded: crate::config::LoadedConfig) -> Self {
        let mut o = Self::loaded(&at.state_dir, loaded);
        o.machine_dir = Some(at.machine_dir.clone());
        o.holder.clone_from(&at.holder);
        o.home.clone_from(&at.home);
        o
    }

    /// Options for a configuration loaded by the engine ([`crate::LoadedConfig::load`]):
    /// what the repository's pwt.toml would run needs approval ([`Options::approvals`],
    /// refused by default), and a `worktree.path` it sets stays beside the main worktree.
    /// The rest as [`Options::new`] has it: port claims, shared with every user of the
    /// machine, go to [`DEFAULT_MACHINE_DIR`] whatever the state directory.
    pub fn loaded(state_dir: impl Into<PathBuf>, loaded: crate::config::LoadedConfig) -> Self {
        let confine = loaded.set_by_project_file("worktree.path");
        let mut o = Self::new(state_dir, loaded.config);
        o.confine_worktrees = confine;
        o
    }
}

/// Where port claims shared by every user of the machine live unless
/// [`Options::machine_dir`] says otherwise.
pub const DEFAULT_MACHINE_DIR: &str = "/var/tmp/pwt";

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("state_dir", &self.state_dir)
            .field("child_output", &self.child_output)
            .field("lock_timeout", &self.lock_timeout)
            .field("machine_dir", &self.machine_dir)
            .field("holder", &self.holder)
            .field("confine_worktrees", &self.confine_worktrees)
            .field("approvals", &self.approvals)
            .finish_non_exhaustive()
    }
}

/// Where child processes (hooks, git) write their stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChildOutput {
    /// The caller's stdout.
    #[default]
    Inherit,
    /// The caller's stderr (when stdout carries JSON).
    Stderr,
    /// Nowhere.
    Null,
}

/// A flag the caller sets to interrupt a set-up (on Ctrl-C, say): it stops at its next step
/// and rolls back what it made, ending in [`ErrorKind::Cancelled`]. One-shot: it is never
/// cleared (clones share it).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// The flag itself, for a signal handler to set.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// Sets it.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// An error when set.
    pub(crate) fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::new(ErrorKind::Cancelled, "interrupted"))
        } else {
            Ok(())
        }
    }
}

/// What a branch, slug or path names.
#[derive(Clone, Debug)]
pub enum Target {
    /// A leased worktree.
    Leased(Box<Lease>),
    /// The main worktree.
    Main(WorktreeEntry),
    /// A git worktree pwt does not manage (yet).
    Unmanaged(WorktreeEntry),
}

/// Which worktree a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A branch, a slug, or a path, as a person types it (`feature/login`, `feature-login`,
    /// `../demo.feature-login`): tried in that order. Empty names nothing and is refused.
    Name(String),
    /// The worktree of a branch.
    Branch(pwt_core::BranchName),
    /// The worktree containing a directory (relative to the directory the project was
    /// opened in); any bytes a file name may hold.
    Path(PathBuf),
}

impl Default for Selector {
    fn default() -> Self {
        Self::Name(String::new())
    }
}

impl From<&str> for Selector {
    fn from(name: &str) -> Self {
        Self::Name(name.to_owned())
    }
}

/// A name when it is UTF-8, else a path (a command-line argument, say).
impl From<std::ffi::OsString> for Selector {
    fn from(arg: std::ffi::OsString) -> Self {
        match arg.into_string() {
            Ok(name) => Self::Name(name),
            Err(path) => Self::Path(path.into()),
        }
    }
}

impl From<String> for Selector {
    fn from(name: String) -> Self {
        Self::Name(name)
    }
}

impl From<pwt_core::BranchName> for Selector {
    fn from(branch: pwt_core::BranchName) -> Self {
        Self::Branch(branch)
    }
}

impl From<PathBuf> for Selector {
    fn from(path: PathBuf) -> Self {
        Self::Path(path)
    }
}

impl Selector {
    /// As typed: the name, the branch, or the path (lossily, when it is not UTF-8).
    pub fn as_typed(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Name(n) => n.as_str().into(),
            Self::Branch(b) => b.as_str().into(),
            Self::Path(p) => p.to_string_lossy(),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => write!(f, "{n:?}"),
            Self::Branch(b) => write!(f, "branch {:?}", b.as_str()),
            Self::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A worktree pwt manages: its target (a lease, or the main worktree), root and slug.
#[derive(Clone, Debug)]
pub struct Managed {
    /// The lease, or the main worktree.
    pub target: Target,
    /// Its root.
    pub root: PathBuf,
    /// Its slug (`main` for the main worktree).
    pub slug: String,
}

/// A repository with its configuration and the machine's registry.
///
/// One per thread: a `Project` is [`Send`], not [`Sync`] (git's handle is inside); open one
/// in each thread that needs it (opening costs well under a millisecond plus reading the
/// repository). Relative paths (`CreateRequest::path`) and `None` targets ("the worktree
/// pwt runs in") are relative to the directory given to [`Project::open`].
pub struct Project {
    pub(crate) repo: Repo,
    pub(crate) config: Config,
    pub(crate) templates: Templates,
    pub(crate) registry: Registry,
    pub(crate) cwd: PathBuf,
    pub(crate) options: Options,
    /// The repository's pwt.toml, found by the engine itself, and that file as parsed:
    /// what it would run needs approval.
    pub(crate) project_file: Option<PathBuf>,
    pub(crate) project_table: Option<serde_json::Value>,
}

impl std::fmt::Debug for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Project")
            .field("repo", &self.repo.common_dir)
            .field("dir", &self.cwd)
            .field("project_file", &self.project_file)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The worktree roots in which `pwt.toml` is looked for, the current one first, then the main
/// one: what a caller needs to load the configuration before [`Project::open`].
pub fn config_roots(dir: &Path) -> Result<Vec<PathBuf>> {
    let repo = discover(dir)?;
    Ok(repo
        .current_root
        .iter()
        .chain(repo.main_root.iter())
        .cloned()
        .collect())
}

fn discover(dir: &Path) -> Result<Repo> {
    Repo::discover(dir).map_err(|e| {
        Error::new(
            ErrorKind::NotFound,
            format!("{} is not inside a git repository", dir.display()),
        )
        .caused_by(e)
        .hint("cd into a repository, or pass -C DIR")
    })
}

impl Project {
    /// Opens the repository containing `dir`.
    pub fn open(dir: &Path, mut options: Options) -> Result<Self> {
        let repo = discover(dir)?;
        options
            .config
            .validate()
            .map_err(|e| Error::transparent(ErrorKind::Config, e))?;
        // The repository's own pwt.toml (the first of the roots the configuration is
        // loaded from), whatever configuration the caller passes: what it would run needs
        // approval, a worktree.path it sets is confined.
        let project_file = repo
            .current_root
            .iter()
            .chain(repo.main_root.iter())
            .map(|r| r.join(crate::config::PROJECT_FILE))
            .find(|p| p.is_file());
        let project_table = match &project_file {
            Some(p) => Some(crate::config::parse_table(p)?),
            None => None,
        };
        let committed_path = project_table
            .as_ref()
            .and_then(|t| t.pointer("/worktree/path"))
            .and_then(serde_json::Value::as_str);
        if committed_path == Some(options.config.worktree.path.as_str()) {
            options.confine_worktrees = true;
        }
        let registry = Registry::open(
            &options.state_dir,
            RegistryOptions {
                lock_timeout: options.lock_timeout,
                fault: options.faults.registry(),
            },
        )?;
        Ok(Self {
            repo,
            config: options.config.clone(),
            templates: Templates::new(),
            registry,
            cwd: dir.to_owned(),
            options,
            project_file,
            project_table,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Where git shows `lease`'s branch checked out, when its worktree moved there from the
    /// path the lease records (`git worktree move`, or two swapped): the recorded path is
    /// gone, or the worktree there names the lease's slug in its env files (they moved with
    /// it). Not while the worktree at the recorded path still names it: a branch renamed
    /// there, and another worktree made for the old name, is no move.
    pub(crate) fn moved_to<'a>(
        &self,
        lease: &Lease,
        worktrees: &'a [WorktreeEntry],
    ) -> Option<&'a Path> {
        let w = worktrees
            .iter()
            .find(|w| w.exists && w.branch.as_deref() == Some(lease.branch.as_str()))?;
        if w.root == lease.path {
            return None;
        }
        let slug = Some(lease.slug.as_str());
        let names = |root: &Path| self.slug_at(root).as_deref() == slug;
        if names(&lease.path) {
            return None;
        }
        // The recorded path gone and no other worktree git lists naming the slug (one that
        // does was moved and renamed: the lease is its).
        let carried = names(&w.root)
            || (!lease.path.exists()
                && !worktrees
                    .iter()
                    .any(|o| o.exists && o.root != w.root && names(&o.root)));
        carried.then_some(w.root.as_path())
    }

    /// `lease` where its worktree is: where git shows its branch (not yet recorded, when it
    /// moved: `pwt up` records it).
    pub(crate) fn located(&self, lease: &Lease, worktrees: &[WorktreeEntry]) -> Lease {
        let mut l = lease.clone();
        if let Some(root) = self.moved_to(lease, worktrees) {
            l.path = root.to_owned();
        }
        l
    }

    /// The slug the env files pwt wrote at `root` name (`PWT_SLUG`).
    pub(crate) fn slug_at(&self, root: &Path) -> Option<String> {
        self.env_files()
            .ok()?
            .iter()
            .filter_map(|(_, name)| std::fs::read_to_string(root.join(name)).ok())
            .filter(|t| {
                t.lines()
                    .next()
                    .is_some_and(|l| l.contains(pwt_core::FILE_MARK))
            })
            .find_map(|t| pwt_core::parse_assignments(&t).remove("PWT_SLUG"))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The repository's pwt.toml, when it has one: what it would run needs approval.
    pub fn project_file(&self) -> Option<&Path> {
        self.project_file.as_deref()
    }

    /// Changes what happens to what the repository's pwt.toml would run unapproved (a
    /// command's `--yes`, say).
    pub fn set_approvals(&mut self, approvals: crate::approvals::Approvals) {
        self.options.approvals = approvals;
    }

    /// What stops this project's long operations (the caller's Ctrl-C).
    pub fn cancel(&self) -> &Cancel {
        &self.options.cancel
    }

    /// The machine-wide registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry's identity: a hash of its state directory. New leases' markers and the
    /// env files' headers carry it, so two registries on one repository tell their things
    /// apart.
    pub(crate) fn registry_id(&self) -> String {
        let dir = std::fs::canonicalize(self.registry.dir())
            .unwrap_or_else(|_| self.registry.dir().to_owned());
        pwt_core::hex_prefix(pwt_core::stable_hash(dir.to_string_lossy().as_bytes()), 8)
    }

    /// The registry's content, read without the lock (writers replace it atomically).
    pub fn state(&self) -> Result<State> {
        Ok(self.registry.read()?)
    }

    /// `project`, defaulting to the repository name.
    pub fn project_name(&self) -> String {
        self.config
            .project
            .clone()
            .unwrap_or_else(|| self.repo.name.clone())
    }

    /// Port service names in block order.
    pub(crate) fn services(&self) -> Vec<String> {
        self.config.services().into_keys().collect()
    }

    /// Where git's worktree commands run: the main worktree, or a bare repository itself.
    pub(crate) fn git_dir(&self) -> PathBuf {
        self.repo
            .main_root
            .clone()
            .unwrap_or_else(|| self.repo.common_dir.clone())
    }

    /// What a branch, slug or path names (or, with `None`, the worktree pwt runs in).
    pub fn resolve(&self, which: Option<&Selector>) -> Result<Target> {
        match which {
            Some(selector) => self.select(selector),
            None => {
                let root = self.repo.current_root.clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Invalid,
                        "not inside a worktree (this is a bare repository)",
                    )
                    .hint("name a branch")
                })?;
                self.containing(&self.state()?, &root)
            }
        }
    }

    /// What a [`Selector`] names.
    pub fn select(&self, selector: &Selector) -> Result<Target> {
        let state = self.state()?;
        let repo = &self.repo.common_dir;
        let worktrees = self.repo.worktrees()?;
        let root = match selector {
            Selector::Name(name) if name.is_empty() => {
                return Err(
                    Error::new(ErrorKind::Invalid, "an empty name names no worktree")
                        .hint("name a branch, slug or path"),
                );
            }
            Selector::Name(name) => {
                let by_slug = || state.of_repo(repo).find(|l| l.slug.as_str() == name);
                if let Some(l) = state.find(repo, name).or_else(by_slug) {
                    return Ok(Target::Leased(Box::new(self.located(l, &worktrees))));
                }
                match worktrees.iter().find(|w| w.branch.as_deref() == Some(name)) {
                    Some(w) => w.root.clone(),
                    // A branch of that name means that branch, never a directory's worktree.
                    None if self.repo.branch_exists(name) => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("branch {name:?} has no worktree"),
                        )
                        .hint(format!("`pwt new {}` makes one", shell_word(name))));
                    }
                    None => self.existing_dir(Path::new(name), &worktrees)?,
                }
            }
            Selector::Branch(branch) => {
                if let Some(l) = state.find(repo, branch.as_str()) {
                    return Ok(Target::Leased(Box::new(self.located(l, &worktrees))));
                }
                match worktrees
                    .iter()
                    .find(|w| w.branch.as_deref() == Some(branch.as_str()))
                {
                    Some(w) => w.root.clone(),
                    None => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "no worktree of branch {:?} in this repository",
                                branch.as_str()
                            ),
                        )
                        .hint("`pwt list` shows them"));
                    }
                }
            }
            Selector::Path(path) => self.existing_dir(path, &worktrees)?,
        };
        self.containing(&state, &root)
    }

    /// The worktree containing `root`: its lease, or the main or an unmanaged worktree.
    fn containing(&self, state: &State, root: &Path) -> Result<Target> {
        let repo = &self.repo.common_dir;
        let worktrees = self.repo.worktrees()?;
        // The worktree containing `root`.
        let entry = worktrees
            .iter()
            .filter(|w| root.starts_with(&w.root))
            .max_by_key(|w| w.root.as_os_str().len())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{} is not a worktree of this repository", root.display()),
                )
            })?;
        // The lease of the branch git shows there; else the lease recorded there, unless git
        // shows that lease's branch elsewhere (then it moved, and this is another worktree).
        let of_branch = entry
            .branch
            .as_deref()
            .and_then(|b| state.find(repo, b))
            .filter(|l| l.path == entry.root || self.moved_to(l, &worktrees).is_some());
        let recorded = || {
            state
                .of_repo(repo)
                .find(|l| l.path == entry.root && self.moved_to(l, &worktrees).is_none())
        };
        if let Some(l) = of_branch.or_else(recorded) {
            let mut l = l.clone();
            l.path.clone_from(&entry.root);
            return Ok(Target::Leased(Box::new(l)));
        }
        Ok(if entry.is_main {
            Target::Main(entry)
        } else {
            Target::Unmanaged(entry)
        })
    }

    /// A worktree pwt manages (a lease, or the main worktree), by branch, slug or path (or,
    /// with `None`, the one pwt runs in); one it does not manage is an error saying how to
    /// set it up.
    pub fn managed(&self, arg: Option<&Selector>) -> Result<Managed> {
        match self.resolve(arg)? {
            Target::Leased(l) => Ok(Managed {
                root: l.path.clone(),
                slug: l.slug.to_string(),
                target: Target::Leased(l),
            }),
            Target::Main(w) => Ok(Managed {
                root: w.root.clone(),
                slug: MAIN_SLUG.to_owned(),
                target: Target::Main(w),
            }),
            Target::Unmanaged(w) => Err(Error::new(
                ErrorKind::NotFound,
                format!("the worktree at {} is not managed by pwt", w.root.display()),
            )
            .hint(crate::paths::up_hint(&w.root, "sets it up"))),
        }
    }

    /// The environment of a managed worktree, to hand out (to print, or to run a program
    /// with): an `[env]` of the repository's pwt.toml that needs approval is refused until
    /// approved.
    pub fn worktree_environment(&self, arg: Option<&Selector>) -> Result<(Managed, Environment)> {
        let m = self.managed(arg)?;
        let env = self
            .environment(&m.target)?
            .expect("a managed worktree has an environment");
        Ok((m, env))
    }

    /// The URL of a managed worktree's service (`proxy.route`'s by default), or its proxy
    /// URL (`PWT_URL`) with `proxy`.
    pub fn url(
        &self,
        arg: Option<&Selector>,
        service: Option<&str>,
        proxy: bool,
    ) -> Result<String> {
        let m = self.managed(arg)?;
        let env = match &m.target {
            Target::Leased(l) => self.lease_environment(l)?,
            Target::Main(w) => self.main_environment(w)?,
            Target::Unmanaged(_) => unreachable!("managed() returns managed worktrees"),
        };
        if proxy {
            return Ok(env.get("PWT_URL").unwrap_or_default().to_owned());
        }
        let services = self.config.services();
        let name = service.map_or_else(|| self.config.route_service(), str::to_owned);
        let Some(svc) = services.get(&name) else {
            let known: Vec<_> = services.keys().cloned().collect();
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("no service {name:?}; known: {}", known.join(", ")),
            ));
        };
        let port = match &m.target {
            Target::Leased(l) => l.ports.get(&name).copied(),
            _ => env.get(&svc.env).and_then(|p| p.parse().ok()),
        };
        let port = port.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "service {name:?} has no port here (the main worktree needs `main = PORT` in [ports.services.{name}])"
                ),
            )
        })?;
        Ok(format!("http://localhost:{port}"))
    }

    /// A fresh OAuth state for a managed worktree: `<slug>~<128 random bits in hex>`, which
    /// the proxy routes to it.
    pub fn oauth_state(&self, arg: Option<&Selector>) -> Result<String> {
        let m = self.managed(arg)?;
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            Error::new(ErrorKind::Io, format!("no randomness from the system: {e}"))
        })?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{}~{hex}", m.slug))
    }

    /// A bare name (one component: `docs`) names a directory only when it is a worktree's
    /// root, so a mistyped branch never means the worktree a directory of that name is in;
    /// `./docs` does.
    fn existing_dir(&self, name: &Path, worktrees: &[pwt_alloc::WorktreeEntry]) -> Result<PathBuf> {
        let mut parts = name.components();
        let bare = matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        );
        match std::fs::canonicalize(self.cwd.join(name)) {
            Ok(p) if p.is_dir() && (!bare || worktrees.iter().any(|w| w.root == p)) => Ok(p),
            _ => {
                let e = Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no worktree for {name:?} in this repository (not a branch, slug or path of one)"
                    ),
                );
                // `pwt new NAME` only for what could be a branch of that very name.
                Err(
                    match name.to_str().filter(|n| bare && !n.starts_with('-')) {
                        Some(n) if pwt_core::BranchName::parse(n).is_ok() => e.hint(format!(
                            "`pwt list` shows them; `pwt new {}` makes one",
                            shell_word(n)
                        )),
                        _ => e.hint("`pwt list` shows them"),
                    },
                )
            }
        }
    }

    /// Template variables for a worktree.
    pub(crate) fn context(
        &self,
        branch: &str,
        slug: &str,
        ports: &BTreeMap<String, u16>,
    ) -> TemplateContext {
        TemplateContext {
            branch: branch.to_owned(),
            slug: slug.to_owned(),
            repo: self.repo.name.clone(),
            project: self.project_name(),
            ports: ports.clone(),
            vars: Default::default(),
        }
    }

    /// The environment of a leased worktree.
    pub fn lease_environment(&self, lease: &Lease) -> Result<Environment> {
        let facts = WorktreeFacts {
            ctx: self.context(lease.branch.as_str(), lease.slug.as_str(), &lease.ports),
            is_main: false,
        };
        let mut extra = self.service_vars(Worktree::Leased(&lease.resources))?;
        extra.push((
            "PWT_BROWSER_PROFILE".into(),
            self.browser_profile(lease.slug.as_str())
                .to_string_lossy()
                .into_owned(),
        ));
        if let Some(name) = &lease.compose {
            extra.push(("COMPOSE_PROJECT_NAME".into(), name.clone()));
        }
        if self.config.docker.is_some() {
            // Containers carry it in their environment: how `pwt gc` knows a container of
            // a worktree that is gone for this worktree's.
            extra.push(("PWT_OWNER".into(), lease.marker()));
        }
        let mut env = build_environment(&self.config, &facts, &extra, &self.templates)?;
        // An `[env]` that says again what pwt sets (`COMPOSE_PROJECT_NAME = "{{ project }}-
        // {{ slug }}"`, as the seed workflow writes it) means pwt's name: the distinct one
        // this worktree was given, never one the engine knows as another checkout's.
        if let Some(name) = &lease.compose
            && env.get("COMPOSE_PROJECT_NAME")
                == Some(&format!("{}-{}", facts.ctx.project, lease.slug))
        {
            env.set("COMPOSE_PROJECT_NAME", name.clone())?;
        }
        Ok(env)
    }

    /// The browser profile of the worktree `slug` (`pwt open`, `PWT_BROWSER_PROFILE`): its
    /// own cookies and storage, whatever origin its apps are opened on. Removed with the
    /// worktree.
    pub fn browser_profile(&self, slug: &str) -> PathBuf {
        self.options
            .state_dir
            .join("browser")
            .join(format!(
                "{:016x}",
                pwt_core::stable_hash(self.repo.common_dir.as_os_str().as_encoded_bytes())
            ))
            .join(slug)
    }

    /// The main worktree's environment: the `main` ports and the defaults.
    pub fn main_environment(&self, entry: &WorktreeEntry) -> Result<Environment> {
        let facts = WorktreeFacts {
            ctx: self.context(
                entry.branch.as_deref().unwrap_or("HEAD"),
                MAIN_SLUG,
                &self.main_ports(),
            ),
            is_main: true,
        };
        let extra = self.service_vars(Worktree::Main)?;
        Ok(build_environment(
            &self.config,
            &facts,
            &extra,
            &self.templates,
        )?)
    }

    /// The main worktree's ports by service.
    pub(crate) fn main_ports(&self) -> BTreeMap<String, u16> {
        self.config
            .services()
            .into_iter()
            .filter_map(|(name, svc)| svc.main.map(|p| (name, p)))
            .collect()
    }

    pub(crate) fn service_vars(&self, worktree: Worktree<'_>) -> Result<Vec<(String, String)>> {
        let mut env = Environment::default();
        service_variables(&self.config, &self.project_name(), worktree, &mut env)?;
        Ok(env
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// The environment of a target, to hand out (to print, or to run a program with);
    /// `None` for a worktree pwt does not manage. An `[env]` of the repository's pwt.toml
    /// that needs approval is refused until approved.
    pub fn environment(&self, target: &Target) -> Result<Option<Environment>> {
        self.require_approval(crate::approvals::Gate {
            hooks: false,
            processes: false,
            env: true,
        })?;
        match target {
            Target::Leased(l) => self.lease_environment(l).map(Some),
            Target::Main(e) => self.main_environment(e).map(Some),
            Target::Unmanaged(_) => Ok(None),
        }
    }

    /// The path of a new worktree: `explicit` relative to where pwt runs, or the
    /// `worktree.path` template relative to the main worktree (the bare directory in a bare
    /// clone). Refused inside the git directory, on the main worktree, or where a non-empty
    /// directory stands.
    pub(crate) fn worktree_path(
        &self,
        explicit: Option<&Path>,
        branch: &str,
        slug: &str,
    ) -> Result<PathBuf> {
        let path = match explicit {
            Some(p) => self.cwd.join(p),
            None => {
                let rendered = self.templates.render(
                    "worktree.path",
                    &self.config.worktree.path,
                    &self.context(branch, slug, &BTreeMap::new()),
                )?;
                self.git_dir().join(rendered)
            }
        };
        let path = normalize(&path);
        let refuse = |why: String| Err(Error::new(ErrorKind::Invalid, why));
        if explicit.is_none() && self.options.confine_worktrees {
            let inside = self
                .repo
                .main_root
                .as_deref()
                .is_some_and(|main| confined(&path, main));
            if !inside {
                return Err(Error::new(
                    ErrorKind::Invalid,
                    format!(
                        "the repository's pwt.toml puts the worktree at {}, which is neither inside the main worktree nor a `<repo>.…` / `<repo>-…` directory beside it (or is in a hidden directory, or has characters a shell would read, like `$(`, quotes or spaces); pwt will not check a branch out there",
                        path.display()
                    ),
                )
                .hint("pass --path, or set worktree.path in your own config (~/.config/pwt/config.toml), which is not confined"));
            }
        }
        if let Some(outer) = self.worktree_around(&path) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "{} is inside the worktree {} ({}); a worktree inside another would be deleted with it",
                    path.display(),
                    outer.root.display(),
                    outer.what
                ),
            )
            .hint("choose a --path outside every worktree but the main one (the default, `worktree.path`, puts it beside the main worktree)"));
        }
        if path.starts_with(&self.repo.common_dir) {
            return refuse(format!(
                "{} is inside the repository's git directory; choose another --path",
                path.display()
            ));
        }
        if self.repo.main_root.as_ref() == Some(&path) {
            return refuse(format!(
                "{} is the main worktree; choose another --path",
                path.display()
            ));
        }
        let occupied = path.exists()
            && std::fs::read_dir(&path)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true);
        if occupied {
            return Err(Error::new(
                ErrorKind::Exists,
                format!("{} already exists and is not empty", path.display()),
            )
            .hint("choose another --path, or adopt an existing worktree with `pwt up PATH`"));
        }
        Ok(path)
    }
}

/// A worktree pwt knows of: its canonical root, its branch, and what it is for a message
/// (`branch "x"`, `branch "x" of the repository at /src/other`).
#[derive(Clone, Debug)]
pub(crate) struct KnownWorktree {
    pub root: PathBuf,
    pub branch: Option<String>,
    pub what: String,
}

impl Project {
    /// Every worktree this pwt knows of besides the main one: git's (of this repository)
    /// and the registry's leases (of any).
    fn known_worktrees(&self) -> Vec<KnownWorktree> {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| normalize(p));
        let mut out: Vec<KnownWorktree> = self
            .repo
            .worktrees()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| !w.is_main && w.exists)
            .map(|w| KnownWorktree {
                root: canonical(&w.root),
                what: match &w.branch {
                    Some(b) => format!("branch {b:?}"),
                    None => "detached HEAD".to_owned(),
                },
                branch: w.branch,
            })
            .collect();
        if let Ok(state) = self.state() {
            for l in state.leases.iter().filter(|l| l.path.exists()) {
                let root = canonical(&l.path);
                if out.iter().any(|k| k.root == root) {
                    continue;
                }
                let branch = l.branch.as_str();
                let what = match l.repo == self.repo.common_dir {
                    true => format!("branch {branch:?}"),
                    false => format!(
                        "branch {branch:?} of the repository at {}",
                        l.repo.display()
                    ),
                };
                out.push(KnownWorktree {
                    root,
                    branch: Some(branch.to_owned()),
                    what,
                });
            }
        }
        out
    }

    /// The worktree (not the main one) that `path` would be inside of, if any.
    pub(crate) fn worktree_around(&self, path: &Path) -> Option<KnownWorktree> {
        let path = normalize(path);
        self.known_worktrees()
            .into_iter()
            .filter(|k| path != k.root && path.starts_with(&k.root))
            .max_by_key(|k| k.root.as_os_str().len())
    }

    /// The worktrees and repositories inside `dir` (a worktree about to be deleted), each of
    /// which would go with it: the worktrees pwt knows (git's, the registry's), and any
    /// directory below `dir` with a `.git` of its own that is not this repository's (a
    /// clone, another repository's worktree; in ignored directories too, where git itself
    /// does not look). This repository's submodules are the worktree's own.
    pub(crate) fn worktrees_inside(&self, dir: &Path) -> Vec<KnownWorktree> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| normalize(dir));
        let mut out: Vec<KnownWorktree> = self
            .known_worktrees()
            .into_iter()
            .filter(|k| k.root != dir && k.root.starts_with(&dir))
            .collect();
        for (root, what) in foreign_git_below(&dir, &self.repo.common_dir) {
            if !out.iter().any(|k| k.root == root) {
                out.push(KnownWorktree {
                    root,
                    branch: None,
                    what: what.into(),
                });
            }
        }
        out
    }
}

/// Directories below `dir` holding a `.git` of their own that is not `common_dir`'s (its
/// submodules', whose `.git` files point into it): each with what it is. Links are not
/// followed, and nothing below such a directory is looked at.
fn foreign_git_below(dir: &Path, common_dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let common = std::fs::canonicalize(common_dir).unwrap_or_else(|_| common_dir.to_owned());
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if !t.is_dir() || e.file_name() == ".git" {
                continue;
            }
            let sub = e.path();
            let git = sub.join(".git");
            match std::fs::symlink_metadata(&git) {
                Ok(m) if m.is_dir() => out.push((sub, "a git repository of its own")),
                Ok(m) if m.is_file() => {
                    let target = std::fs::read_to_string(&git)
                        .ok()
                        .and_then(|t| t.trim().strip_prefix("gitdir:").map(|p| sub.join(p.trim())))
                        .map(|p| std::fs::canonicalize(&p).unwrap_or(p));
                    if !target.is_some_and(|t| t.starts_with(&common)) {
                        out.push((sub, "a worktree of another repository"));
                    }
                }
                _ => todo.push(sub),
            }
        }
    }
    out
}

/// Writes the commented starter pwt.toml at the root of the worktree containing `dir`
/// (`pwt init`); an existing one only with `force`. Returns its path.
pub fn write_starter(dir: &Path, force: bool) -> Result<PathBuf> {
    let roots = config_roots(dir)?;
    let root = roots.first().ok_or_else(|| {
        Error::new(
            ErrorKind::Invalid,
            "this is a bare repository; run `pwt init` in a worktree",
        )
    })?;
    let path = root.join(crate::config::PROJECT_FILE);
    if path.exists() && !force {
        return Err(Error::new(
            ErrorKind::Exists,
            format!("{} already exists", path.display()),
        )
        .hint("`pwt config` shows what it sets; --force replaces it"));
    }
    pwt_alloc::write_atomic(&path, crate::config::STARTER.as_bytes())?;
    Ok(path)
}

/// Where a committed `worktree.path` may put a worktree: inside the main worktree, or in a
/// directory beside it named after it (`../demo.feat`, `../demo-worktrees/feat`), never in a
/// hidden directory, so it cannot land in `~/.config/git` or `~/bin`.
fn confined(path: &Path, main: &Path) -> bool {
    let main = normalize(main);
    // Each part plain: not hidden, and nothing a shell would read as more than a word
    // when the path is pasted (`$(…)`, quotes, spaces).
    let visible = |rest: &Path| {
        rest.components().all(|c| {
            matches!(c, std::path::Component::Normal(n) if {
                let n = n.to_string_lossy();
                !n.starts_with('.')
                    && n.chars().all(|c| c.is_alphanumeric() || "._+,@=-".contains(c))
            })
        })
    };
    if let Ok(rest) = path.strip_prefix(&main) {
        return !rest.as_os_str().is_empty() && visible(rest);
    }
    let (Some(parent), Some(name)) = (main.parent(), main.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    path.strip_prefix(parent).is_ok_and(|rest| {
        let first = rest
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = [".", "-", "_"]
            .iter()
            .any(|sep| first.len() > name.len() + 1 && first.starts_with(&format!("{name}{sep}")));
        named && visible(rest)
    })
}
