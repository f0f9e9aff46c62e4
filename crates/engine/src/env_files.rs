//! The env files pwt writes into each worktree: rendered, written atomically, kept out of
//! `git status`, and never written over when someone else wrote or edited them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path, PathBuf};

use pwt_core::config::EnvFileKind;
use pwt_core::{Environment, hex_prefix, render_docker, render_dotenv, render_mise, stable_hash};

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Reporter};
use crate::project::Project;

impl Project {
    /// The env files that are turned on, each checked to stay inside the worktree.
    pub(crate) fn env_files(&self) -> Result<Vec<(EnvFileKind, String)>> {
        self.config
            .env_files()
            .into_iter()
            .map(|(kind, name)| {
                let p = Path::new(name);
                let inside = p.components().all(|c| matches!(c, Component::Normal(_)));
                let in_git = p.components().next().is_some_and(|c| c.as_os_str() == ".git");
                if !inside || name.is_empty() || in_git {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!("invalid value for `files`: {name:?} must be a relative path inside the worktree (no '..', no leading '/', not in .git)"),
                    ));
                }
                Ok((kind, name.to_owned()))
            })
            .collect()
    }

    /// Adds the env files to the repository's `info/exclude` so worktrees stay clean. Shared
    /// by all worktrees, so the caller holds the registry lock.
    pub(crate) fn ensure_excluded(&self) -> Result<()> {
        let names: Vec<String> = self.env_files()?.into_iter().map(|(_, n)| n).collect();
        let mut lines: Vec<String> = names.iter().map(|n| format!("/{n}")).collect();
        // What a pwt stopped mid-write leaves is never someone's change.
        lines.push(format!("{}*", pwt_alloc::TEMP_MARK));
        self.exclude_lines(&lines, "env files written by pwt")
    }

    /// Adds `/<name>` for each of `names` to the repository's `info/exclude`, under
    /// `comment`, where missing. The caller holds the registry lock or the repository's.
    pub(crate) fn exclude(&self, names: &[String], comment: &str) -> Result<()> {
        let lines: Vec<String> = names.iter().map(|n| format!("/{n}")).collect();
        self.exclude_lines(&lines, comment)
    }

    fn exclude_lines(&self, lines: &[String], comment: &str) -> Result<()> {
        let path = self.repo.common_dir.join("info").join("exclude");
        let current = fs::read_to_string(&path).unwrap_or_default();
        let missing: Vec<String> = lines
            .iter()
            .filter(|line| !current.lines().any(|l| l.trim() == line.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut text = current;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("# {comment}\n"));
        for line in missing {
            text.push_str(&line);
            text.push('\n');
        }
        Ok(pwt_alloc::write_atomic(&path, text.as_bytes())?)
    }

    /// Writes the env files of a worktree. Refuses (touching none) when a file exists with
    /// content pwt did not write last, unless `force`. Returns the new hashes.
    pub(crate) fn write_env_files(
        &self,
        root: &Path,
        slug: &str,
        env: &Environment,
        previous: &BTreeMap<String, String>,
        force: bool,
        reporter: &mut dyn Reporter,
    ) -> Result<BTreeMap<String, String>> {
        let mut planned = Vec::new();
        for (_, name, text, skipped) in self.render_env_files(slug, env)? {
            for (var, why) in skipped {
                reporter.report(Event::Warning(format!(
                    "{var} left out of {name}: {why}, so no spelling reads back the same in every reader of such files (`pwt env` and `pwt run` still have it)"
                )));
            }
            let path = root.join(&name);
            if !no_link_on_the_way(root, Path::new(&name)) {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{} leads through a symbolic link (one the branch carries, say): pwt writes env files only inside the worktree",
                        path.display()
                    ),
                )
                .hint("remove the link, or have pwt write another file (`files.dotenv` / `files.mise` in pwt.toml)"));
            }
            if let Ok(existing) = fs::read(&path)
                && existing != text.as_bytes()
                && previous.get(&name) != Some(&content_hash(&existing))
                && !force
            {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{} exists and was not written by pwt, or was edited since; pwt will not overwrite it",
                        path.display()
                    ),
                )
                .hint("move your settings elsewhere (e.g. .env.local) and delete it, overwrite it with `pwt up --force`, or have pwt write another file (`files.dotenv` / `files.mise` in pwt.toml)"));
            }
            planned.push((name, path, text));
        }
        let mut hashes = BTreeMap::new();
        for (name, path, text) in planned {
            pwt_alloc::write_atomic(&path, text.as_bytes())?;
            hashes.insert(name, content_hash(text.as_bytes()));
        }
        Ok(hashes)
    }

    /// Each env file's kind, name, text and the variables it leaves out.
    pub(crate) fn render_env_files(
        &self,
        slug: &str,
        env: &Environment,
    ) -> Result<Vec<RenderedFile>> {
        let registry = self.registry_id();
        Ok(self
            .env_files()?
            .into_iter()
            .map(|(kind, name)| {
                let (text, skipped) = match kind {
                    EnvFileKind::Dotenv => render_dotenv(env, slug, &registry),
                    EnvFileKind::Mise => render_mise(env, slug, &registry),
                    EnvFileKind::Docker => render_docker(env, slug, &registry),
                };
                (kind, name, text, skipped)
            })
            .collect())
    }

    /// Removes the env files pwt wrote, if unchanged since. Returns the ones kept.
    pub(crate) fn remove_env_files(
        &self,
        root: &Path,
        hashes: &BTreeMap<String, String>,
    ) -> Vec<PathBuf> {
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
}

/// Whether `rel` under `root` passes no symbolic link: neither one of its directories nor
/// itself is a link (a path a branch made lead out of the worktree).
pub(crate) fn no_link_on_the_way(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_owned();
    for c in rel.components() {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

/// An env file as rendered: its kind, name, text, and the variables it leaves out (each with
/// why).
pub(crate) type RenderedFile = (EnvFileKind, String, String, Vec<(String, &'static str)>);

/// Hash recorded for env files: stable across versions.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex_prefix(stable_hash(bytes), 16)
}
