//! `pwt gc`

use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::Result;
use pwt::ReconcileRequest;

use crate::output::{Format, Style, Terminal, print_json, printable};
use pwt::exit_code;

/// Clean up what was left behind: leases of deleted worktrees, interrupted runs, orphans.
///
/// In this repository: leases whose worktree was deleted outside pwt (their data goes too),
/// set-ups a stopped pwt left half-done (rolled back exactly), teardowns it did not finish
/// (finished), and databases, vhosts and Redis data carrying this repository's pwt marker
/// that no lease owns any more. Ownership comes from git's worktree list, the worktrees' env
/// files and the markers, not from the registry alone: data a worktree git lists declares is
/// never touched, whatever the registry says. Every removal is marker-checked and checked
/// again under the registry lock right before it happens.
///
/// Lists what it would do; --yes does it (on a terminal it asks instead). Data kept on
/// purpose by `pwt rm --keep-data` is listed but left alone unless --kept.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Only list; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do it without asking.
    #[arg(long, short)]
    pub yes: bool,
    /// Also remove data kept by `pwt rm --keep-data`.
    #[arg(long)]
    pub kept: bool,
    /// Also release the leases of repositories that no longer exist anywhere on this machine
    /// (their ports stay reserved otherwise). Their data is removed where this repository's
    /// services reach it, marker-checked.
    #[arg(long)]
    pub all_repos: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: GcArgs) -> Result<i32> {
    let json = args.format == Format::Json;
    let project = super::open_interruptible(cwd, false)?;
    let req = ReconcileRequest {
        kept: args.kept,
        all_repos: args.all_repos,
    };
    let found = project.reconcile_plan(&req)?;
    if !json {
        show_found(&found, &req);
    }
    let todo = found.plan.actions.iter().filter(|a| a.is_due(&req)).count();
    let go = todo > 0 && !args.dry_run && (args.yes || ask(todo, json));
    let mut reporter = Terminal { quiet: json };
    let done = match (go, args.dry_run) {
        (true, _) => project.reconcile_due(&found, &req, &mut reporter),
        (false, true) => pwt::Reconciled::default(),
        // Nothing asked for: the port claims of repositories that no longer exist go anyway.
        (false, false) => {
            project.reconcile_due(&pwt::Reconciliation::default(), &req, &mut reporter)
        }
    };
    let code = exit_code::ok_if(done.failed.is_empty());
    if json {
        let out = pwt::GcOut::new(
            &found.plan,
            &found.problems,
            &req,
            done.done,
            done.skipped,
            done.failed,
        );
        print_json(&out)?;
    } else {
        show(&done);
    }
    Ok(code)
}

fn show_found(found: &pwt::Reconciliation, req: &ReconcileRequest) {
    let style = Style::stdout();
    for p in &found.problems {
        println!("{} {}", style.yellow("!"), printable(p));
    }
    if found.plan.actions.is_empty() {
        println!("nothing to clean up");
    }
    for a in &found.plan.actions {
        let mark = if a.is_due(req) { "  " } else { "  (kept) " };
        println!("{mark}{}", printable(&a.describe()));
    }
    for s in &found.plan.spared {
        println!("  (spared) {}: {}", printable(&s.what), printable(&s.why));
    }
}

/// What gc did: ✓ done, - skipped, ✗ failed.
fn show(done: &pwt::Reconciled) {
    let style = Style::stdout();
    for d in &done.done {
        println!("{} {}", style.green("✓"), printable(d));
    }
    for (b, why) in &done.skipped {
        println!("{} {}: {}", style.dim("-"), printable(b), printable(why));
    }
    for (b, e) in &done.failed {
        println!("{} {}: {}", style.red("✗"), printable(b), printable(e));
    }
}

/// On a terminal, asks whether to go on; elsewhere says how to.
fn ask(todo: usize, json: bool) -> bool {
    if std::io::stdin().is_terminal() && !json {
        super::confirm(&format!("clean up {todo} item(s)?"))
    } else {
        if !json {
            println!("dry run: pass --yes to clean up");
        }
        false
    }
}
