//! `pwt list`

use std::path::Path;

use anyhow::Result;
use pwt::{WorktreeInfo, WorktreeState};
use serde_json::Value;

use crate::exit_codes;
use crate::output::{Format, Style, display_path, print_json, print_table, printable};
use crate::render::Show as _;

/// Show every worktree: ports (● listening, ○ not), URL, data and state.
///
/// The main worktree comes first, with its `main` ports. Worktrees that git knows but pwt
/// does not manage are listed as `unmanaged` (`pwt up PATH` adopts them); leases whose
/// directory is gone show as `missing` (`pwt gc` cleans them up).
#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// List the worktrees of every repository on this machine.
    #[arg(long)]
    pub all_repos: bool,
    /// Show who holds what on the shared servers (the `[team]` store): database names,
    /// vhosts, Redis prefixes and DB indexes, by holder, repository and branch.
    #[arg(long, conflicts_with = "all_repos")]
    pub team: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: ListArgs) -> Result<i32> {
    if args.team {
        return team(cwd, args.format);
    }
    let mut rows = if args.all_repos {
        all_repos()?
    } else {
        this_repo(cwd)?
    };
    pwt::measure_usage(&mut rows);
    if args.format == Format::Json {
        print_json(&Value::Array(rows.iter().map(|r| r.to_json()).collect()));
        return Ok(exit_codes::OK);
    }
    let (headers, table) = table(&rows, cwd, args.all_repos);
    if table.is_empty() {
        println!("no worktrees leased on this machine");
    } else {
        print_table(Style::stdout(), &headers, &table);
    }
    Ok(exit_codes::OK)
}

/// The table of `rows`: its headers and cells.
fn table(
    rows: &[WorktreeInfo],
    cwd: &Path,
    all_repos: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let style = Style::stdout();
    let with_data = rows.iter().any(|r| !r.data_cell().is_empty());
    let with_processes = rows
        .iter()
        .any(|r| !r.processes.is_empty() || !r.containers.is_empty());
    let with_usage = rows
        .iter()
        .any(|r| r.usage.as_ref().is_some_and(|u| u.processes > 0));
    let mut table = Vec::new();
    for r in rows {
        let state = match r.state {
            WorktreeState::Ready if r.hooks_pending => style.yellow("ready, hooks pending"),
            WorktreeState::Ready | WorktreeState::Main => style.green(r.state.as_str()),
            WorktreeState::Missing | WorktreeState::Removing | WorktreeState::Creating => {
                style.yellow(r.state.as_str())
            }
            _ => style.dim(r.state.as_str()),
        };
        let ports = r
            .ports
            .iter()
            .map(|p| {
                let mark = match p.listening {
                    Some(true) => style.green("●"),
                    Some(false) => style.dim("○"),
                    None => String::new(),
                };
                format!("{} {} {mark}", p.name, p.port)
            })
            .collect::<Vec<_>>()
            .join("  ");
        let mut row = vec![
            style.bold(&printable(&r.branch)),
            state,
            ports,
            r.url.clone().unwrap_or_default(),
        ];
        if with_data {
            row.push(r.data_cell());
        }
        if with_processes {
            row.push(processes_cell(style, &r.processes, &r.containers));
        }
        if with_usage {
            row.push(usage_cell(r.usage.as_ref(), None));
        }
        row.push(display_path(&r.path, cwd));
        if all_repos {
            row.push(display_path(&r.repo, cwd));
        }
        table.push(row);
    }
    let mut headers = vec!["BRANCH", "STATE", "PORTS", "URL"];
    if with_data {
        headers.push("DATA");
    }
    if with_processes {
        headers.push("PROCESSES");
    }
    if with_usage {
        headers.push("USES");
    }
    headers.push("PATH");
    if all_repos {
        headers.push("REPO");
    }
    (headers, table)
}

/// `3 procs  212 MiB  4.2 s CPU` (with a rate: `37% CPU`); empty for nothing.
pub(super) fn usage_cell(usage: Option<&pwt::usage::Usage>, cpu_percent: Option<f64>) -> String {
    let Some(u) = usage.filter(|u| u.processes > 0) else {
        return String::new();
    };
    let cpu = match cpu_percent {
        Some(p) => format!("{p:.0}% CPU"),
        None => format!("{:.1} s CPU", u.cpu_ms as f64 / 1000.0),
    };
    format!(
        "{} proc{}  {}  {cpu}",
        u.processes,
        if u.processes == 1 { "" } else { "s" },
        human_bytes(u.memory_bytes)
    )
}

/// `212 MiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

pub(super) fn this_repo(cwd: &Path) -> Result<Vec<WorktreeInfo>> {
    Ok(super::open(cwd)?.project.list(true)?)
}

pub(super) fn all_repos() -> Result<Vec<WorktreeInfo>> {
    // Each repository's own configuration (for its port variable names and proxy port).
    Ok(pwt::list_all(
        &super::state_dir()?,
        &super::config_sources(Vec::new()),
    )?)
}

fn team(cwd: &Path, format: Format) -> Result<i32> {
    let holds = super::open(cwd)?.project.team_holds()?;
    if format == Format::Json {
        let rows: Vec<pwt::HoldOut> = holds.iter().map(pwt::HoldOut::from).collect();
        print_json(&serde_json::to_value(rows)?);
        return Ok(exit_codes::OK);
    }
    if holds.is_empty() {
        println!("nothing is held in the team store");
        return Ok(exit_codes::OK);
    }
    let table: Vec<Vec<String>> = holds
        .iter()
        .map(|h| {
            [
                h.kind.as_str(),
                &h.name,
                &h.server,
                &h.who.holder,
                &h.who.branch,
                &h.since,
                &h.who.repo,
            ]
            .map(printable)
            .to_vec()
        })
        .collect();
    print_table(
        Style::stdout(),
        &[
            "KIND", "NAME", "SERVER", "HOLDER", "BRANCH", "SINCE", "REPO",
        ],
        &table,
    );
    Ok(exit_codes::OK)
}

/// `web ●  worker exited 1`: what `pwt dev` started, for the table.
fn processes_cell(
    style: Style,
    list: &[(pwt::DevProcess, pwt::ProcessState)],
    containers: &[pwt::Container],
) -> String {
    let processes = list.iter().map(|(p, state)| match state {
        pwt::ProcessState::Running => format!("{} {}", p.name, style.green("●")),
        pwt::ProcessState::Exited(Some(c)) => {
            format!("{} {}", p.name, style.yellow(&format!("exited {c}")))
        }
        pwt::ProcessState::Exited(None) => format!("{} {}", p.name, style.dim("stopped")),
    });
    // A container by its Compose service (`web`), in a box: `[web] ●`.
    let containers = containers.iter().map(|c| {
        let name = c.service.clone().unwrap_or_else(|| c.name.clone());
        let mark = match (c.state.as_str(), c.health.as_deref()) {
            ("running", None | Some("healthy")) => style.green("●"),
            ("running", Some(h)) => style.yellow(h),
            (s, _) => style.dim(s),
        };
        format!("[{}] {mark}", printable(&name))
    });
    processes.chain(containers).collect::<Vec<_>>().join("  ")
}
