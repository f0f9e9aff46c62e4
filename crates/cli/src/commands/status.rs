//! `pwt status`

use std::path::Path;

use anyhow::Result;

use super::list::usage_cell;
use crate::output::{Format, Style, print_json, print_table, printable};
use pwt::exit_code;

/// One worktree as it is now: its ports (listening or not), its database, vhost and Redis
/// slot (answering with this worktree's, or why not), what runs for it and what that uses,
/// and the last lines its `[processes]` logged.
///
/// What an agent's `status` tool (`pwt mcp`) returns, for people. Default: the worktree you
/// are in.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Branch, slug or path (default: the current worktree).
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Lines of each process log to show (at most 500; 0: none).
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u16).range(0..=500))]
    pub lines: u16,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: StatusArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let status = project.status(args.target.as_ref(), args.lines.into())?;
    if args.format == Format::Json {
        print_json(&status)?;
        return Ok(exit_code::OK);
    }
    let style = Style::stdout();
    let w = &status.worktree;
    println!(
        "{} ({}) at {}",
        style.bold(&printable(&w.branch)),
        w.state.as_str(),
        printable(&w.path)
    );
    let mut rows: Vec<Vec<String>> = w
        .ports
        .iter()
        .map(|(name, p)| {
            let state = match p.listening {
                Some(true) => style.green("listening"),
                _ => style.yellow("nothing listens"),
            };
            vec![format!("port {name}"), p.url.clone(), state]
        })
        .collect();
    rows.extend(status.services.iter().map(|s| {
        let state = match (s.state, &s.detail) {
            (pwt::ResourceState::Ready, _) => style.green(s.state.as_str()),
            (_, detail) => style.yellow(&format!(
                "{}: {}",
                s.state.as_str(),
                detail.as_deref().unwrap_or("")
            )),
        };
        vec![s.kind.to_string(), printable(&s.resource), state]
    }));
    if let Some(url) = &w.url {
        rows.push(vec!["url".into(), url.clone(), String::new()]);
    }
    print_table(style, &["WHAT", "WHERE", "STATE"], &rows);
    let uses = usage_cell(w.usage.as_ref());
    if !uses.is_empty() {
        println!("\nruns: {uses}");
        for p in w.usage.iter().flat_map(|u| &u.each) {
            println!("  {} (pid {}): {}", printable(&p.name), p.pid, p.why);
        }
    }
    for (name, lines) in status.logs.iter().filter(|(_, l)| !l.is_empty()) {
        let last = match lines.len() {
            1 => "last line".to_owned(),
            n => format!("last {n} lines"),
        };
        println!("\n{} ({last}):", style.bold(&printable(name)));
        for l in lines {
            println!("  {}", printable(l));
        }
    }
    Ok(exit_code::OK)
}
