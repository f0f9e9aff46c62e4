//! `pwt mcp`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use pwt_core::McpTools;

use pwt::exit_code;

/// Serve the worktree to an AI agent over MCP (Model Context Protocol, stdio)
///
/// An agent (Claude Code, Cursor, VS Code, Codex, Gemini CLI, …) starts it in its worktree
/// and can then ask what it has and why something does not answer: `status` (ports
/// listening or not, its database, vhost and Redis slot answering or why not, what runs
/// and uses what, log tails), `environment` (each variable and what it is), `worktrees`,
/// `team_holds` (with a [team] store), `oauth_state`. Nothing it answers is hidden from the
/// CLI: each tool says which command prints the same JSON.
///
/// Tools that change things are off unless turned on, by `[mcp] allow = [...]` in pwt.toml
/// or `--allow`: `processes` (start_processes, stop_processes), `up`, `reset-database`
/// (the worktree's database made again from the main one), `worktrees` (create_worktree,
/// remove_worktree; never the server's own worktree).
///
/// What the repository's pwt.toml would run (hooks, [processes]) must be approved already
/// (`pwt trust`), or trusted with --yes: the server cannot ask, its stdin is the protocol.
///
///   pwt mcp --print-config                 # the snippet that registers it
///   claude mcp add pwt -- pwt mcp          # Claude Code, in the worktree
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct McpArgs {
    /// Serve this worktree (branch, slug or path) instead of the one it starts in.
    #[arg(long, conflicts_with = "repository", value_parser = super::selector())]
    pub branch: Option<pwt::Selector>,
    /// Serve every worktree of the repository: calls name the worktree they ask about.
    #[arg(long)]
    pub repository: bool,
    /// Offer these groups of lifecycle tools too (processes, up, reset-database, worktrees).
    #[arg(long, value_delimiter = ',', value_parser = str::parse::<McpTools>)]
    pub allow: Vec<McpTools>,
    /// Run what the repository's pwt.toml would run without its approval.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print how to register this server with agent tools, and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub fn run(cwd: &Path, args: McpArgs) -> Result<i32> {
    if args.print_config {
        print_config(&args)?;
        return Ok(exit_code::OK);
    }
    // It cannot ask (stdin is the protocol): trusted with --yes or PWT_TRUST_HOOKS, else
    // refused unless approved.
    let trust = args.yes
        || crate::env_vars::get(crate::env_vars::PWT_TRUST_HOOKS).is_some_and(|v| v != "0");
    let dir = cwd.to_owned();
    // SIGTERM or Ctrl-C: a set-up under way rolls back, then the server ends.
    let cancel = super::interruptible();
    let stop = cancel.flag();
    let open: pwt_mcp::Opener = Arc::new(move || {
        let mut project = super::open_with(&dir, cancel.clone()).map_err(|e| {
            match e.downcast::<pwt::Error>() {
                Ok(e) => e,
                Err(e) => pwt::Error::new(pwt::ErrorKind::Config, format!("{e:#}")),
            }
        })?;
        project.set_approvals(pwt_mcp::approvals(trust));
        Ok(project)
    });
    let project = open()?;
    let scope = if args.repository {
        pwt_mcp::Scope::Repository
    } else {
        pwt_mcp::Scope::Worktree(project.managed(args.branch.as_ref())?.root)
    };
    // Lifecycle tools the repository's pwt.toml turns on are that file's say, like its
    // hooks: offered only once approved (`pwt trust`) or trusted (--yes).
    let (allow, refused) = pwt_mcp::offered(&project, &args.allow);
    if let Some(why) = refused {
        crate::output::warn(&why);
    }
    let team = project.config().team.is_some();
    let home = project.managed(None).ok().map(|m| m.root);
    drop(project);
    let mut server = pwt_mcp::Server::new(open, scope, allow, team);
    if let Some(home) = home {
        server = server.with_home(home);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let served = rt.block_on(server.serve_stdio(stop));
    // Stdin's reader blocks in a thread of its own: do not wait for it.
    rt.shutdown_background();
    served.map_err(|e| anyhow::anyhow!("the MCP connection failed: {e}"))?;
    Ok(exit_code::OK)
}

/// Prints what registers this server with each client.
fn print_config(args: &McpArgs) -> Result<()> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pwt"));
    let exe = exe.to_string_lossy();
    print!(
        "{}",
        pwt_mcp::client_configs(&exe, args.repository, &args.allow)
    );
    Ok(())
}
