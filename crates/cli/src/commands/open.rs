//! `pwt open`

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};

use crate::env_vars;
use crate::exit_codes;
use crate::output::{note, warn};

/// Open a worktree in a browser with a profile of its own
///
/// Its URL through the proxy (or SERVICE's port), in Chromium, Chrome or Firefox with a
/// profile under pwt's state directory that only this worktree uses: its cookies and
/// storage never mix with another worktree's, even for apps opened at localhost:<port>
/// (every port shares one cookie jar in a browser profile). The profile goes with the
/// worktree (`pwt rm`). `PWT_BROWSER_PROFILE` in the worktree's environment names it, for
/// agents' browser tools (Playwright's persistent context, playwright-mcp --user-data-dir).
/// Without one of those browsers, the system's opener is used and cookies are shared.
///
///   pwt open                     # the current worktree, through the proxy
///   pwt open feature-a backend   # another worktree's backend port
///   PWT_BROWSER=firefox pwt open
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct OpenArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
    /// Service (port name): open http://localhost:<its port> instead of the proxy URL.
    pub service: Option<String>,
    /// The browser to start (default: $PWT_BROWSER, else chromium, google-chrome, firefox).
    #[arg(long)]
    pub browser: Option<String>,
    /// Print the command instead of running it.
    #[arg(long)]
    pub print: bool,
}

/// How a browser takes a profile directory.
enum Kind {
    Chromium,
    Firefox,
    System,
}

pub fn run(cwd: &Path, args: OpenArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    let project = &opened.project;
    let m = project.managed(args.target.as_deref())?;
    let url = project.url(
        args.target.as_deref(),
        args.service.as_deref(),
        args.service.is_none(),
    )?;
    let profile = project.browser_profile(&m.slug);
    let (program, kind) = browser(
        args.browser
            .or_else(|| env_vars::get(env_vars::PWT_BROWSER)),
    );
    let mut cmd = Command::new(&program);
    match kind {
        Kind::Chromium => {
            cmd.arg(format!("--user-data-dir={}", profile.display()))
                .arg("--no-first-run")
                .arg("--no-default-browser-check")
                .arg(&url);
        }
        Kind::Firefox => {
            cmd.arg("-profile")
                .arg(&profile)
                .arg("-no-remote")
                .arg(&url);
        }
        Kind::System => {
            warn(&format!(
                "no Chromium, Chrome or Firefox found: {} opens {url} in your usual browser, whose cookies every worktree shares (set PWT_BROWSER)",
                program.display()
            ));
            cmd.arg(&url);
        }
    }
    if args.print {
        let words: Vec<String> = std::iter::once(program.display().to_string())
            .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
            .map(|w| pwt::shell_word(&w))
            .collect();
        println!("{}", words.join(" "));
        return Ok(exit_codes::OK);
    }
    if !matches!(kind, Kind::System) {
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("cannot make the profile {}", profile.display()))?;
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    note(&format!("opened {url} ({})", profile.display()));
    Ok(exit_codes::OK)
}

/// The browser to start and how it takes a profile: the one asked for, else the first found.
fn browser(asked: Option<String>) -> (PathBuf, Kind) {
    let kind_of = |p: &Path| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if name.contains("firefox") {
            Kind::Firefox
        } else {
            Kind::Chromium
        }
    };
    if let Some(b) = asked {
        let path = on_path(&b).unwrap_or_else(|| PathBuf::from(&b));
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
        if let Some(p) = on_path(name) {
            let kind = kind_of(&p);
            return (p, kind);
        }
    }
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    (PathBuf::from(opener), Kind::System)
}

/// `name` found on PATH (a path is itself).
fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = env_vars::get(env_vars::PATH)?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
