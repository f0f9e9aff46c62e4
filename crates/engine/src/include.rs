//! The files a worktree needs that git does not bring along: gitignored files of the main
//! worktree matching `.worktreeinclude` (gitignore syntax, as Claude Code reads it) or
//! `files.copy` are copied into a new worktree, copy-on-write where the filesystem can;
//! those matching `files.link` are linked. Nothing is ever overwritten, and no link leading
//! out of the repository is followed.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::env_files::no_link_on_the_way;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Reporter, Step};
use crate::project::Project;

/// The file Claude Code, Worktrunk, gtr and ccmanager read for this.
pub const WORKTREE_INCLUDE: &str = ".worktreeinclude";

/// What a set-up brought from the main worktree (`files.copy`, `files.link`, `.worktreeinclude`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Brought {
    /// Copied (relative paths; a directory ends in `/`).
    pub copied: Vec<String>,
    /// Linked to the main worktree's.
    pub linked: Vec<String>,
    /// Left alone: the worktree has it already, or it is a link out of the repository.
    pub skipped: Vec<String>,
}

impl Project {
    /// Brings the gitignored files the configuration asks for from the main worktree into
    /// the new worktree at `to`.
    pub(crate) fn bring_files(&self, to: &Path, reporter: &mut dyn Reporter) -> Result<Brought> {
        let mut done = Brought::default();
        let Some(main) = self.repo.main_root.clone().filter(|m| m != to) else {
            return Ok(done);
        };
        let include = main.join(WORKTREE_INCLUDE);
        let include = include.is_file().then_some(include);
        let links = matching(&main, None, &self.config.files.link)?;
        let copies: Vec<OsString> = matching(&main, include.as_deref(), &self.config.files.copy)?
            .into_iter()
            .filter(|c| !links.iter().any(|l| within(c, l)))
            .collect();
        if !links.is_empty() {
            // A link is no directory: `node_modules/` in .gitignore does not cover it, so
            // git is told to leave the links alone.
            let _guard = self.registry.repo_lock(&self.repo.key())?;
            let names: Vec<String> = links
                .iter()
                .map(|l| trim(l).to_string_lossy().into_owned())
                .collect();
            self.exclude(
                &names,
                "links to the main worktree's, made by pwt (files.link)",
            )?;
        }
        // Nothing over what the worktree has, nor through a link the branch carries.
        let free = |entry: &OsStr, reporter: &mut dyn Reporter| {
            if !no_link_on_the_way(to, Path::new(trim(entry))) {
                reporter.report(Event::Warning(format!(
                    "{} not brought: the new worktree has a symbolic link on its way (the branch's), which could lead anywhere",
                    shown(entry)
                )));
                return false;
            }
            to.join(trim(entry)).symlink_metadata().is_err()
        };
        for entry in links {
            if !free(&entry, reporter) {
                done.skipped.push(shown(&entry));
                continue;
            }
            let (src, dst) = (main.join(trim(&entry)), to.join(trim(&entry)));
            make_parent(&dst)?;
            std::os::unix::fs::symlink(&src, &dst).map_err(|e| {
                Error::new(ErrorKind::Io, format!("cannot link {}", dst.display())).caused_by(e)
            })?;
            done.linked.push(shown(&entry));
        }
        for entry in copies {
            let (src, dst) = (main.join(trim(&entry)), to.join(trim(&entry)));
            // A copy a killed pwt left half-made goes first (it never reached its name).
            remove_temp_copies(&dst);
            if !free(&entry, reporter) {
                done.skipped.push(shown(&entry));
                continue;
            }
            if leads_out(&src, &main) {
                reporter.report(Event::Warning(format!(
                    "{} not copied: it is a link out of the repository",
                    shown(&entry)
                )));
                done.skipped.push(shown(&entry));
                continue;
            }
            reporter.report(Event::Step(Step::Copy {
                entry: shown(&entry),
            }));
            if !done.copied.is_empty() {
                self.options
                    .faults
                    .pause(crate::faults::FaultPoint::BetweenCopies);
            }
            make_parent(&dst)?;
            copy_tree(&src, &dst)?;
            done.copied.push(shown(&entry));
        }
        Ok(done)
    }
}

fn trim(entry: &OsStr) -> &OsStr {
    let b = entry.as_bytes();
    let end = b.iter().rposition(|c| *c != b'/').map_or(0, |i| i + 1);
    OsStr::from_bytes(&b[..end])
}

/// An entry as people read it (a name that is not UTF-8 shows replacement characters).
fn shown(entry: &OsStr) -> String {
    entry.to_string_lossy().into_owned()
}

/// Whether `entry` is `dir` or inside it (`dir` a directory entry ending in `/`).
fn within(entry: &OsStr, dir: &OsStr) -> bool {
    let (e, d) = (entry.as_bytes(), dir.as_bytes());
    e == d || (d.ends_with(b"/") && e.starts_with(d))
}

/// The gitignored entries of `main` that `file` (gitignore syntax) or `patterns` match, as
/// git itself reads those patterns; an ignored directory as one entry ending in `/`. Names
/// are bytes: a file whose name is not UTF-8 is brought like any other.
fn matching(main: &Path, file: Option<&Path>, patterns: &[String]) -> Result<Vec<OsString>> {
    if file.is_none() && patterns.is_empty() {
        return Ok(Vec::new());
    }
    let ignored = crate::git::ignored(main)?;
    let mut args: Vec<OsString> = Vec::new();
    if let Some(f) = file {
        let mut a = OsString::from("--exclude-from=");
        a.push(f);
        args.push(a);
    }
    for p in patterns {
        args.push(format!("--exclude={p}").into());
    }
    let wanted = crate::git::ignored_by(main, &args)?;
    // Only what git ignores: a wanted entry that is (inside) an ignored one, or the ignored
    // entries inside a wanted directory.
    let mut chosen: Vec<OsString> = Vec::new();
    for w in &wanted {
        if ignored.iter().any(|i| within(w, i)) {
            chosen.push(w.clone());
        } else if w.as_bytes().ends_with(b"/") {
            chosen.extend(
                ignored
                    .iter()
                    .filter(|i| i.as_bytes().starts_with(w.as_bytes()))
                    .cloned(),
            );
        }
    }
    chosen.sort();
    chosen.dedup();
    let outer = chosen.clone();
    chosen.retain(|c| !outer.iter().any(|o| o != c && within(c, o)));
    Ok(chosen)
}

/// Whether `path` is a link whose target lies outside `root`.
fn leads_out(path: &Path, root: &Path) -> bool {
    let is_link = path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return false;
    }
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    std::fs::canonicalize(path).map_or(true, |t| !t.starts_with(&root))
}

fn make_parent(dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::new(ErrorKind::Io, format!("cannot create {}", parent.display())).caused_by(e)
        })?;
    }
    Ok(())
}

/// Removes the copies of `dst` that pwts killed mid-copy left beside it.
fn remove_temp_copies(dst: &Path) {
    let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        if pwt_alloc::temp_of(&e.file_name()).is_some_and(|n| n == name) {
            let p = e.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

/// Copies `src` (a file, link or directory) to `dst` with `cp`: links as links, and
/// copy-on-write clones where the filesystem has them (btrfs, XFS, APFS), a plain copy
/// otherwise. The copy is made under a temporary name and renamed into place, so `dst` is
/// either whole or absent, whenever pwt is stopped.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    // Beside it, so the rename stays on one filesystem; named as pwt's, so a copy a killed
    // pwt left is known as such.
    let tmp = pwt_alloc::temp_path(dst);
    let clone_flag = if cfg!(target_os = "macos") {
        "-c"
    } else {
        "--reflink=auto"
    };
    let run = |flags: &[&str]| {
        Command::new("cp")
            .args(flags)
            .arg(src)
            .arg(&tmp)
            .stdin(Stdio::null())
            .output()
    };
    let remove_tmp = || {
        let _ = std::fs::remove_dir_all(&tmp).or_else(|_| std::fs::remove_file(&tmp));
    };
    let mut out = run(&["-R", "-P", "-p", clone_flag]);
    if cfg!(target_os = "macos") && out.as_ref().is_ok_and(|o| !o.status.success()) {
        // Not APFS: a plain copy.
        remove_tmp();
        out = run(&["-R", "-P", "-p"]);
    }
    let out = out.map_err(|e| Error::new(ErrorKind::Io, "cannot run cp").caused_by(e))?;
    if !out.status.success() {
        remove_tmp();
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "cannot copy {} into the new worktree: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    std::fs::rename(&tmp, dst).map_err(|e| {
        remove_tmp();
        Error::new(
            ErrorKind::Io,
            format!("cannot move the copy into {}", dst.display()),
        )
        .caused_by(e)
    })
}
