//! `pwt doctor`

use std::path::Path;

use anyhow::Result;
use pwt::{Finding, Level};

use crate::exit_codes;
use crate::output::{Format, Style, print_json, printable};

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
    let opened = super::open(cwd)?;
    let mut findings = Vec::new();
    if args.rebuild {
        findings.extend(opened.project.rebuild()?);
    }
    findings.push(Finding::ok(match &opened.settings.project_file {
        Some(p) => format!("configuration loads ({})", p.display()),
        None => "configuration loads (no pwt.toml: defaults, one port PORT)".to_owned(),
    }));
    findings.extend(opened.project.diagnose());
    if opened.project.config().proxy.https {
        findings.extend(https_findings());
    }
    if args.format == Format::Json {
        print_json(&serde_json::to_value(pwt::DoctorOut::of(&findings))?);
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
    Ok(if findings.iter().any(|f| f.level == Level::Error) {
        exit_codes::FAILURE
    } else {
        exit_codes::OK
    })
}

/// Whether the browsers here trust the proxy's authority (`[proxy] https = true`).
fn https_findings() -> Vec<Finding> {
    let (Ok(state), Some(home)) = (
        super::state_dir(),
        crate::env_vars::get(crate::env_vars::HOME),
    ) else {
        return Vec::new();
    };
    let ca = match pwt::https::local_ca(&state) {
        Ok(ca) => ca,
        Err(e) => {
            return vec![Finding::error(
                format!("HTTPS: the local certificate authority: {e}"),
                "fix what it says; `pwt proxy` cannot serve HTTPS without it",
            )];
        }
    };
    pwt::https::trusted_where(&ca, std::path::Path::new(&home))
        .into_iter()
        .map(|s| {
            let what = format!(
                "HTTPS: the proxy's authority in the {} store {}",
                s.kind, s.location
            );
            if s.trusted {
                Finding::ok(format!("{what} is trusted"))
            } else if s.kind == "system" {
                Finding::ok(format!(
                    "{what} is not trusted (curl and other tools need --cacert {})",
                    ca.cert_file().display()
                ))
            } else {
                Finding::warning(
                    format!("{what} is not trusted: that browser shows certificate errors"),
                    "`pwt proxy trust` trusts it there",
                )
            }
        })
        .collect()
}
