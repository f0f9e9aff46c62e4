//! Reading a git repository with git2: its identity, its worktrees and their branches.
//! Creating and removing worktrees is left to `git` itself (the CLI runs it), so hooks, LFS
//! and every other behaviour of `git worktree add` stay as users know them.

use std::path::{Path, PathBuf};

use std::os::unix::ffi::OsStrExt as _;

use crate::error::{AllocError, io};

/// A repository as pwt sees it.
pub struct Repo {
    git: git2::Repository,
    /// The git common dir, canonical: the repository's identity in the registry.
    pub common_dir: PathBuf,
    /// The main worktree's root; `None` for a bare repository.
    pub main_root: Option<PathBuf>,
    /// The root of the worktree pwt was started in, if any.
    pub current_root: Option<PathBuf>,
    /// The repository's directory name (`{{ repo }}` in templates).
    pub name: String,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("common_dir", &self.common_dir)
            .finish_non_exhaustive()
    }
}

/// One worktree of a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorktreeEntry {
    /// Root directory.
    pub root: PathBuf,
    /// Checked-out branch; `None` when detached.
    pub branch: Option<String>,
    /// The main worktree.
    pub is_main: bool,
    /// False when git still lists it but its directory is gone.
    pub exists: bool,
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned())
}

fn trim_slash(p: &Path) -> PathBuf {
    p.components().collect()
}

/// The branch a HEAD file points at.
fn head_branch(head_file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(head_file).ok()?;
    text.trim()
        .strip_prefix("ref: refs/heads/")
        .map(str::to_owned)
}

impl Repo {
    /// Finds the repository containing `dir`.
    pub fn discover(dir: &Path) -> Result<Self, AllocError> {
        let git_err = |source| AllocError::Git {
            path: dir.to_owned(),
            source,
        };
        let here = git2::Repository::discover(dir).map_err(git_err)?;
        let common_dir = canonical(here.commondir());
        let current_root = here.workdir().map(|p| canonical(&trim_slash(p)));
        let git = git2::Repository::open(&common_dir).map_err(git_err)?;
        let main_root = if git.is_bare() {
            None
        } else {
            git.workdir().map(|p| canonical(&trim_slash(p)))
        };
        let name = match &main_root {
            Some(root) => root.file_name(),
            None => common_dir.file_name(),
        }
        .map(|n| n.to_string_lossy().trim_end_matches(".git").to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "repo".to_owned());
        Ok(Self {
            git,
            common_dir,
            main_root,
            current_root,
            name,
        })
    }

    /// The registry key of the repository, as text (for hashing).
    pub fn key(&self) -> String {
        self.common_dir.to_string_lossy().into_owned()
    }

    /// Every worktree git knows of, the main one first.
    pub fn worktrees(&self) -> Result<Vec<WorktreeEntry>, AllocError> {
        let mut out = Vec::new();
        if let Some(root) = &self.main_root {
            out.push(WorktreeEntry {
                root: root.clone(),
                branch: head_branch(&self.common_dir.join("HEAD")),
                is_main: true,
                exists: root.exists(),
            });
        }
        // Git's own record of each linked worktree (`<common dir>/worktrees/<name>/gitdir`,
        // the path of its `.git` file), read as bytes: a path need not be UTF-8, and one
        // that is not must still be seen (libgit2's list leaves such names out).
        let admin = self.common_dir.join("worktrees");
        let mut names: Vec<_> = match std::fs::read_dir(&admin) {
            Ok(entries) => entries.flatten().map(|e| e.file_name()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("cannot read", &admin)(e)),
        };
        names.sort();
        for name in names {
            let Ok(gitdir) = std::fs::read(admin.join(&name).join("gitdir")) else {
                continue;
            };
            // Absolute, or (`worktree.useRelativePaths`) relative to the record's directory.
            let gitdir = admin
                .join(&name)
                .join(std::ffi::OsStr::from_bytes(gitdir.trim_ascii_end()));
            let root = trim_slash(gitdir.parent().unwrap_or(&gitdir));
            let exists = root.exists();
            out.push(WorktreeEntry {
                root: if exists { canonical(&root) } else { root },
                branch: head_branch(&admin.join(&name).join("HEAD")),
                is_main: false,
                exists,
            });
        }
        Ok(out)
    }

    /// True when the local branch exists.
    pub fn branch_exists(&self, branch: &str) -> bool {
        self.git
            .find_branch(branch, git2::BranchType::Local)
            .is_ok()
    }

    /// The remotes that have a branch called `branch` (`origin` for `origin/feature`).
    pub fn remotes_with_branch(&self, branch: &str) -> Vec<String> {
        let Ok(remotes) = self.git.remotes() else {
            return Vec::new();
        };
        remotes
            .iter()
            .flatten()
            .filter(|r| {
                self.git
                    .find_branch(&format!("{r}/{branch}"), git2::BranchType::Remote)
                    .is_ok()
            })
            .map(str::to_owned)
            .collect()
    }

    /// The branch checked out in the worktree at `root`, from git's own records.
    pub fn branch_at(&self, root: &Path) -> Option<String> {
        self.worktrees()
            .ok()?
            .into_iter()
            .find(|w| w.root == root)
            .and_then(|w| w.branch)
    }
}
