//! `pwt dev` and `pwt stop`

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pwt::Supervision;

use crate::output::{Style, Terminal, printable};
use pwt::exit_code;

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
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
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
    #[arg(value_parser = super::selector())]
    pub target: Option<pwt::Selector>,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, default_value_t = 5)]
    pub grace: u64,
    /// Also delete the named volumes of its Compose containers.
    #[arg(long)]
    pub volumes: bool,
}

pub fn run(cwd: &Path, args: DevArgs) -> Result<i32> {
    let project = super::open_interruptible(cwd, args.yes)?;
    let spawned = project.start_processes(
        args.target.as_ref(),
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
        return Ok(exit_code::OK);
    }
    Ok(foreground(&project, spawned))
}

/// Shows the processes' output line by line, each prefixed with its name, until all have
/// ended (or Ctrl-C stops them); returns the worst exit code.
fn foreground(project: &pwt::Project, spawned: Vec<pwt::Spawned>) -> i32 {
    let (out, err) = (Style::stdout(), Style::stderr());
    let width = spawned.iter().map(|s| s.process.name.len()).max();
    for s in &spawned {
        eprintln!(
            "{} {} (pid {})",
            err.dim("started"),
            s.process.name,
            s.process.pid
        );
    }
    let worst = project.supervise(spawned, project.cancel(), &|event| match event {
        Supervision::Line { index, name, line } => {
            let prefix = out.nth(index, &format!("{name:0$} |", width.unwrap_or(0)));
            let _ = writeln!(
                std::io::stdout().lock(),
                "{prefix} {}",
                String::from_utf8_lossy(line)
            );
        }
        Supervision::Exited { process, code } => {
            let how = code.map_or("was stopped".to_owned(), |c| {
                format!("exited with code {c}")
            });
            eprintln!("{} {how}", process.name);
        }
        Supervision::Stopping => eprintln!("{}", err.dim("stopping ...")),
        Supervision::NotStopped { process } => eprintln!(
            "{} {} (pid {}) did not stop",
            err.yellow("warning:"),
            process.name,
            process.pid
        ),
        _ => {}
    });
    worst.unwrap_or(exit_code::INTERRUPTED)
}

pub fn stop(cwd: &Path, args: StopArgs) -> Result<i32> {
    let project = super::open(cwd)?;
    let stopped = project.stop(
        args.target.as_ref(),
        Duration::from_secs(args.grace),
        args.volumes,
        &mut Terminal { quiet: false },
    )?;
    for c in &stopped.containers {
        println!("removed {c}");
    }
    if stopped.processes.is_empty() && stopped.containers.is_empty() {
        println!(
            "nothing of `pwt dev` runs there, and no container of its Compose project was taken down"
        );
    }
    let mut code = exit_code::OK;
    for (p, stopped) in stopped.processes {
        if stopped {
            println!("stopped {} (pid {})", p.name, p.pid);
        } else {
            eprintln!("could not stop {} (pid {}): another user's?", p.name, p.pid);
            code = exit_code::FAILURE;
        }
    }
    Ok(code)
}
