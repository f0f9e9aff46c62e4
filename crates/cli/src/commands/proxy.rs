//! `pwt proxy`

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use pwt_proxy::{LogLine, caddyfile, listen_port};

use crate::output::{Style, Terminal, note, printable};
use pwt::exit_code;

/// Run the local reverse proxy: `<slug>.localhost`, one OAuth callback for all worktrees
///
/// `http://<slug>.localhost:8080` reaches each worktree's `proxy.route` port, `/<slug>/…`
/// too, anything else the main worktree, and `/_pwt` lists them. It follows the registry
/// live: a `pwt new` or `pwt rm` takes effect within a second.
///
/// The one OAuth redirect URI to register with your identity provider is
/// `http://localhost:8080/auth/callback`. The proxy learns the `state` each worktree's app
/// sends to the provider (any state, as your OAuth library makes it) and sends the callback
/// back to where the login began (`http://<slug>.localhost:8080/auth/callback?…`, with that
/// origin's cookies); a state `<slug>~<random>` (from `pwt state` or OAUTH_STATE_PREFIX)
/// goes to `http://localhost:<port>`. form_post callbacks are routed by their body's state
/// (307 keeps the body). Unknown states get an error page, never a redirect. Only loopback
/// names are served (other Host headers get 421); it binds loopback only (IPv4 and IPv6).
///
///   pwt proxy                  # on proxy.listen (127.0.0.1:8080 and [::1]:8080)
///   pwt proxy --listen 127.0.0.1:9090
///   pwt proxy caddyfile > Caddyfile   # the same routes for Caddy
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment, args_conflicts_with_subcommands = true)]
pub struct ProxyArgs {
    /// Loopback address to listen on (default: proxy.listen). The same port is bound on the
    /// IPv6 loopback too.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// No access log.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(subcommand)]
    pub action: Option<ProxyAction>,
}

/// What else `pwt proxy` does.
#[derive(clap::Subcommand, Debug)]
pub enum ProxyAction {
    /// Trust the local certificate authority of `[proxy] https = true` where this
    /// machine's browsers and tools look: the NSS database Chromium and Chrome read
    /// (~/.pki/nssdb, made if missing), each Firefox profile's, and, as root, the system
    /// store (/usr/local/share/ca-certificates; otherwise the command to run is printed).
    /// macOS: `security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db
    /// <state dir>/ca/pwt-ca.pem`. The authority can vouch for localhost names only.
    Trust {
        /// Stop trusting it (the authority stays, for the next `trust`).
        #[arg(long)]
        uninstall: bool,
        /// Only these stores: nss, firefox, system (default: all).
        #[arg(long, value_delimiter = ',', value_parser = ["nss", "firefox", "system"])]
        stores: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::output::Format,
    },
    /// Print the equivalent Caddyfile (for people who keep Caddy).
    Caddyfile {
        /// The port Caddy listens on (default: proxy.listen's).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        port: Option<u16>,
    },
}

pub fn run(cwd: &Path, args: ProxyArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    match args.action {
        Some(ProxyAction::Caddyfile { port }) => {
            let port = port.map_or_else(|| listen_port(&project.config().proxy.listen), Ok)?;
            print!("{}", caddyfile(&project.routes(&project.state()?), port));
            return Ok(exit_code::OK);
        }
        Some(ProxyAction::Trust {
            uninstall,
            stores,
            format,
        }) => return trust(uninstall, &stores, format),
        None => {}
    }
    let bound = project.bind_proxy(args.listen.as_deref(), (!args.quiet).then(access_log))?;
    let port = bound.port;
    warn_if_not_configured(project.config(), port);
    // A peer that goes away mid-write is an error on that connection, never the end of the
    // proxy (`main` set SIGPIPE back to its default, for output piped into `head`).
    pwt::proc::on_broken_pipe(true);
    let scheme = project.config().proxy.scheme();
    note(&format!(
        "pwt proxy listening on {} — worktrees at {scheme}://<slug>.localhost:{port}, status page {scheme}://localhost:{port}/_pwt, OAuth redirect URI {scheme}://localhost:{port}{}{}",
        bound.urls.join(" and "),
        project.config().proxy.callback,
        if project.config().proxy.https {
            " (HTTP on the same port too; `pwt proxy trust` makes browsers trust its certificates)"
        } else {
            ""
        }
    ));
    // The port on stdout, for scripts that pass --listen 127.0.0.1:0.
    println!("{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(bound.serve(&project, shutdown(), &mut Terminal { quiet: true }));
    note("pwt proxy stopped");
    Ok(exit_code::OK)
}

/// `pwt proxy trust [--uninstall]`.
fn trust(uninstall: bool, stores: &[String], format: crate::output::Format) -> Result<i32> {
    let at = super::locations()?;
    let ca = pwt::https::local_ca(&at.state_dir)?;
    let home = at
        .home
        .context("HOME is not set: it says where the browsers' certificate stores are")?;
    let stores = pwt::https::trust(&ca, &home, uninstall, stores);
    if format == crate::output::Format::Json {
        crate::output::print_json(&stores)?;
    } else {
        let style = Style::stdout();
        println!(
            "authority: {} ({})",
            pwt_proxy::CA_NAME,
            ca.cert_file().display()
        );
        for s in &stores {
            let mark = if s.trusted {
                style.green("trusted")
            } else {
                style.yellow("not trusted")
            };
            println!("  {:<8} {mark:<12} {}", s.kind, printable(&s.location));
            if let Some(n) = &s.note {
                println!("           {}", printable(n));
            }
        }
    }
    Ok(exit_code::ok_if(
        stores
            .iter()
            .all(|s| s.kind == "system" || s.trusted != uninstall),
    ))
}

/// The worktrees' `PWT_URL` and `OAUTH_REDIRECT_URI` name `proxy.listen`'s port: say loudly
/// when this proxy listens elsewhere, and how to make them agree.
fn warn_if_not_configured(config: &pwt::Config, port: u16) {
    let configured = config.proxy_port();
    if configured == port {
        return;
    }
    crate::output::warn(&format!(
        "this proxy listens on port {port}, but the worktrees' PWT_URL and OAUTH_REDIRECT_URI name port {configured} (proxy.listen = {:?}): links pwt prints and the OAuth redirect URI your identity provider knows will not reach this proxy.\n  fix: run `pwt proxy` without --listen, or set `[proxy] listen = \"127.0.0.1:{port}\"` in pwt.toml and run `pwt up` in each worktree",
        config.proxy.listen
    ));
}

/// One line per request on stderr: never the query (it may hold an OAuth code).
fn access_log() -> Arc<dyn Fn(LogLine) + Send + Sync> {
    let style = Style::stderr();
    Arc::new(move |l: LogLine| {
        // A closed stderr loses the log, never the proxy.
        let _ = writeln!(
            std::io::stderr(),
            "{} {} {} {} {} {}",
            l.method,
            printable(&l.host),
            printable(&l.path),
            style.dim(&format!("→ {}", l.route)),
            l.status,
            style.dim(&format!("{:.1} ms", l.elapsed.as_secs_f64() * 1000.0))
        );
    })
}

/// Ctrl-C or SIGTERM (Ctrl-C alone where SIGTERM cannot be watched).
async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term.recv() => {} },
        Err(_) => drop(tokio::signal::ctrl_c().await),
    }
}
