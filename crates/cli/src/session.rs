//! What most commands share: the repository, its configuration and the registry
//! ([`Session`]), what a command-line argument names ([`Target`]), a worktree's environment
//! and where a new worktree goes. Env files, git and hooks have modules of their own.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use pwt_alloc::{Fault, Lease, Registry, RegistryOptions, Repo, WorktreeEntry};
use pwt_core::{
    Config, Environment, TemplateContext, Templates, Worktree, WorktreeFacts, build_environment,
    service_variables,
};

use crate::env_vars;
use crate::output;
use crate::paths::normalize;
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
