//! `pwt infra`

use std::path::Path;

use anyhow::Result;

use crate::output::{Format, Style, Terminal, print_json, print_table};
use pwt::exit_code;

/// Start, stop or check the shared PostgreSQL, RabbitMQ and Redis
///
/// Once per machine, shared by every worktree of every repository, in Docker Compose
/// (project `pwt`), each on 127.0.0.1 at the port of its URL in pwt.toml, so they run
/// beside services installed natively: give them other ports there.
///
///   pwt infra up               # start, and wait until each answers its own protocol
///   pwt infra status           # each service: answers? who runs it (Compose, Docker, native)?
///   pwt infra down             # stop; data stays (--volumes deletes it)
///   pwt infra compose          # print the Compose file
///
/// `up` refuses a port something else holds before it starts anything, naming the holder
/// and the setting; waits for each service to answer (SELECT 1, an AMQP round trip, PING),
/// not for a TCP connect; and takes down what it started when a service does not come up.
/// The services are on the network `pwt` (`infra.network`), which each worktree's app
/// project joins (`networks: default: { name: pwt, external: true }`). `status` works
/// without Docker too, and says how to start what is missing.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InfraArgs {
    #[command(subcommand)]
    pub action: InfraAction,
}

/// What to do.
#[derive(clap::Subcommand, Debug)]
pub enum InfraAction {
    /// Start the services with Docker Compose and wait until each answers.
    Up {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
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

pub fn run(cwd: &Path, args: InfraArgs) -> Result<i32> {
    // The services of the repository pwt runs in (its service sections), or the defaults.
    let project = super::open(cwd).ok();
    let infra = pwt::Infra::new(
        project.as_ref().map(pwt::Project::config),
        &super::locations()?.state_dir,
    );
    match args.action {
        InfraAction::Compose => {
            print!("{}", infra.compose_file());
            Ok(exit_code::OK)
        }
        InfraAction::Up { format } => {
            let json = format == Format::Json;
            let infra = infra.cancellable(super::interruptible());
            let rows = infra.up(&mut Terminal { quiet: json })?;
            if json {
                print_json(&pwt::InfraOut { services: rows })?;
            } else {
                println!(
                    "{} shared services are up on network {:?} (`pwt infra status` shows them)",
                    Style::stdout().green("✓"),
                    infra.network()
                );
            }
            Ok(exit_code::OK)
        }
        InfraAction::Down { volumes } => {
            infra.down(volumes)?;
            println!(
                "stopped{}",
                if volumes {
                    "; data volumes deleted"
                } else {
                    "; data kept (--volumes deletes it)"
                }
            );
            Ok(exit_code::OK)
        }
        InfraAction::Status { format } => status(&infra, format),
    }
}

fn status(infra: &pwt::Infra, format: Format) -> Result<i32> {
    let rows = infra.status();
    let all_up = rows.iter().all(|r| r.answers);
    if format == Format::Json {
        print_json(&pwt::InfraOut {
            services: rows.clone(),
        })?;
    } else {
        let style = Style::stdout();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let state = if r.answers {
                    style.green("up")
                } else {
                    style.red("down")
                };
                vec![
                    r.service.to_owned(),
                    r.url.clone(),
                    state,
                    r.runs_in.to_string(),
                    r.hint.unwrap_or_default().to_owned(),
                ]
            })
            .collect();
        print_table(
            style,
            &["SERVICE", "URL", "STATE", "RUNS IN", "FIX"],
            &table,
        );
    }
    Ok(exit_code::ok_if(all_up))
}
