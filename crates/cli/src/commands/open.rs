//! `pwt open`

use std::path::Path;

use anyhow::Result;
use pwt::BrowserKind;

use crate::env_vars;
use crate::output::{note, warn};
use pwt::exit_code;

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
    /// Branch, slug or path (default: the current worktree). A lone service name that names
    /// no worktree means that port of the current worktree.
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Service (port name): open http://localhost:<its port> instead of the proxy URL.
    pub service: Option<String>,
    /// The browser to start (default: $PWT_BROWSER, else chromium, google-chrome, firefox).
    #[arg(long)]
    pub browser: Option<String>,
    /// Print the command instead of running it.
    #[arg(long)]
    pub print: bool,
}

pub fn run(cwd: &Path, args: OpenArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let path = std::env::var_os(env_vars::PATH);
    let (target, service) = super::target_or_port(&project, args.target, args.service);
    let launch = project.browser_launch(
        target.as_ref(),
        service.as_deref(),
        args.browser
            .or_else(|| env_vars::get(env_vars::PWT_BROWSER))
            .as_deref(),
        path.as_deref(),
    )?;
    if launch.kind == BrowserKind::System {
        warn(&format!(
            "no Chromium, Chrome or Firefox found: {} opens {} in your usual browser, whose cookies every worktree shares (set PWT_BROWSER)",
            launch.program.display(),
            launch.url
        ));
    }
    if args.print {
        println!("{}", launch.shell_line());
        return Ok(exit_code::OK);
    }
    launch.spawn()?;
    note(&format!(
        "opened {} ({})",
        launch.url,
        launch.profile.display()
    ));
    Ok(exit_code::OK)
}
