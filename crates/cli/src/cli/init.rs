//! `pwt init`

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use pwt::write_atomic;

use super::exit_codes;
use super::settings::{PROJECT_FILE, STARTER};

/// Write a commented starter pwt.toml at the root of the current worktree.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Overwrite an existing pwt.toml.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cwd: &Path, args: InitArgs) -> Result<i32> {
    let repo = pwt_alloc::Repo::discover(cwd)
        .map_err(|e| anyhow!(e).context("`pwt init` runs inside a git repository"))?;
    let root = repo
        .current_root
        .ok_or_else(|| anyhow!("this is a bare repository; run `pwt init` in a worktree"))?;
    let path = root.join(PROJECT_FILE);
    if path.exists() && !args.force {
        bail!(
            "{} already exists\n  hint: `pwt config` shows what it sets; --force replaces it",
            path.display()
        );
    }
    write_atomic(&path, STARTER.as_bytes())?;
    println!(
        "wrote {}: edit it, then commit it so every worktree shares it",
        path.display()
    );
    Ok(exit_codes::OK)
}
