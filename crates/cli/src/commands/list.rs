//! `pwt list`

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::exit_codes;
use crate::output::{Format, Style, print_json, print_table, printable};
use crate::paths::display_path;
use crate::report::listening;
use crate::report::{PortInfo, WorktreeInfo, lease_info};
use crate::session::{Session, registry};

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
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: ListArgs) -> Result<i32> {
    let rows = if args.all_repos {
        all_repos()?
    } else {
        this_repo(cwd)?
    };
    if args.format == Format::Json {
        print_json(&Value::Array(
            rows.iter().map(WorktreeInfo::to_json).collect(),
        ));
        return Ok(exit_codes::OK);
    }
    let style = Style::stdout();
    let with_data = rows.iter().any(|r| !r.data_cell().is_empty());
    let mut table = Vec::new();
    for r in &rows {
        let state = match r.state.as_str() {
            "ready" | "main" => style.green(&r.state),
            "missing" | "removing" | "creating" => style.yellow(&r.state),
            _ => style.dim(&r.state),
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
        row.push(display_path(&r.path, cwd));
        if args.all_repos {
            row.push(display_path(&r.repo, cwd));
        }
        table.push(row);
    }
    let mut headers = vec!["BRANCH", "STATE", "PORTS", "URL"];
    if with_data {
        headers.push("DATA");
    }
    headers.push("PATH");
    if args.all_repos {
        headers.push("REPO");
    }
    if table.is_empty() {
        println!("no worktrees leased on this machine");
    } else {
        print_table(style, &headers, &table);
    }
    Ok(exit_codes::OK)
}

fn this_repo(cwd: &Path) -> Result<Vec<WorktreeInfo>> {
    let session = Session::open(cwd)?;
    let state = session.registry.read()?;
    let repo = &session.repo.common_dir;
    let worktrees = session.repo.worktrees()?;
    let mut rows = Vec::new();
    let proxy_port = pwt_core::proxy_port(&session.config().proxy.listen).unwrap_or(8080);
    if let Some(main) = worktrees.iter().find(|w| w.is_main) {
        let services = session.config().services();
        rows.push(WorktreeInfo {
            branch: main.branch.clone().unwrap_or_else(|| "(detached)".into()),
            slug: crate::lease_ops::MAIN_SLUG.into(),
            path: main.root.clone(),
            state: "main".into(),
            ports: services
                .iter()
                .filter_map(|(name, s)| {
                    s.main.map(|port| PortInfo {
                        name: name.clone(),
                        env: s.env.clone(),
                        port,
                        listening: Some(listening(port)),
                    })
                })
                .collect(),
            url: Some(format!("http://localhost:{proxy_port}")),
            leftover: vec![],
            repo: repo.clone(),
            database: session.config().postgres.as_ref().map(|pg| {
                pg.main_database
                    .clone()
                    .unwrap_or_else(|| session.project())
            }),
            vhost: session.config().rabbitmq.as_ref().map(|_| "/".to_owned()),
            redis_prefix: None,
            redis_db: None,
        });
    }
    let mut leases: Vec<_> = state.of_repo(repo).collect();
    leases.sort_by(|a, b| a.branch.cmp(&b.branch));
    for l in &leases {
        rows.push(session.lease_info(l, true));
    }
    for w in worktrees.iter().filter(|w| !w.is_main) {
        if leases.iter().any(|l| l.path == w.root) {
            continue;
        }
        rows.push(WorktreeInfo {
            branch: w.branch.clone().unwrap_or_else(|| "(detached)".into()),
            slug: String::new(),
            path: w.root.clone(),
            state: if w.exists {
                "unmanaged".into()
            } else {
                "prunable".into()
            },
            ports: vec![],
            url: None,
            leftover: vec![],
            repo: repo.clone(),
            database: None,
            vhost: None,
            redis_prefix: None,
            redis_db: None,
        });
    }
    Ok(rows)
}

fn all_repos() -> Result<Vec<WorktreeInfo>> {
    let state = registry()?.read()?;
    let mut leases: Vec<_> = state.leases.iter().collect();
    leases.sort_by(|a, b| (&a.repo, &a.branch).cmp(&(&b.repo, &b.branch)));
    // Each repository's own configuration (for its port variable names and proxy port); the
    // defaults for one that is gone or does not load.
    let mut configs: std::collections::BTreeMap<&Path, pwt_core::Config> =
        std::collections::BTreeMap::new();
    for l in &leases {
        configs.entry(l.repo.as_path()).or_insert_with(|| {
            pwt_alloc::Repo::discover(&l.repo)
                .ok()
                .and_then(|r| {
                    let roots: Vec<&Path> = r.main_root.iter().map(|p| p.as_path()).collect();
                    crate::settings::Settings::load(&roots).ok()
                })
                .map(|s| s.config)
                .unwrap_or_default()
        });
    }
    Ok(leases
        .into_iter()
        .map(|l| lease_info(&configs[l.repo.as_path()], l, true))
        .collect())
}
