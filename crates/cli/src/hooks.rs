//! The commands of `[hooks]`, and the stdout children get.

use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use pwt_core::Environment;

use crate::output;

/// A stdout for child processes: ours, or stderr when stdout carries JSON.
pub fn child_stdout(json: bool) -> Stdio {
    if json {
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    } else {
        Stdio::inherit()
    }
}

/// Runs the hooks of `stage` in `root` with `env`, output streamed. Hook commands come from
/// the configuration (trusted, like a Makefile); the branch name only reaches them as the
/// value of an environment variable, never as shell text.
pub fn run_hooks(
    stage: &str,
    hooks: &[String],
    root: &Path,
    env: &Environment,
    json: bool,
) -> Result<()> {
    for cmd in hooks {
        output::note(&format!("running {stage} hook: {cmd}"));
        let status = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(root)
            .envs(env.iter())
            .stdin(Stdio::null())
            .stdout(child_stdout(json))
            .status()
            .with_context(|| format!("cannot start the {stage} hook `{cmd}`"))?;
        if !status.success() {
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| status.to_string());
            bail!(
                "{stage} hook `{cmd}` failed with {code} (in {})",
                root.display()
            );
        }
    }
    Ok(())
}
