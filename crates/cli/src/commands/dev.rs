//! `pwt dev` and `pwt stop`

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pwt::Target;

use crate::exit_codes;
use crate::output::{Style, Terminal, printable};

/// Start the worktree's processes ([processes] in pwt.toml) with its environment
///
/// Each runs as `sh -c COMMAND` in the worktree with its environment, in a process group of
/// its own. In the foreground their output is shown line by line, prefixed with their name;
/// Ctrl-C stops them all (SIGTERM, then SIGKILL after 5 s). With --detach they run on, their
/// output in log files under the state directory; `pwt list` shows them, `pwt stop` stops
/// them, and `pwt rm` stops them before anything else.
///
///   [processes]
///   backend = "python manage.py runserver $DJANGO_PORT"
///   frontend = "npm run dev"
///
///   pwt dev                  # in the current worktree, in the foreground
///   pwt dev feature-a --detach
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct DevArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
    /// Leave them running in the background, output to log files.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Run the repository's commands without asking for their approval (see `pwt trust`).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Stop the processes `pwt dev` started in a worktree, and its Compose containers
///
/// SIGTERM to each process group, SIGKILL after --grace seconds to what is left. The
/// worktree's Compose project (`COMPOSE_PROJECT_NAME`, the containers that ran in its
/// directory) is taken down too, as `docker compose down` would; its named volumes only
/// with --volumes.
///
///   pwt stop
///   pwt stop feature-a
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StopArgs {
    /// Branch, slug or path (default: the current worktree).
    pub target: Option<String>,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
    /// Also delete the named volumes of its Compose containers.
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(cwd: &Path, args: DevArgs) -> Result<i32> {
    let opened = super::open_interruptible(cwd, args.yes)?;
    let project = &opened.project;
    let spawned = project.start_processes(
        args.target.as_deref(),
        args.detach,
        &mut Terminal { quiet: false },
    )?;
    if args.detach {
        for s in &spawned {
            let log = s.process.log.as_ref().map(|l| l.display().to_string());
            println!(
                "started {} (pid {}): {}; log {}",
                s.process.name,
                s.process.pid,
                printable(&s.process.command),
                log.unwrap_or_default()
            );
        }
        return Ok(exit_codes::OK);
    }
    let slug = slug_of(project, args.target.as_deref())?;
    Ok(foreground(project, &slug, spawned))
}

/// Shows the processes' output line by line, each prefixed with its name, until all have
/// ended (or Ctrl-C stops them); returns the worst exit code.
fn foreground(project: &pwt::Project, slug: &str, spawned: Vec<pwt::Spawned>) -> i32 {
    let err = Style::stderr();
    let width = spawned
        .iter()
        .map(|s| s.process.name.len())
        .max()
        .unwrap_or(0);
    let out = Style::stdout();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for (i, mut s) in spawned.into_iter().enumerate() {
        let prefix = out.nth(i, &format!("{:width$} |", s.process.name));
        readers.extend(prefix_lines(&mut s.child, &prefix));
        eprintln!(
            "{} {} (pid {})",
            err.dim("started"),
            s.process.name,
            s.process.pid
        );
        children.push((s.process, s.child));
    }
    let mut done = vec![false; children.len()];
    let mut worst = 0;
    while done.iter().any(|d| !d) {
        if project.cancel().is_cancelled() {
            eprintln!("{}", err.dim("stopping ..."));
            for (p, stopped) in project.stop_dev_processes(slug, Duration::from_secs(5)) {
                if !stopped {
                    eprintln!(
                        "{} {} (pid {}) did not stop",
                        err.yellow("warning:"),
                        p.name,
                        p.pid
                    );
                }
            }
        }
        for ((p, child), done) in children.iter_mut().zip(done.iter_mut()) {
            if *done {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                *done = true;
                let code = status.code();
                worst = worst.max(code.unwrap_or(1));
                let how = code.map_or("was stopped".to_owned(), |c| {
                    format!("exited with code {c}")
                });
                eprintln!("{} {how}", p.name);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in readers {
        let _ = r.join();
    }
    if project.cancel().is_cancelled() {
        exit_codes::INTERRUPTED
    } else {
        worst
    }
}

/// Threads that copy the child's stdout and stderr to ours, each line after `prefix`.
fn prefix_lines(child: &mut std::process::Child, prefix: &str) -> Vec<std::thread::JoinHandle<()>> {
    let streams = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ];
    streams
        .into_iter()
        .flatten()
        .map(|stream| {
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(|l| l.ok()) {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "{prefix} {}", String::from_utf8_lossy(&line));
                }
            })
        })
        .collect()
}

fn slug_of(project: &pwt::Project, target: Option<&str>) -> Result<String> {
    Ok(match project.resolve(target)? {
        Target::Leased(l) => l.slug.to_string(),
        _ => "main".to_owned(),
    })
}

pub fn stop(cwd: &Path, args: StopArgs) -> Result<i32> {
    let opened = super::open(cwd)?;
    let project = &opened.project;
    let slug = slug_of(project, args.target.as_deref())?;
    // Its Compose project's containers too (they hold its ports).
    let mut containers = Vec::new();
    if let Target::Leased(l) = project.resolve(args.target.as_deref())? {
        containers = project.stop_containers(&l, args.volumes, &mut Terminal { quiet: false });
    }
    for c in &containers {
        println!("removed {c}");
    }
    let stopped = project.stop_dev_processes(&slug, Duration::from_secs(args.grace));
    if stopped.is_empty() {
        if containers.is_empty() {
            println!("nothing of `pwt dev` runs there, and no container of its Compose project");
        }
        return Ok(exit_codes::OK);
    }
    let mut code = exit_codes::OK;
    for (p, stopped) in stopped {
        if stopped {
            println!("stopped {} (pid {})", p.name, p.pid);
        } else {
            eprintln!("could not stop {} (pid {}): another user's?", p.name, p.pid);
            code = exit_codes::FAILURE;
        }
    }
    Ok(code)
}
