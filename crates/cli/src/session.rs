//! What most commands share: the repository, its configuration, the registry, and the
//! operations on a worktree (environment, env files, git, hooks).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use pwt_alloc::{Fault, Lease, Registry, RegistryOptions, Repo, WorktreeEntry};
use pwt_core::config::EnvFileKind;
use pwt_core::{
    Config, Environment, TemplateContext, Templates, Worktree, WorktreeFacts, build_environment,
    hex_prefix, render_dotenv, render_mise, service_variables, stable_hash,
};

use crate::env_vars;
use crate::exit_codes::refused;
use crate::output;
use crate::settings::Settings;

/// The state directory: `$PWT_STATE_DIR`, else `$XDG_STATE_HOME/pwt`, else
/// `~/.local/state/pwt`.
pub fn state_dir() -> Result<PathBuf> {
    if let Some(d) = env_vars::get(env_vars::PWT_STATE_DIR) {
        return Ok(d.into());
    }
    if let Some(d) = env_vars::get(env_vars::XDG_STATE_HOME) {
        return Ok(Path::new(&d).join("pwt"));
    }
    let home = env_vars::get(env_vars::HOME).ok_or_else(|| {
        anyhow!("cannot find the state directory: set PWT_STATE_DIR, XDG_STATE_HOME or HOME")
    })?;
    Ok(Path::new(&home).join(".local/state/pwt"))
}

/// Pauses for the crash tests when `PWT_FAULT` is `<point>:<ms>` (see env_vars.rs).
pub fn pause_at(point: &str) {
    if let Some(spec) = env_vars::get(env_vars::PWT_FAULT)
        && let Some((what, ms)) = spec.split_once(':')
        && what == point
    {
        std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
    }
}

fn fault() -> Fault {
    let Some(spec) = env_vars::get(env_vars::PWT_FAULT) else {
        return Fault::None;
    };
    let (what, ms) = spec.split_once(':').unwrap_or((&spec, "0"));
    let d = Duration::from_millis(ms.parse().unwrap_or(0));
    match what {
        "hold-lock" => Fault::HoldLock(d),
        "before-rename" => Fault::BeforeRename(d),
        _ => Fault::None,
    }
}

/// The machine-wide registry.
pub fn registry() -> Result<Registry> {
    let dir = state_dir()?;
    Ok(Registry::open(
        &dir,
        RegistryOptions {
            fault: fault(),
            ..RegistryOptions::default()
        },
    )?)
}

/// A repository with its configuration, ready for commands.
pub struct Session {
    /// The repository.
    pub repo: Repo,
    /// Merged configuration.
    pub settings: Settings,
    /// Template engine.
    pub templates: Templates,
    /// Registry.
    pub registry: Registry,
    /// Where pwt was started.
    pub cwd: PathBuf,
}

/// What a command-line argument names.
pub enum Target {
    /// A leased worktree.
    Leased(Lease),
    /// The main worktree.
    Main(WorktreeEntry),
    /// A git worktree pwt does not manage (yet).
    Unmanaged(WorktreeEntry),
}

impl Session {
    /// Opens the repository containing `cwd` and loads its configuration.
    pub fn open(cwd: &Path) -> Result<Self> {
        let repo = Repo::discover(cwd).map_err(|e| {
            anyhow!(e).context(format!(
                "{} is not inside a git repository\n  hint: cd into a repository, or pass -C DIR",
                cwd.display()
            ))
        })?;
        let mut roots: Vec<&Path> = Vec::new();
        if let Some(r) = &repo.current_root {
            roots.push(r);
        }
        if let Some(r) = &repo.main_root {
            roots.push(r);
        }
        let settings = Settings::load(&roots)?;
        Ok(Self {
            repo,
            settings,
            templates: Templates::new(),
            registry: registry()?,
            cwd: cwd.to_owned(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.settings.config
    }

    /// `project`, defaulting to the repository name.
    pub fn project(&self) -> String {
        self.config()
            .project
            .clone()
            .unwrap_or_else(|| self.repo.name.clone())
    }

    /// Service names in block order.
    pub fn services(&self) -> Vec<String> {
        self.config().services().into_keys().collect()
    }

    /// Resolves a branch, slug or path (or, with `None`, the current worktree).
    pub fn resolve(&self, arg: Option<&str>) -> Result<Target> {
        let state = self.registry.read()?;
        let repo = &self.repo.common_dir;
        let worktrees = self.repo.worktrees()?;
        let root = match arg {
            None => self.repo.current_root.clone().ok_or_else(|| {
                anyhow!("not inside a worktree (this is a bare repository)\n  hint: name a branch")
            })?,
            Some(name) => {
                if let Some(l) = state.find(repo, name) {
                    return Ok(Target::Leased(l.clone()));
                }
                if let Some(l) = state.of_repo(repo).find(|l| l.slug.as_str() == name) {
                    return Ok(Target::Leased(l.clone()));
                }
                if let Some(w) = worktrees.iter().find(|w| w.branch.as_deref() == Some(name)) {
                    w.root.clone()
                } else {
                    let p = self.cwd.join(name);
                    match fs::canonicalize(&p) {
                        Ok(p) if p.is_dir() => p,
                        _ => bail!(
                            "no worktree for {name:?} in this repository (not a branch, slug or path of one)\n  hint: `pwt list` shows them; `pwt new {q}` makes one",
                            q = output::sh(name)
                        ),
                    }
                }
            }
        };
        // The worktree containing `root`.
        let entry = worktrees
            .iter()
            .filter(|w| root.starts_with(&w.root))
            .max_by_key(|w| w.root.as_os_str().len())
            .cloned()
            .ok_or_else(|| anyhow!("{} is not a worktree of this repository", root.display()))?;
        if let Some(l) = state.of_repo(repo).find(|l| l.path == entry.root) {
            return Ok(Target::Leased(l.clone()));
        }
        Ok(if entry.is_main {
            Target::Main(entry)
        } else {
            Target::Unmanaged(entry)
        })
    }

    /// Template variables for a worktree.
    pub fn context(
        &self,
        branch: &str,
        slug: &str,
        ports: &BTreeMap<String, u16>,
    ) -> TemplateContext {
        TemplateContext {
            branch: branch.to_owned(),
            slug: slug.to_owned(),
            repo: self.repo.name.clone(),
            project: self.project(),
            ports: ports.clone(),
            vars: Default::default(),
        }
    }

    /// The environment of a leased worktree.
    pub fn lease_env(&self, lease: &Lease) -> Result<Environment> {
        let facts = WorktreeFacts {
            ctx: self.context(&lease.branch, lease.slug.as_str(), &lease.ports),
            is_main: false,
        };
        let names = crate::services::lease_names(lease);
        let extra = self.service_vars(Worktree::Leased(&names, lease.redis_db))?;
        Ok(build_environment(
            self.config(),
            &facts,
            &extra,
            &self.templates,
        )?)
    }

    /// The main worktree's environment: the `main` ports and defaults.
    pub fn main_env(&self, entry: &WorktreeEntry) -> Result<Environment> {
        let ports = self
            .config()
            .services()
            .into_iter()
            .filter_map(|(name, svc)| svc.main.map(|p| (name, p)))
            .collect();
        let facts = WorktreeFacts {
            ctx: self.context(entry.branch.as_deref().unwrap_or("HEAD"), "main", &ports),
            is_main: true,
        };
        let extra = self.service_vars(Worktree::Main)?;
        Ok(build_environment(
            self.config(),
            &facts,
            &extra,
            &self.templates,
        )?)
    }

    /// `DATABASE_URL` and the other service variables.
    fn service_vars(&self, worktree: Worktree<'_>) -> Result<Vec<(String, String)>> {
        let mut env = Environment::default();
        service_variables(self.config(), &self.project(), worktree, &mut env)?;
        Ok(env
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    /// The environment of any target; `None` for an unmanaged worktree.
    pub fn target_env(&self, target: &Target) -> Result<Option<Environment>> {
        match target {
            Target::Leased(l) => self.lease_env(l).map(Some),
            Target::Main(e) => self.main_env(e).map(Some),
            Target::Unmanaged(_) => Ok(None),
        }
    }

    /// The env files that are turned on, each checked to stay inside the worktree.
    pub fn env_files(&self) -> Result<Vec<(EnvFileKind, String)>> {
        self.config()
            .files
            .enabled()
            .into_iter()
            .map(|(kind, name)| {
                let p = Path::new(name);
                let inside = p.components().all(|c| matches!(c, Component::Normal(_)));
                if !inside || name.is_empty() {
                    bail!("invalid value for `files`: {name:?} must be a relative path inside the worktree (no '..', no leading '/')");
                }
                Ok((kind, name.to_owned()))
            })
            .collect()
    }

    /// Adds the env files to the repository's `info/exclude` so worktrees stay clean. Shared
    /// by all worktrees, so the caller holds the registry lock.
    pub fn ensure_excluded(&self) -> Result<()> {
        let path = self.repo.common_dir.join("info").join("exclude");
        let current = fs::read_to_string(&path).unwrap_or_default();
        let missing: Vec<String> = self
            .env_files()?
            .into_iter()
            .map(|(_, n)| format!("/{n}"))
            .filter(|line| !current.lines().any(|l| l.trim() == line))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("# env files written by pwt\n");
        for line in missing {
            text.push_str(&line);
            text.push('\n');
        }
        write_atomic(&path, text.as_bytes())
    }

    /// Writes the env files of a worktree. Refuses (touching none) when a file exists with
    /// content pwt did not write last, unless `force`. Returns the new hashes.
    pub fn write_env_files(
        &self,
        root: &Path,
        slug: &str,
        env: &Environment,
        previous: &BTreeMap<String, String>,
        force: bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut planned = Vec::new();
        for (kind, name) in self.env_files()? {
            let text = match kind {
                EnvFileKind::Dotenv => {
                    let (text, skipped) = render_dotenv(env, slug);
                    for var in skipped {
                        output::warn(&format!(
                            "{var} left out of {name}: its value holds both ' and one of \" $ ` \\, which dotenv readers do not read alike (`pwt env` and `pwt run` still have it)"
                        ));
                    }
                    text
                }
                EnvFileKind::Mise => render_mise(env, slug),
            };
            let path = root.join(&name);
            if let Ok(existing) = fs::read(&path)
                && existing != text.as_bytes()
                && previous.get(&name) != Some(&content_hash(&existing))
                && !force
            {
                return Err(refused(format!(
                    "{} exists and was not written by pwt, or was edited since; pwt will not overwrite it\n  hint: move your settings elsewhere (e.g. .env.local) and delete it, overwrite it with `pwt up --force`, or have pwt write another file (`files.dotenv` / `files.mise` in pwt.toml)",
                    path.display()
                )));
            }
            planned.push((name, path, text));
        }
        let mut hashes = BTreeMap::new();
        for (name, path, text) in planned {
            write_atomic(&path, text.as_bytes())?;
            hashes.insert(name, content_hash(text.as_bytes()));
        }
        Ok(hashes)
    }

    /// Removes the env files pwt wrote, if unchanged since. Returns the ones kept.
    pub fn remove_env_files(&self, root: &Path, hashes: &BTreeMap<String, String>) -> Vec<PathBuf> {
        let mut kept = Vec::new();
        for (name, hash) in hashes {
            let path = root.join(name);
            match fs::read(&path) {
                Ok(bytes) if &content_hash(&bytes) == hash => {
                    let _ = fs::remove_file(&path);
                }
                Ok(_) => kept.push(path),
                Err(_) => {}
            }
        }
        kept
    }

    /// The worktree path for a new worktree: `--path` relative to where pwt runs, or the
    /// `worktree.path` template relative to the main worktree.
    pub fn worktree_path(
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
                    &self.config().worktree.path,
                    &self.context(branch, slug, &BTreeMap::new()),
                )?;
                let base = self
                    .repo
                    .main_root
                    .clone()
                    // A bare repository has no main worktree: its directory plays that part,
                    // so `../{{ repo }}.{{ slug }}` lands beside it.
                    .unwrap_or_else(|| self.repo.common_dir.clone());
                base.join(rendered)
            }
        };
        let path = normalize(&path);
        if path.starts_with(&self.repo.common_dir) {
            bail!(
                "{} is inside the repository's git directory; choose another --path",
                path.display()
            );
        }
        if let Some(main) = &self.repo.main_root
            && &path == main
        {
            bail!(
                "{} is the main worktree; choose another --path",
                path.display()
            );
        }
        if path.exists()
            && fs::read_dir(&path)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            bail!(
                "{} already exists and is not empty\n  hint: choose another --path, or adopt an existing worktree with `pwt up PATH`",
                path.display()
            );
        }
        Ok(path)
    }
}

/// `a/b/../c` → `a/c`, without touching the file system (the path may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    // Resolve symlinks in the part that exists, so paths compare equal to git's.
    let mut existing = out.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_owned();
            }
            _ => return out,
        }
    }
    let mut real = fs::canonicalize(&existing).unwrap_or(existing);
    for name in rest.into_iter().rev() {
        real.push(name);
    }
    real
}

/// Hash recorded for env files: stable across versions.
pub fn content_hash(bytes: &[u8]) -> String {
    hex_prefix(stable_hash(bytes), 16)
}

/// Temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pwt-tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// A stdout for child processes: ours, or stderr when stdout carries JSON.
pub fn child_stdout(json: bool) -> Stdio {
    if json {
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    } else {
        Stdio::inherit()
    }
}

impl Session {
    /// Runs a git command that adds, removes or prunes worktrees, holding the repository's
    /// worktree lock (see [`pwt_alloc::Registry::repo_lock`]).
    pub fn git_worktree(&self, dir: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
        git_worktree(&self.registry, &self.repo.key(), dir, args)
    }
}

/// [`Session::git_worktree`] without the session, for a thread of its own.
pub fn git_worktree(
    registry: &Registry,
    repo_key: &str,
    dir: &Path,
    args: &[&std::ffi::OsStr],
) -> Result<()> {
    let _guard = registry.repo_lock(repo_key)?;
    git(dir, args)
}

/// Runs `git` with `args` in `dir`; git's own messages go to stderr. Fails with git's exit
/// status named.
pub fn git(dir: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(child_stdout(true))
        .status()
        .context("cannot run git: is it installed and on PATH?")?;
    if !status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        bail!("`git {}` failed ({status})", shown.join(" "));
    }
    Ok(())
}

/// Uncommitted or untracked changes of a worktree (`git status --porcelain`), ignoring
/// ignored files (pwt's env files among them).
pub fn changes(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "status",
            "--porcelain=v1",
            "--untracked-files=normal",
            "--ignore-submodules=none",
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run git status")?;
    if !out.status.success() {
        bail!(
            "`git status` failed in {}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Runs the hooks of `stage` in `root` with `env`, output streamed. Hook commands come from
/// the configuration (trusted, like a Makefile); the branch name only reaches them as the
/// value of an environment variable, never as shell text.
pub fn run_hooks(
    stage: &str,
    hooks: &[String],
    root: &Path,
    env: &Environment,
    json: bool,
) -> Result<()> {
    for cmd in hooks {
        output::note(&format!("running {stage} hook: {cmd}"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(root)
            .envs(env.iter())
            .stdin(Stdio::null())
            .stdout(child_stdout(json))
            .status()
            .with_context(|| format!("cannot start the {stage} hook `{cmd}`"))?;
        if !status.success() {
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| status.to_string());
            bail!(
                "{stage} hook `{cmd}` failed with {code} (in {})",
                root.display()
            );
        }
    }
    Ok(())
}

/// A path shown to people: relative to `cwd` when that is shorter, control characters removed.
pub fn display_path(p: &Path, cwd: &Path) -> String {
    let abs = p.display().to_string();
    let rel = pathdiff(p, cwd).map(|r| r.display().to_string());
    match rel {
        Some(r) if r.len() < abs.len() => output::printable(&r),
        _ => output::printable(&abs),
    }
}

fn pathdiff(path: &Path, base: &Path) -> Option<PathBuf> {
    let p: Vec<_> = path.components().collect();
    let b: Vec<_> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return None;
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}

/// True when something accepts connections on `port` at 127.0.0.1 or ::1.
pub fn listening(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    let t = Duration::from_millis(200);
    TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), t).is_ok()
        || TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), t).is_ok()
}
