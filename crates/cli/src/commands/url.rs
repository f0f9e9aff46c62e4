//! `pwt url`

use std::path::Path;

use anyhow::Result;

use pwt::exit_code;

/// Print one URL of a worktree, for scripts and agents
///
///   pwt url                      # the current worktree's route port: http://localhost:20012
///   pwt url feature-a backend    # a named port of another worktree
///   pwt url feature-a --proxy    # through the proxy: http://feature-a.localhost:8080
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UrlArgs {
    /// Branch, slug or path (default: the current worktree). A lone service name that names
    /// no worktree means that port of the current worktree.
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Service (port name); default: `proxy.route`.
    pub port_name: Option<String>,
    /// Print the proxy URL (`http://<slug>.localhost:<port>`) instead.
    #[arg(long)]
    pub proxy: bool,
}

pub fn run(cwd: &Path, args: UrlArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let (target, port_name) = super::target_or_port(&project, args.target, args.port_name);
    let url = project.url(target.as_ref(), port_name.as_deref(), args.proxy)?;
    println!("{url}");
    Ok(exit_code::OK)
}
