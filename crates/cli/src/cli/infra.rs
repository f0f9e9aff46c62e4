//! `pwt infra`

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::exit_codes;
use super::output::{Format, Style, note, print_json, print_table};
use super::state_dir;

/// Start, stop or check the shared PostgreSQL, RabbitMQ and Redis
///
/// Once per machine, shared by every worktree of every repository.
///
///   pwt infra up               # docker compose -p pwt up -d --wait (healthchecks)
///   pwt infra status           # each configured service: reachable? Compose or native?
///   pwt infra down             # stop; data stays (--volumes deletes it)
///   pwt infra compose          # print the Compose file
///
/// `status` works without Docker too: services installed natively (apt, brew, systemd) are
/// checked the same way, and it says how to start what is missing.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfraArgs {
    #[command(subcommand)]
    pub action: InfraAction,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum InfraAction {
    /// Start the services with Docker Compose and wait until they are healthy.
    Up,
    /// Stop them; data is kept unless --volumes.
    Down {
        /// Also delete the data volumes.
        #[arg(long)]
        volumes: bool,
    },
    /// Check each configured service, wherever it runs.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print the Compose file.
    Compose,
}

fn compose(args: &[&str]) -> Result<()> {
    Ok(pwt::compose(&state_dir()?, args)?)
}

pub fn run(cwd: &Path, args: InfraArgs) -> Result<i32> {
    match args.action {
        InfraAction::Compose => {
            print!("{}", pwt::COMPOSE_FILE);
            Ok(exit_codes::OK)
        }
        InfraAction::Up => up(),
        InfraAction::Down { volumes } => {
            let mut a = vec!["down"];
            if volumes {
                a.push("--volumes");
            }
            compose(&a)?;
            println!(
                "stopped{}",
                if volumes {
                    "; data volumes deleted"
                } else {
                    "; data kept (--volumes deletes it)"
                }
            );
            Ok(exit_codes::OK)
        }
        InfraAction::Status { format } => status(cwd, format),
    }
}

fn up() -> Result<i32> {
    note("starting PostgreSQL, RabbitMQ and Redis (Compose project \"pwt\") ...");
    let v2 = pwt::compose_command().is_some_and(|c| c.len() == 2);
    if v2 {
        compose(&["up", "-d", "--wait"])?;
    } else {
        // Compose v1 has no --wait: poll the published ports instead.
        compose(&["up", "-d"])?;
        let deadline = Instant::now() + Duration::from_secs(180);
        while let Some(c) = pwt::service_checks(None).into_iter().find(|c| !c.up) {
            if Instant::now() > deadline {
                bail!(
                    "{} did not come up on {} within 3 minutes",
                    c.service,
                    c.url
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!(
        "{} shared services are up (`pwt infra status` shows them)",
        Style::stdout().green("✓")
    );
    Ok(exit_codes::OK)
}

fn status(cwd: &Path, format: Format) -> Result<i32> {
    let opened = super::open(cwd).ok();
    let in_compose = state_dir()
        .map(|d| pwt::compose_running(&d))
        .unwrap_or_default();
    let rows: Vec<_> = pwt::service_checks(opened.as_ref().map(|o| o.project.config()))
        .into_iter()
        .map(|c| {
            let up = c.up;
            let base = c.service.trim_end_matches("-management");
            let runs = if !up {
                "-"
            } else if in_compose.iter().any(|s| s == base) {
                "compose"
            } else {
                "native"
            };
            (c, up, runs)
        })
        .collect();
    let all_up = rows.iter().all(|(_, up, _)| *up);
    if format == Format::Json {
        let items: Vec<_> = rows
            .iter()
            .map(|(c, up, runs)| json!({ "service": c.service, "url": c.url, "reachable": up, "runs_in": runs, "hint": (!up).then_some(c.fix) }))
            .collect();
        print_json(&json!({ "services": items }));
    } else {
        let style = Style::stdout();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(c, up, runs)| {
                let state = if *up {
                    style.green("up")
                } else {
                    style.red("down")
                };
                let fix = if *up { "" } else { c.fix };
                vec![
                    c.service.to_owned(),
                    c.url.clone(),
                    state,
                    (*runs).to_owned(),
                    fix.to_owned(),
                ]
            })
            .collect();
        print_table(
            style,
            &["SERVICE", "URL", "STATE", "RUNS IN", "FIX"],
            &table,
        );
    }
    Ok(if all_up {
        exit_codes::OK
    } else {
        exit_codes::FAILURE
    })
}
