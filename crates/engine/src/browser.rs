//! A worktree in a browser with a profile of its own (`pwt open`): Chromium, Chrome or
//! Firefox started with a profile directory under the state directory that only this
//! worktree uses, so its cookies and storage never mix with another's, even for apps opened
//! at `localhost:<port>` (every port shares one cookie jar in a browser profile). Without
//! one of those browsers, the system's opener, whose cookies every worktree shares.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};
use crate::project::Project;

/// How a browser takes a profile directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrowserKind {
    /// `--user-data-dir=DIR` (Chromium, Chrome, Edge, Brave).
    Chromium,
    /// `-profile DIR -no-remote`.
    Firefox,
    /// The system's opener (`xdg-open`, `open`): no profile of its own.
    System,
}

/// The browser command that opens a worktree.
#[derive(Clone, Debug)]
pub struct BrowserLaunch {
    /// The program.
    pub program: PathBuf,
    /// How it takes the profile.
    pub kind: BrowserKind,
    /// Its arguments, the URL last.
    pub args: Vec<OsString>,
    /// The worktree's profile directory (unused by [`BrowserKind::System`]).
    pub profile: PathBuf,
    /// What it opens.
    pub url: String,
}

impl BrowserLaunch {
    /// The command as a shell line, each word quoted as needed.
    pub fn shell_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|w| crate::paths::shell_word(&w.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Starts it, detached (a process group of its own, no stdio), making the profile
    /// directory first.
    pub fn spawn(&self) -> Result<()> {
        if self.kind != BrowserKind::System {
            std::fs::create_dir_all(&self.profile).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot make the profile {}", self.profile.display()),
                )
                .caused_by(e)
            })?;
        }
        Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("cannot start {}", self.program.display()),
                )
                .caused_by(e)
            })?;
        Ok(())
    }
}

impl Project {
    /// The command that opens the worktree `target` names (the current one for `None`):
    /// its proxy URL, or `service`'s port, in `browser` (a name found on `search_path`, or
    /// a path), else the first of chromium, google-chrome and firefox found there, with
    /// the worktree's profile ([`Project::browser_profile`]).
    pub fn browser_launch(
        &self,
        target: Option<&crate::Selector>,
        service: Option<&str>,
        browser: Option<&str>,
        search_path: Option<&OsStr>,
    ) -> Result<BrowserLaunch> {
        let m = self.managed(target)?;
        let url = self.url(target, service, service.is_none())?;
        let profile = self.browser_profile(&m.slug);
        let (program, kind) = find_browser(browser, search_path);
        let mut args: Vec<OsString> = Vec::new();
        match kind {
            BrowserKind::Chromium => {
                let mut dir = OsString::from("--user-data-dir=");
                dir.push(&profile);
                args.extend([
                    dir,
                    "--no-first-run".into(),
                    "--no-default-browser-check".into(),
                ]);
            }
            BrowserKind::Firefox => {
                args.extend([
                    "-profile".into(),
                    profile.clone().into(),
                    "-no-remote".into(),
                ]);
            }
            BrowserKind::System => {}
        }
        args.push(url.clone().into());
        Ok(BrowserLaunch {
            program,
            kind,
            args,
            profile,
            url,
        })
    }
}

/// The browser to start and how it takes a profile: the one asked for, else the first
/// found on `search_path`, else the system's opener.
fn find_browser(asked: Option<&str>, search_path: Option<&OsStr>) -> (PathBuf, BrowserKind) {
    let kind_of = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.contains("firefox") {
            BrowserKind::Firefox
        } else {
            BrowserKind::Chromium
        }
    };
    if let Some(b) = asked {
        let path = on_path(b, search_path).unwrap_or_else(|| PathBuf::from(b));
        let kind = kind_of(&path);
        return (path, kind);
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
        "firefox",
    ] {
        if let Some(p) = on_path(name, search_path) {
            let kind = kind_of(&p);
            return (p, kind);
        }
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    (PathBuf::from(opener), BrowserKind::System)
}

/// `name` found on `search_path` (a path is itself).
fn on_path(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    search_path?
        .as_bytes()
        .split(|b| *b == b':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(OsStr::from_bytes(d)).join(name))
        .find(|p| p.is_file())
}
