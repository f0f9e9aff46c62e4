//! `pwt`: parallel worktrees. The binary composes the pwt crates; it is the only place with
//! argument parsing, environment reads and printing.

// The doc comments of the argument structs are `--help` text, written for a terminal
// (`[::1]`, `<time>`, bare URLs), not Markdown for rustdoc.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

mod commands;
mod env_files;
mod env_vars;
mod exit_codes;
mod git;
mod hooks;
mod lease_ops;
mod output;
mod paths;
mod report;
mod services;
mod session;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Give every git worktree its own isolated runtime environment: ports, env files, a local
/// URL, and (with the service sections of pwt.toml) a database, a RabbitMQ vhost and Redis
/// isolation on shared infrastructure. Race-free, reversible, fast.
///
/// A one-minute tour:
///
///   pwt new feature-a                  # worktree + branch + ports + .env.worktree
///   pwt new feature-b -x claude -- "Add the bell"   # ... then run an agent in it
///   pwt list                           # every worktree, its ports, URLs, listening or not
///   pwt run feature-a -- npm run dev   # a command with that worktree's environment
///   pwt rm feature-a                   # teardown (refuses uncommitted changes)
///
/// Configuration: `pwt init` writes a commented pwt.toml; `pwt config` shows what is in
/// effect and where each value comes from.
///
/// Exit codes: 0 ok, 1 failure, 2 usage, 3 refused to avoid losing data (nothing touched).
#[derive(Parser, Debug)]
#[command(name = "pwt", version, max_term_width = 100, verbatim_doc_comment)]
pub struct Cli {
    /// Run as if pwt was started in DIR (like `git -C`).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    dir: Option<PathBuf>,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match commands::run(cli.dir, cli.command) {
        Ok(code) => code,
        Err(e) => report_error(&e),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Prints the error and its causes to stderr; returns the exit code it carries.
fn report_error(e: &anyhow::Error) -> i32 {
    let style = output::Style::stderr();
    eprintln!("{} {e}", style.red("error:"));
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    e.downcast_ref::<exit_codes::ExitError>()
        .map_or(exit_codes::FAILURE, |x| x.code)
}
