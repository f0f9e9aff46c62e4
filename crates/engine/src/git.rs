//! Running git for what changes a repository: `git worktree add/remove/prune`, deleting a
//! branch, and `git status` before a removal. (Reading the repository is git2's, in
//! pwt-alloc.) git's worktree writes are serialized per repository by a lock of their own,
//! because git races with itself there.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::hooks::child_stdout;
use crate::project::{Cancel, ChildOutput, Project};

impl Project {
    /// The project's git part: what changes the repository's worktrees and branches.
    pub(crate) fn git(&self) -> Git {
        Git {
            registry: self.registry.clone(),
            repo_key: self.repo.key(),
            common_dir: self.repo.common_dir.clone(),
            dir: self.git_dir(),
            output: self.options.child_output,
            cancel: self.options.cancel.clone(),
        }
    }
}

/// The git part of a project: `git worktree add/remove/prune` under the repository's
/// worktree lock, deleting branches. Owns what it needs, so it runs on a thread of its own
/// (`git worktree add` beside the services' set-up).
pub(crate) struct Git {
    registry: pwt_alloc::Registry,
    repo_key: String,
    common_dir: PathBuf,
    dir: PathBuf,
    output: ChildOutput,
    cancel: Cancel,
}

impl Git {
    /// `git worktree add ARGS`, stoppable by the project's cancel flag.
    pub(crate) fn add(&self, args: &[OsString]) -> Result<()> {
        let _guard = self.registry.repo_lock(&self.repo_key)?;
        let a: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        git(&self.dir, &a, self.output, &self.cancel)
    }

    /// Runs a git command that adds, removes or prunes worktrees, holding the repository's
    /// worktree lock (see [`pwt_alloc::Registry::repo_lock`]).
    pub(crate) fn worktree(&self, args: &[&OsStr]) -> Result<()> {
        let _guard = self.registry.repo_lock(&self.repo_key)?;
        git(&self.dir, args, self.output, &Cancel::default())
    }

    /// Removes the worktree at `path` that a set-up of pwt was adding when it stopped:
    /// through git when git knows it (also when it is still locked as "initializing"), and
    /// git's record of it when its directory never came to be. Then the directory itself, if
    /// anything is left: the set-up found it absent or empty, so all in it is its own.
    pub(crate) fn remove_made_worktree(&self, path: &Path) -> Result<()> {
        // A `git worktree add` pwt started may have left its checkout child going on after
        // pwt and git itself were killed: it works inside the new worktree. Stop it first.
        let busy = crate::processes::working_in(path);
        crate::processes::stop(&busy, Duration::from_secs(2));
        let _guard = self.registry.repo_lock(&self.repo_key)?;
        let dir = self.dir.clone();
        let quiet = ChildOutput::Null;
        let none = Cancel::default();
        if path.exists() {
            let _ = git(
                &dir,
                &[
                    OsStr::new("worktree"),
                    OsStr::new("remove"),
                    OsStr::new("--force"),
                    OsStr::new("--force"),
                    path.as_os_str(),
                ],
                quiet,
                &none,
            );
        }
        for record in self.worktree_records_for(path) {
            std::fs::remove_dir_all(&record).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot remove git's record {}", record.display()),
                )
                .caused_by(e)
            })?;
        }
        remove_tree(path)?;
        let _ = git(
            &dir,
            &[OsStr::new("worktree"), OsStr::new("prune")],
            quiet,
            &none,
        );
        Ok(())
    }

    /// Finishes a `git worktree remove` that was killed half-way: its `.git` file is gone, so
    /// git no longer calls it a worktree, but files are left. The teardown that started it
    /// (checked clean, or forced) asked for all of it to go: the rest goes, and git's record.
    pub(crate) fn finish_worktree_removal(&self, path: &Path) -> Result<()> {
        let busy = crate::processes::working_in(path);
        crate::processes::stop(&busy, Duration::from_secs(2));
        let _guard = self.registry.repo_lock(&self.repo_key)?;
        remove_tree(path)?;
        git(
            &self.dir,
            &[OsStr::new("worktree"), OsStr::new("prune")],
            ChildOutput::Null,
            &Cancel::default(),
        )
    }

    /// git's records (`.git/worktrees/<id>`) that point at `path`, or that a killed
    /// `git worktree add` left before writing where they point (named after `path`).
    fn worktree_records_for(&self, path: &Path) -> Vec<PathBuf> {
        let base = self.common_dir.join("worktrees");
        let Ok(entries) = std::fs::read_dir(&base) else {
            return Vec::new();
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dot_git = path.join(".git");
        entries
            .flatten()
            .map(|e| e.path())
            .filter(
                |record| match std::fs::read_to_string(record.join("gitdir")) {
                    Ok(gitdir) => Path::new(gitdir.trim()) == dot_git,
                    Err(_) => record
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&name)),
                },
            )
            .collect()
    }

    /// Deletes `branch` (`git branch -d`, or `-D` with `force`).
    pub(crate) fn delete_branch(&self, branch: &str, force: bool) -> Result<()> {
        git(
            &self.dir,
            &[
                OsStr::new("branch"),
                OsStr::new("--quiet"),
                OsStr::new(if force { "-D" } else { "-d" }),
                OsStr::new("--"),
                OsStr::new(branch),
            ],
            ChildOutput::Null,
            &Cancel::default(),
        )
    }
}

/// Removes `path` and all in it, trying again a few times (a process stopped just now may
/// still have been closing files in it).
fn remove_tree(path: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries < 10 => {
                tries += 1;
                let busy = crate::processes::working_in(path);
                crate::processes::stop(&busy, Duration::from_millis(500));
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "cannot remove what is left of the worktree {}",
                        path.display()
                    ),
                )
                .caused_by(e));
            }
        }
    }
}

/// Runs `git` with `args` in `dir`. Its stdout goes to `output`; its stderr is kept for the
/// error, which names the command. When `cancel` is set while it runs, git gets SIGTERM
/// (it removes a half-made worktree itself then) and the result is a cancellation. git also
/// gets SIGTERM if pwt dies, so it never goes on writing a worktree nobody owns.
pub(crate) fn git(dir: &Path, args: &[&OsStr], output: ChildOutput, cancel: &Cancel) -> Result<()> {
    let shown = || {
        let a: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        format!("`git {}`", a.join(" "))
    };
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(child_stdout(output))
        .stderr(Stdio::piped());
    crate::hooks::die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        Error::new(ErrorKind::Git, "cannot run git")
            .caused_by(e)
            .hint("is it installed and on PATH?")
    })?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if cancel.is_cancelled() => {
                crate::hooks::terminate(&mut child);
                let _ = reader.join();
                return cancel.check();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(Error::new(ErrorKind::Git, format!("{} failed", shown())).caused_by(e));
            }
        }
    };
    let text = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = text.trim();
    let mut e = Error::new(ErrorKind::Git, format!("{} failed ({status})", shown()));
    if !said.is_empty() {
        e = e.caused_by(Error::new(ErrorKind::Git, said.to_owned()));
    }
    Err(e)
}

/// The commit HEAD is at in the worktree at `root`.
pub(crate) fn head_of(root: &Path) -> Option<String> {
    let args = ["rev-parse", "--verify", "-q", "HEAD"].map(OsStr::new);
    let out = git_output(root, &args).ok()?;
    Some(String::from_utf8_lossy(&out).trim().to_owned())
}

/// `git --version`'s answer; `None` when git does not run.
pub(crate) fn version() -> Option<String> {
    let out = git_output(Path::new("/"), &[OsStr::new("--version")]).ok()?;
    Some(String::from_utf8_lossy(&out).trim().to_owned())
}

/// The stdout of `git ARGS` run in `root`; a failure names the command and git's words.
fn git_output(root: &Path, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
    let shown = args
        .iter()
        .take(2)
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("git")
        .current_dir(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::new(ErrorKind::Git, format!("cannot run git {shown}")).caused_by(e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Git,
            format!(
                "`git {shown}` failed in {}: {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(out.stdout)
}

/// Uncommitted or untracked changes of a worktree (`git status --porcelain`), ignoring
/// ignored files (pwt's env files among them).
pub(crate) fn changes(root: &Path) -> Result<Vec<String>> {
    let args = [
        "status",
        "--porcelain=v1",
        "--untracked-files=normal",
        "--ignore-submodules=none",
    ]
    .map(std::ffi::OsStr::new);
    Ok(String::from_utf8_lossy(&git_output(root, &args)?)
        .lines()
        .filter(|l| !is_pwt_temp(l))
        .map(str::to_owned)
        .collect())
}

/// An untracked temporary file of pwt's (`?? dir/.pwt-tmp-123-.env.worktree`), which a
/// stopped pwt may leave: nobody's change.
fn is_pwt_temp(status_line: &str) -> bool {
    status_line.strip_prefix("?? ").is_some_and(|p| {
        Path::new(p.trim_matches('"'))
            .file_name()
            .is_some_and(|n| pwt_alloc::temp_of(n).is_some())
    })
}

/// The untracked files of the worktree at `root` that `args` (patterns, as `git ls-files`
/// takes them) make ignored, an ignored directory as one entry ending in `/`, relative to
/// it. Names are git's bytes, whatever their encoding.
pub(crate) fn ignored_by(root: &Path, args: &[OsString]) -> Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt as _;
    let mut all: Vec<&OsStr> = ["ls-files", "-z", "--others", "--ignored", "--directory"]
        .map(OsStr::new)
        .to_vec();
    all.extend(args.iter().map(|a| a.as_os_str()));
    Ok(git_output(root, &all)?
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| OsStr::from_bytes(p).to_owned())
        .collect())
}

/// The ignored files of the worktree at `root`, by the repository's own ignore rules.
pub(crate) fn ignored(root: &Path) -> Result<Vec<OsString>> {
    ignored_by(root, &["--exclude-standard".into()])
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| name_matches(tail, &rest[i..]))
        }
    }
}

/// [`changes`] of a worktree whose removal was interrupted: files the killed
/// `git worktree remove` already deleted (` D`) are that removal's, not the user's.
pub(crate) fn changes_besides_removal(root: &Path) -> Result<Vec<String>> {
    Ok(changes(root)?
        .into_iter()
        .filter(|l| !l.starts_with(" D "))
        .collect())
}

/// The `git worktree add` command line: `-b BRANCH PATH [BASE]` for a new branch, or `PATH
/// BRANCH` to check out an existing one (local, or git's tracking checkout of a remote one).
pub(crate) fn add_args(
    branch: &str,
    path: &Path,
    base: Option<&str>,
    checkout_existing: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["worktree".into(), "add".into(), "--quiet".into()];
    if !checkout_existing {
        a.extend(["-b".into(), branch.into()]);
    }
    a.extend(["--".into(), path.as_os_str().to_owned()]);
    match (base, checkout_existing) {
        (_, true) => a.push(branch.into()),
        (Some(base), false) => a.push(base.into()),
        (None, false) => {}
    }
    a
}
