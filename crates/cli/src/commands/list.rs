//! `pwt list`

use std::path::Path;

use anyhow::Result;
use pwt::{WorktreeInfo, WorktreeState};

use crate::output::{Format, Style, display_path, print_json, print_table, printable, repo_dir};
use crate::render::data_cell;
use pwt::exit_code;

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
        let out: Vec<pwt::WorktreeOut> = rows.iter().map(pwt::WorktreeOut::from).collect();
        print_json(&out)?;
        return Ok(exit_code::OK);
    }
    let (headers, table) = table(&rows, cwd, args.all_repos);
    if table.is_empty() {
        println!("no worktrees leased on this machine");
    } else {
        print_table(Style::stdout(), &headers, &table);
    }
    Ok(exit_code::OK)
}

/// The table of `rows`: its headers and cells. DATA, PROCESSES, USES and REPO only when a
/// row has one.
fn table(
    rows: &[WorktreeInfo],
    cwd: &Path,
    all_repos: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let style = Style::stdout();
    let mut headers = vec![
        "BRANCH",
        "STATE",
        "PORTS",
        "URL",
        "DATA",
        "PROCESSES",
        "USES",
        "PATH",
        "REPO",
    ];
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                style.bold(&printable(&r.branch)),
                state_cell(style, r),
                ports_cell(style, r),
                r.url.clone().unwrap_or_default(),
                data_cell(r),
                processes_cell(style, &r.processes, &r.containers),
                usage_cell(r.usage.as_ref()),
                display_path(&r.path, cwd),
                if all_repos {
                    display_path(repo_dir(&r.repo), cwd)
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    for column in [8, 6, 5, 4] {
        if table.iter().all(|row| row[column].is_empty()) {
            headers.remove(column);
            table.iter_mut().for_each(|row| drop(row.remove(column)));
        }
    }
    (headers, table)
}

/// `ready`, `missing`, …, coloured by how well it is.
fn state_cell(style: Style, r: &WorktreeInfo) -> String {
    match r.state {
        WorktreeState::Ready if r.hooks_pending => style.yellow("ready, hooks pending"),
        WorktreeState::Ready | WorktreeState::Main => style.green(r.state.as_str()),
        WorktreeState::Missing | WorktreeState::Removing | WorktreeState::Creating => {
            style.yellow(r.state.as_str())
        }
        _ => style.dim(r.state.as_str()),
    }
}

/// `web 20010 ●  api 20011 ○`: each port, listening (●) or not (○).
fn ports_cell(style: Style, r: &WorktreeInfo) -> String {
    let each = r.ports.iter().map(|p| {
        let mark = match p.listening {
            Some(true) => style.green("●"),
            Some(false) => style.dim("○"),
            None => String::new(),
        };
        format!("{} {} {mark}", p.name, p.port)
    });
    each.collect::<Vec<_>>().join("  ")
}

pub(super) fn this_repo(cwd: &Path) -> Result<Vec<WorktreeInfo>> {
    Ok(super::open(cwd)?.list(true)?)
}

pub(super) fn all_repos() -> Result<Vec<WorktreeInfo>> {
    // Each repository's own configuration (for its port variable names and proxy port).
    let at = super::locations()?;
    Ok(pwt::list_all(
        &at.state_dir,
        &super::config_sources(Vec::new(), at.user_config.clone())?,
    )?)
}

fn team(cwd: &Path, format: Format) -> Result<i32> {
    let holds = super::open(cwd)?.team_holds()?;
    if format == Format::Json {
        let rows: Vec<pwt::HoldOut> = holds.iter().map(pwt::HoldOut::from).collect();
        print_json(&rows)?;
        return Ok(exit_code::OK);
    }
    if holds.is_empty() {
        println!("nothing is held in the team store");
        return Ok(exit_code::OK);
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
    Ok(exit_code::OK)
}

/// What `usage` says, when something runs.
pub(super) fn usage_cell(usage: Option<&pwt::usage::Usage>) -> String {
    usage
        .filter(|u| u.processes > 0)
        .map(ToString::to_string)
        .unwrap_or_default()
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
