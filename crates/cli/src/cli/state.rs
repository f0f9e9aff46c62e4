//! `pwt state`

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result};

use pwt::Target;
use pwt_core::MAIN_SLUG;

use super::exit_codes;

/// Print a fresh OAuth state for a worktree: `<slug>~<128 random bits in hex>`.
///
/// Send it as the `state` parameter when starting a login; the identity provider returns it
/// to the one registered redirect URI, and `pwt proxy` sends the browser to this worktree.
/// Check it on return, as OAuth requires. Apps can build the same from OAUTH_STATE_PREFIX.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
}

/// 16 bytes from the kernel's CSPRNG, as hex.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn run(cwd: &Path, args: StateArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    let session = &opened.project;
    let slug = match session.resolve(args.target.as_deref())? {
        Target::Leased(l) => l.slug.to_string(),
        Target::Main(_) => MAIN_SLUG.to_owned(),
        Target::Unmanaged(w) => anyhow::bail!(
            "the worktree at {} is not managed by pwt\n  hint: `pwt up` sets it up",
            w.root.display()
        ),
    };
    println!("{slug}~{}", random_hex()?);
    Ok(exit_codes::OK)
}
