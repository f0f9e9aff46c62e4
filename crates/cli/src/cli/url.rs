//! `pwt url`

use std::path::Path;

use anyhow::{Result, bail};

use pwt::Target;

use super::exit_codes;

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
    pub target: Option<String>,
    /// Service (port name); default: `proxy.route`.
    pub port_name: Option<String>,
    /// Print the proxy URL (`http://<slug>.localhost:<port>`) instead.
    #[arg(long)]
    pub proxy: bool,
}

pub fn run(cwd: &Path, args: UrlArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    let session = &opened.project;
    let services = session.config().services();
    let (target, port_name) = match (args.target, args.port_name) {
        (Some(t), None) if services.contains_key(&t) && session.resolve(Some(&t)).is_err() => {
            (None, Some(t))
        }
        (t, p) => (t, p),
    };
    let t = session.resolve(target.as_deref())?;
    let env = session.environment(&t)?;
    let Some(env) = env else {
        bail!("this worktree is not managed by pwt\n  hint: `pwt up` sets it up");
    };
    if args.proxy {
        println!("{}", env.get("PWT_URL").unwrap_or_default());
        return Ok(exit_codes::OK);
    }
    let name = port_name.unwrap_or_else(|| session.config().route_service());
    let Some(svc) = services.get(&name) else {
        let known: Vec<_> = services.keys().cloned().collect();
        bail!("no service {name:?}; known: {}", known.join(", "));
    };
    let port = match &t {
        Target::Leased(l) => l.ports.get(&name).copied(),
        _ => env.get(&svc.env).and_then(|p| p.parse().ok()),
    };
    let Some(port) = port else {
        bail!(
            "service {name:?} has no port here (the main worktree needs `main = PORT` in [ports.services.{name}])"
        );
    };
    println!("http://localhost:{port}");
    Ok(exit_codes::OK)
}
