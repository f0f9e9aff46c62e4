//! `pwt rm`

use std::path::Path;

use anyhow::Result;
use pwt::{Removal, RemoveRequest};

use crate::output::{Format, Style, Terminal, print_json, printable};
use pwt::exit_code;

/// Tear a worktree down: hooks, data, worktree, lease; never losing uncommitted work.
///
/// In this order: pre-remove hooks; its database, vhost and Redis data (each only if it
/// carries this worktree's marker); the worktree itself; then the lease. Refuses (exit 3,
/// nothing touched) when the worktree has uncommitted or untracked changes, unless --force.
///
/// When a service cannot be reached, what can go goes and the lease stays `removing`,
/// listing the rest: run `pwt rm` again to finish. While another pwt is setting the
/// worktree up or removing it, it refuses as busy. Never removes the main worktree. Deletes
/// the branch only with --delete-branch, and an unmerged one only with --delete-branch
/// --force. With nothing left to remove, it says so and succeeds.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Branch, slug or path of the worktree (its root).
    #[arg(value_parser = super::selector())]
    pub target: pwt::Selector,
    /// Remove even with uncommitted or untracked changes (they are lost).
    #[arg(long, short)]
    pub force: bool,
    /// Keep the database, vhost and Redis data (like `docker compose down` without -v):
    /// `pwt new` of the same branch finds them again.
    #[arg(long)]
    pub keep_data: bool,
    /// Keep the worktree directory: release only what pwt set up (for hooks of tools that
    /// remove the worktree themselves, such as Worktrunk's pre-remove).
    #[arg(long)]
    pub keep_worktree: bool,
    /// Also delete the branch (`git branch -d`; with --force, `-D`).
    #[arg(long)]
    pub delete_branch: bool,
    /// Do not run the pre-remove hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Also delete the named volumes of the worktree's Compose containers (which `pwt rm`
    /// takes down first, as `docker compose down` would).
    #[arg(long)]
    pub volumes: bool,
    /// Run the repository's hooks without asking for their approval (automation, CI; see
    /// `pwt trust`).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: RmArgs) -> Result<i32> {
    let json = args.format == Format::Json;
    let project = super::open_interruptible(cwd, args.yes)?;
    let req = RemoveRequest {
        target: args.target.clone(),
        force: args.force,
        keep_data: args.keep_data,
        keep_worktree: args.keep_worktree,
        delete_branch: args.delete_branch,
        hooks: !args.no_hooks,
        volumes: args.volumes,
    };
    let removal = project.remove(&req, &mut Terminal { quiet: json })?;
    if json {
        print_json(&pwt::RemoveOut::of(&args.target.as_typed(), &removal))?;
        return Ok(exit_code::OK);
    }
    let done = match removal {
        Removal::Nothing(why) => {
            println!("nothing to do: {}", printable(&why));
            return Ok(exit_code::OK);
        }
        Removal::Removed(r) => r,
    };
    let style = Style::stdout();
    println!(
        "{} removed {} {}",
        style.green("✓"),
        style.bold(&printable(done.branch.as_str())),
        style.dim(&printable(&format!("({})", done.summary())))
    );
    if done.data_kept {
        println!(
            "  {}",
            style.dim(
                "data kept: `pwt new` of this branch finds it again; `pwt gc --kept --yes` drops it"
            )
        );
    }
    Ok(exit_code::OK)
}
