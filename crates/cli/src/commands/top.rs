//! `pwt top`

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::list::{all_repos, this_repo};
use crate::output::{Format, Style, display_path, print_table, printable, repo_dir};
use pwt::exit_code;

/// What each worktree uses right now, refreshed: CPU and memory of everything that is its
/// own (what `pwt dev` started, processes working in it, listeners on its ports, and their
/// children), the busiest first.
///
/// Read from /proc once per refresh for all worktrees. `--format json` prints one JSON
/// object per refresh, one per line.
#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// The worktrees of every repository on this machine.
    #[arg(long)]
    pub all_repos: bool,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0, value_parser = interval)]
    pub interval: f64,
    /// Stop after this many refreshes (default: until interrupted).
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

fn interval(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is no interval: give seconds from 0.1 to 3600"
        )),
    }
}

pub fn run(cwd: &Path, args: TopArgs) -> Result<i32> {
    let mut rates = pwt::Rates::default();
    let mut n = 0;
    loop {
        let mut rows = if args.all_repos {
            all_repos()?
        } else {
            this_repo(cwd)?
        };
        pwt::measure_usage(&mut rows);
        show(
            &rates.read(&rows),
            args.format,
            args.all_repos.then_some(cwd),
        )?;
        n += 1;
        if args.count.is_some_and(|c| n >= c) {
            return Ok(exit_code::OK);
        }
        std::thread::sleep(Duration::from_secs_f64(args.interval));
    }
}

/// One refresh; `repos_from`: with a REPO column, relative to that directory.
fn show(top: &pwt::TopOut, format: Format, repos_from: Option<&Path>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    if format == Format::Json {
        writeln!(stdout, "{}", serde_json::to_string(top)?)?;
        stdout.flush()?;
        return Ok(());
    }
    if stdout.is_terminal() {
        // Home and clear, so the table stays in place.
        write!(stdout, "\x1b[H\x1b[2J")?;
    }
    drop(stdout);
    let style = Style::stdout();
    let table: Vec<Vec<String>> = top
        .worktrees
        .iter()
        .map(|r| {
            let biggest = r
                .usage
                .each
                .first()
                .map(|p| format!("{} ({}, pid {})", printable(&p.name), p.why, p.pid))
                .unwrap_or_default();
            let mut row = vec![
                style.bold(&printable(&r.branch)),
                r.cpu_percent
                    .map_or_else(|| "…".to_owned(), |c| format!("{c:.0}%")),
                pwt::usage::human_bytes(r.usage.memory_bytes),
                r.usage.processes.to_string(),
                biggest,
            ];
            row.extend(repos_from.map(|cwd| display_path(repo_dir(Path::new(&r.repo)), cwd)));
            row
        })
        .collect();
    let headers = ["BRANCH", "CPU", "MEMORY", "PROCS", "BIGGEST", "REPO"];
    let shown = if repos_from.is_some() { 6 } else { 5 };
    print_table(style, &headers[..shown], &table);
    Ok(())
}
