//! The binary's part: one module per subcommand (its arguments, whose doc comments are the
//! `-h` text, and `run`: parse, call one library function, render), plus what they share:
//! opening a project from the configuration layers and the environment, rendering, exit
//! codes.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Subcommand;
use std::io::{BufRead as _, IsTerminal as _, Write as _};

use pwt::{Approvals, Cancel, ChildOutput, ConfigSources, Faults, LoadedConfig, Options, Project};

mod completions;
mod config;
mod dev;
mod doctor;
mod env;
mod gc;
mod hook;
mod infra;
mod init;
mod list;
mod mcp;
mod new;
mod open;
mod proxy;
mod rm;
mod run;
mod state;
mod status;
mod top;
mod trust;
mod up;
mod url;

use crate::{env_vars, output};
use pwt::exit_code;

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    New(new::NewArgs),
    Up(up::UpArgs),
    List(list::ListArgs),
    Top(top::TopArgs),
    Status(status::StatusArgs),
    Mcp(mcp::McpArgs),
    Env(env::EnvArgs),
    Run(run::RunArgs),
    Dev(dev::DevArgs),
    Stop(dev::StopArgs),
    Url(url::UrlArgs),
    Open(open::OpenArgs),
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
        Command::Top(a) => top::run(&cwd, a),
        Command::Status(a) => status::run(&cwd, a),
        Command::Mcp(a) => mcp::run(&cwd, a),
        Command::Env(a) => env::run(&cwd, a),
        Command::Run(a) => run::run(&cwd, a),
        Command::Dev(a) => dev::run(&cwd, a),
        Command::Stop(a) => dev::stop(&cwd, a),
        Command::Url(a) => url::run(&cwd, a),
        Command::Open(a) => open::run(&cwd, a),
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

/// Opens the repository containing `cwd` the way the binary does, for a command that only
/// reads: configuration from its layers ([`settings`]), the state directory and crash-test
/// faults from the environment, approvals asked on a terminal.
pub fn open(cwd: &Path) -> Result<Project> {
    open_with(cwd, Cancel::default())
}

/// Opens it for a command that changes things: the first Ctrl-C (or SIGTERM, SIGHUP) stops
/// it at its next step and rolls back; a second ends pwt at once. With `yes`, what the
/// repository's pwt.toml would run goes ahead unasked.
pub fn open_interruptible(cwd: &Path, yes: bool) -> Result<Project> {
    let mut project = open_with(cwd, interruptible())?;
    if yes {
        project.set_approvals(Approvals::Trust);
    }
    Ok(project)
}

/// Opens it with `cancel` (one flag for many projects: `pwt mcp`'s calls).
pub fn open_with(cwd: &Path, cancel: Cancel) -> Result<Project> {
    let at = locations()?;
    let sources = config_sources(pwt::config_roots(cwd)?, at.user_config.clone())?;
    let settings = LoadedConfig::load(&sources)?;
    let mut options = Options::at(&at, settings);
    if let Some(spec) = env_vars::get(env_vars::PWT_FAULT) {
        options.faults = Faults::parse(&spec)?;
    }
    // Hooks and git write to stderr: stdout carries pwt's own summary or JSON, which
    // scripts read.
    options.child_output = ChildOutput::Stderr;
    options.cancel = cancel;
    options.approvals = approvals();
    Ok(Project::open(cwd, options)?)
}

/// The configuration of the repository containing `cwd`, from its layers (the files, the
/// process's `PWT_*` variables), and where each value came from.
pub fn settings(cwd: &Path) -> Result<LoadedConfig> {
    let user_file = locations().ok().and_then(|l| l.user_config);
    let sources = config_sources(pwt::config_roots(cwd)?, user_file)?;
    Ok(LoadedConfig::load(&sources)?)
}

/// Where the configuration comes from: `roots`, the user's file, the process's `PWT_*`
/// variables.
pub fn config_sources(roots: Vec<PathBuf>, user_file: Option<PathBuf>) -> Result<ConfigSources> {
    Ok(ConfigSources {
        roots,
        user_file,
        vars: text_vars()?,
    })
}

/// `PWT_TRUST_HOOKS` (anything but `0`): go ahead; on a terminal: ask; else refuse.
fn approvals() -> Approvals {
    if env_vars::get(env_vars::PWT_TRUST_HOOKS).is_some_and(|v| v != "0") {
        return Approvals::Trust;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Approvals::Refuse;
    }
    Approvals::Ask(std::sync::Arc::new(|a: &pwt::Approval| {
        confirm(&format!(
            "the repository's pwt.toml {} which you have not approved for this repository on this machine:\n{}Go ahead, now and from now on?",
            a.what(),
            a.shown
        ))
    }))
}

/// Asks `question` on stderr; true when the answer on stdin is yes.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Parses a worktree argument: a branch, slug or path; bytes that are not UTF-8 name a path.
pub fn selector() -> impl clap::builder::TypedValueParser<Value = pwt::Selector> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().map(pwt::Selector::from)
}

/// `pwt url NAME` / `pwt open NAME`: a lone service name that names no worktree is that
/// port of the current worktree.
fn target_or_port(
    project: &Project,
    target: Option<pwt::Selector>,
    port: Option<String>,
) -> (Option<pwt::Selector>, Option<String>) {
    match (target, port) {
        (Some(pwt::Selector::Name(t)), None)
            if project.config().services().contains_key(&t)
                && project.resolve(Some(&t.as_str().into())).is_err() =>
        {
            (None, Some(t))
        }
        (t, p) => (t, p),
    }
}

/// Where pwt keeps things, from this process's environment.
pub fn locations() -> Result<pwt::Locations> {
    text_vars()?;
    Ok(pwt::Locations::from_vars(env_vars::get)?)
}

/// The process's `PWT_*` variables. One that is set but not text (or `HOME`, `XDG_…`) is
/// an error, never a silent fall back to another registry or setting.
fn text_vars() -> Result<Vec<(String, String)>> {
    let read = [
        pwt::vars::HOME,
        pwt::vars::XDG_STATE_HOME,
        pwt::vars::XDG_CONFIG_HOME,
    ];
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if !(name.starts_with(pwt::VAR_PREFIX) || read.contains(&name.as_str())) {
            continue;
        }
        let Ok(value) = value.into_string() else {
            let e = format!("{name} is not UTF-8: pwt reads its variables as text");
            return Err(pwt::Error::new(pwt::ErrorKind::Invalid, e).into());
        };
        if name.starts_with(pwt::VAR_PREFIX) {
            out.push((name, value));
        }
    }
    Ok(out)
}

/// A cancel flag set by the first Ctrl-C (or SIGTERM, SIGHUP).
pub fn interruptible() -> Cancel {
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
    let hint = match lib.map(pwt::Error::kind) {
        // The engine's hint speaks to programs; a person at the command line has commands.
        Some(pwt::ErrorKind::Unapproved) => Some(
            "read them, then `pwt trust` approves them (asked again when they or their [env] change); `--yes` or PWT_TRUST_HOOKS=1 goes ahead without asking, for automation; --no-hooks skips the hooks",
        ),
        _ => lib.and_then(pwt::Error::hint_text),
    };
    if let Some(h) = hint {
        eprintln!("  {}", style.dim(&format!("hint: {h}")));
    }
    lib.map_or(exit_code::FAILURE, |l| exit_code::of(l.kind()))
}
