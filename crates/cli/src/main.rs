//! `pwt`: parallel worktrees. The binary is a thin shell over the `pwt` library: argument
//! parsing, configuration layers and environment reads, rendering, exit codes.

// The doc comments of the argument structs are `--help` text, written for a terminal
// (`[::1]`, `<time>`, bare URLs), not Markdown for rustdoc.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags,
    rustdoc::bare_urls
)]

mod commands;
mod env_vars;
mod output;
mod render;

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
///   pwt top                            # CPU and memory of each worktree, refreshed
///   pwt run feature-a -- npm run dev   # a command with that worktree's environment
///   pwt dev feature-a --detach         # its [processes], with that environment
///   pwt rm feature-a                   # teardown (refuses uncommitted changes)
///
/// Configuration: `pwt init` writes a commented pwt.toml; `pwt config` shows what is in
/// effect and where each value comes from.
///
/// Exit codes: 0 ok, 1 failure, 2 usage, 3 refused to avoid losing data (nothing touched),
/// 4 not approved (`pwt trust`), 5 busy (another pwt works on it), 130 interrupted (what the
/// run made was rolled back).
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
    // Output piped into `head`: end quietly when the reader goes, as other tools do, instead
    // of panicking on the broken pipe.
    pwt::proc::on_broken_pipe(false);
    let args = Cli::parse();
    let code = match commands::run(args.dir, args.command) {
        Ok(code) => code,
        Err(e) => commands::report_error(&e),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
