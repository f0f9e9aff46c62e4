//! One module per subcommand: its arguments (whose doc comments are the `-h` text) and
//! `run`, which calls the libraries and prints.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

mod completions;
mod config;
mod doctor;
mod env;
pub(crate) mod gc;
mod hook;
mod infra;
mod init;
mod list;
pub(crate) mod new;
mod proxy;
mod rm;
mod run;
mod state;
mod up;
mod url;

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    New(new::NewArgs),
    Up(up::UpArgs),
    List(list::ListArgs),
    Env(env::EnvArgs),
    Run(run::RunArgs),
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
        Command::Completions(a) => completions::run(a),
    }
}
