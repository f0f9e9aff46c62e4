//! `pwt trust`: the commands a committed pwt.toml would run (its hooks and processes) run only once their
//! user has approved that exact text on this machine; changed commands are asked about again.

use std::path::Path;

use anyhow::Result;
use pwt::Gate;

use crate::output::display_path;
use pwt::exit_code;

/// Approve what this repository's pwt.toml runs: its hooks, processes and [env]
///
/// A pwt.toml comes with the repository: its `[hooks]` and `[processes]` are commands
/// someone else wrote, and its `[env]` is what they, and every shell direnv or mise loads
/// the env files into, run with. pwt runs them and writes that [env] only once you have
/// seen and approved that exact text for this repository on this machine (`pwt new` asks on
/// a terminal, and refuses elsewhere); when they change, it asks again. For automation and
/// CI, `--yes` on `pwt new` / `up` / `rm` / `dev`, or `PWT_TRUST_HOOKS=1`, goes ahead
/// without asking. Your own config file (~/.config/pwt/config.toml) needs no approval.
///
///   pwt trust            show them and approve them
///   pwt trust --show     only show them, and whether they are approved
///   pwt trust --revoke   withdraw the approval
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct TrustArgs {
    /// Only show the commands and whether they are approved.
    #[arg(long, conflicts_with = "revoke")]
    pub show: bool,
    /// Withdraw the approval of these commands.
    #[arg(long)]
    pub revoke: bool,
}

pub fn run(cwd: &Path, args: TrustArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let (Some(file), Some(c)) = (project.project_file(), project.pending_approval(Gate::ALL))
    else {
        println!(
            "this repository's pwt.toml has no hooks or processes, and no [env] beyond what pwt sets itself: nothing to approve"
        );
        return Ok(exit_code::OK);
    };
    let shown = display_path(file, cwd);
    let was = project.is_approved(&c);
    print!("{shown} runs:\n{}", c.shown);
    if args.show {
        println!(
            "{}",
            if was {
                "approved for this repository on this machine"
            } else {
                "not approved for this repository on this machine: `pwt trust` approves it"
            }
        );
    } else if args.revoke {
        project.set_approved(&c, false)?;
        println!("approval withdrawn: pwt asks again before running them");
    } else {
        project.set_approved(&c, true)?;
        println!(
            "approved: pwt runs these commands in this repository from now on, until they or their [env] change"
        );
    }
    Ok(exit_code::OK)
}
