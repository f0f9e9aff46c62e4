//! `pwt init`

use std::path::Path;

use anyhow::Result;

use pwt::exit_code;

/// Write a commented starter pwt.toml at the root of the current worktree.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Overwrite an existing pwt.toml.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cwd: &Path, args: InitArgs) -> Result<i32> {
    let path = pwt::write_starter(cwd, args.force)?;
    println!(
        "wrote {}: edit it, then commit it so every worktree shares it",
        path.display()
    );
    Ok(exit_code::OK)
}
