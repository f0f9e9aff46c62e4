//! The binary's part: one module per subcommand (its arguments, whose doc comments are the
//! `-h` text, and `run`: parse, call one library function, render), plus what they share:
//! opening a project from the configuration layers and the environment, rendering, exit
//! codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use clap::Subcommand;
use pwt::{Cancel, ChildOutput, Faults, Options, Project};

mod completions;
mod config;
mod dev;
mod doctor;
mod env;
mod env_vars;
mod exit_codes;
mod gc;
mod hook;
mod infra;
mod init;
mod list;
mod new;
mod output;
mod proxy;
mod render;
mod rm;
mod run;
mod settings;
mod state;
mod trust;
mod up;
mod url;

use settings::Settings;

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    New(new::NewArgs),
    Up(up::UpArgs),
    List(list::ListArgs),
    Env(env::EnvArgs),
    Run(run::RunArgs),
    Dev(dev::DevArgs),
    Stop(dev::StopArgs),
    Url(url::UrlArgs),
    State(state::StateArgs),
    Rm(rm::RmArgs),
    Gc(gc::GcArgs),
    Doctor(doctor::DoctorArgs),
    Proxy(proxy::ProxyArgs),
    Infra(infra::InfraArgs),
    Hook(hook::HookArgs),
    Config(config::ConfigArgs),
    Init(init::InitArgs),
    Trust(trust::TrustArgs),
    Completions(completions::CompletionsArgs),
}

/// Runs `command` as if started in `dir`; returns the exit code.
pub fn run(dir: Option<PathBuf>, command: Command) -> Result<i32> {
    let mut cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Some(d) = dir {
        cwd = std::fs::canonicalize(cwd.join(&d))
            .with_context(|| format!("-C {}: no such directory", d.display()))?;
    }
    match command {
        Command::New(a) => new::run(&cwd, a),
        Command::Up(a) => up::run(&cwd, a),
        Command::List(a) => list::run(&cwd, a),
        Command::Env(a) => env::run(&cwd, a),
        Command::Run(a) => run::run(&cwd, a),
        Command::Dev(a) => dev::run(&cwd, a),
        Command::Stop(a) => dev::stop(&cwd, a),
        Command::Url(a) => url::run(&cwd, a),
        Command::State(a) => state::run(&cwd, a),
        Command::Rm(a) => rm::run(&cwd, a),
        Command::Gc(a) => gc::run(&cwd, a),
        Command::Doctor(a) => doctor::run(&cwd, a),
        Command::Proxy(a) => proxy::run(&cwd, a),
        Command::Infra(a) => infra::run(&cwd, a),
        Command::Hook(a) => hook::run(&cwd, a),
        Command::Config(a) => config::run(&cwd, a),
        Command::Init(a) => init::run(&cwd, a),
        Command::Trust(a) => trust::run(&cwd, a),
        Command::Completions(a) => completions::run(a),
    }
}

/// A project opened the way the binary does: configuration from its layers, the state
/// directory and crash-test faults from the environment.
pub struct Opened {
    /// The project.
    pub project: Project,
    /// Where each configuration value came from.
    pub settings: Settings,
}

/// Opens the repository containing `cwd`, for a command that only reads.
pub fn open(cwd: &Path) -> Result<Opened> {
    open_with(cwd, Cancel::default())
}

/// Opens it for a command that changes things: the first Ctrl-C (or SIGTERM, SIGHUP) stops
/// it at its next step and rolls back; a second ends pwt at once.
pub fn open_interruptible(cwd: &Path) -> Result<Opened> {
    open_with(cwd, interruptible())
}

fn open_with(cwd: &Path, cancel: Cancel) -> Result<Opened> {
    let roots = pwt::config_roots(cwd)?;
    let roots: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
    let settings = Settings::load(&roots)?;
    let mut options = Options::new(state_dir()?, settings.config.clone());
    options.faults = faults();
    // Hooks and git write to stderr: stdout carries pwt's own summary or JSON, which
    // scripts read.
    options.child_output = ChildOutput::Stderr;
    options.cancel = cancel;
    options.machine_dir = Some(
        env_vars::get(env_vars::PWT_MACHINE_DIR)
            .map_or_else(|| PathBuf::from("/var/tmp/pwt"), PathBuf::from),
    );
    options.holder = holder();
    options.confine_worktrees = settings.set_by_project_file("worktree.path");
    let project = Project::open(cwd, options)?;
    Ok(Opened { project, settings })
}

/// `$PWT_HOLDER`, else `user@host`: who holds leases in the team store.
/// For the long-running commands that write to sockets (the proxy): a peer that goes away
/// mid-write is an error on that connection, never the end of the process. (`main` sets
/// SIGPIPE back to its default, for output piped into `head`.)
pub fn ignore_sigpipe() {
    // SAFETY: sets a signal's disposition to "ignore", with no handler to run.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

fn holder() -> String {
    if let Some(h) = env_vars::get(env_vars::PWT_HOLDER) {
        return h;
    }
    let user = env_vars::get(env_vars::USER).unwrap_or_else(|| "someone".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The state directory: `$PWT_STATE_DIR`, else `$XDG_STATE_HOME/pwt`, else
/// `~/.local/state/pwt`.
pub fn state_dir() -> Result<PathBuf> {
    if let Some(d) = env_vars::get(env_vars::PWT_STATE_DIR) {
        return Ok(d.into());
    }
    if let Some(d) = env_vars::get(env_vars::XDG_STATE_HOME) {
        return Ok(Path::new(&d).join("pwt"));
    }
    let home = env_vars::get(env_vars::HOME).ok_or_else(|| {
        anyhow!("cannot find the state directory: set PWT_STATE_DIR, XDG_STATE_HOME or HOME")
    })?;
    Ok(Path::new(&home).join(".local/state/pwt"))
}

/// `PWT_FAULT=<point>:<ms>`, for pwt's own crash tests.
fn faults() -> Faults {
    let Some(spec) = env_vars::get(env_vars::PWT_FAULT) else {
        return Faults::default();
    };
    let (point, ms) = spec.split_once(':').unwrap_or((&spec, "0"));
    Faults::pause_at(point, Duration::from_millis(ms.parse().unwrap_or(0)))
}

/// A cancel flag set by the first Ctrl-C (or SIGTERM, SIGHUP).
fn interruptible() -> Cancel {
    let cancel = Cancel::default();
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let flag = cancel.flag();
        // Registration fails only for signals that cannot be caught, which these are not.
        let _ = signal_hook::flag::register_conditional_default(signal, flag.clone());
        let _ = signal_hook::flag::register(signal, flag);
    }
    cancel
}

/// Prints the error, its causes, what a rollback did, and the hint, to stderr; returns the
/// exit code.
pub fn report_error(e: &anyhow::Error) -> i32 {
    let style = output::Style::stderr();
    eprintln!(
        "{} {}",
        style.red("error:"),
        output::printable_lines(&e.to_string())
    );
    let mut shown = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if shown.ends_with(&text) {
            continue;
        }
        eprintln!("  caused by: {}", output::printable_lines(&text));
        shown = text;
    }
    let lib = e.chain().find_map(|c| c.downcast_ref::<pwt::Error>());
    if let Some(r) = lib.and_then(pwt::Error::rollback) {
        for line in r.describe().lines().filter(|l| !l.is_empty()) {
            eprintln!("{line}");
        }
    }
    if let Some(h) = lib.and_then(pwt::Error::hint_text) {
        eprintln!("  {}", style.dim(&format!("hint: {h}")));
    }
    lib.map_or(exit_codes::FAILURE, |l| exit_codes::of(l.kind()))
}
