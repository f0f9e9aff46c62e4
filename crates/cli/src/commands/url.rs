//! `pwt url`

use std::path::Path;

use anyhow::Result;
use pwt::Selector;

use pwt::exit_code;

/// Print one URL of a worktree, for scripts and agents
///
///   pwt url                      # the current worktree's route port: http://localhost:20012
///   pwt url feature-a backend    # a named port of another worktree
///   pwt url feature-a --proxy    # through the proxy: http://feature-a.localhost:8080
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct UrlArgs {
    /// Branch, slug or path (default: the current worktree). A lone service name means that
    /// port of the current worktree.
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Service (port name); default: `proxy.route`.
    pub port_name: Option<String>,
    /// Print the proxy URL (`http://<slug>.localhost:<port>`) instead.
    #[arg(long)]
    pub proxy: bool,
}

pub fn run(cwd: &Path, args: UrlArgs) -> Result<i32> {
    let session = super::open(cwd)?;
    let services = session.config().services();
    let (target, port_name) = match (args.target, args.port_name) {
        (Some(Selector::Name(t)), None)
            if services.contains_key(&t) && session.resolve(Some(&t.as_str().into())).is_err() =>
        {
            (None, Some(t))
        }
        (t, p) => (t, p),
    };
    let url = session.url(target.as_ref(), port_name.as_deref(), args.proxy)?;
    println!("{url}");
    Ok(exit_code::OK)
}
