//! `pwt doctor`

use std::path::Path;

use anyhow::Result;
use pwt::Level;

use crate::output::{Format, Style, print_json, printable};
use pwt::exit_code;

/// Diagnose configuration, registry, worktrees and services
///
/// Checks git, configuration, the registry, leases and worktrees, port conflicts, each
/// configured service (reachable, privileges, Redis DB count) and orphaned data. Exits 1
/// when something is broken.
///
/// With --rebuild, rebuilds this repository's leases from the env files pwt wrote in its
/// worktrees: for a registry that was lost, or that is corrupt (it is moved aside to
/// registry.json.corrupt-<time> first, never deleted). Run it in each repository.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Rebuild this repository's leases from its worktrees' env files.
    #[arg(long)]
    pub rebuild: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: DoctorArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let mut findings = Vec::new();
    if args.rebuild {
        findings.extend(project.rebuild()?);
    }
    findings.extend(project.diagnose());
    if args.format == Format::Json {
        print_json(&pwt::DoctorOut::of(&findings))?;
    } else {
        let style = Style::stdout();
        for f in &findings {
            let mark = match f.level {
                Level::Ok => style.green("✓"),
                Level::Warning => style.yellow("!"),
                Level::Error => style.red("✗"),
            };
            println!("{mark} {}", printable(&f.what));
            if let Some(h) = &f.hint {
                println!("    {}", style.dim(&format!("hint: {}", printable(h))));
            }
        }
    }
    Ok(exit_code::ok_if(
        findings.iter().all(|f| f.level != Level::Error),
    ))
}
