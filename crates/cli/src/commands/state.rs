//! `pwt state`

use std::path::Path;

use anyhow::Result;

use pwt::exit_code;

/// Print a fresh OAuth state for a worktree: `<slug>~<128 random bits in hex>`.
///
/// Send it as the `state` parameter when starting a login; the identity provider returns it
/// to the one registered redirect URI, and `pwt proxy` sends the browser to this worktree.
/// Check it on return, as OAuth requires. Apps can build the same from OAUTH_STATE_PREFIX.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Branch, slug or path (default: the current worktree).
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
}

pub fn run(cwd: &Path, args: StateArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    println!("{}", project.oauth_state(args.target.as_ref())?);
    Ok(exit_code::OK)
}
