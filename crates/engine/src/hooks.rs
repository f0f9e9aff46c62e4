//! The commands of `[hooks]`, and how pwt's children are started and stopped.

use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pwt_core::Environment;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Reporter};
use crate::project::{ChildOutput, Options};

/// The stdout a child gets.
pub(crate) fn child_stdout(output: ChildOutput) -> Stdio {
    match output {
        ChildOutput::Inherit => Stdio::inherit(),
        ChildOutput::Null => Stdio::null(),
        ChildOutput::Stderr => std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
    }
}

pub(crate) use pwt_alloc::proc::die_with_parent;

/// SIGTERM to the child (and its process group, when it leads one), then SIGKILL if it is
/// still there after two seconds; reaps it.
pub(crate) fn terminate(child: &mut Child) {
    pwt_alloc::proc::terminate(child, Duration::from_secs(2));
}

/// Runs the hooks of `stage` in `root` with `env`, output streamed. Hook commands come from
/// the configuration; the branch name only reaches them as the value of an environment
/// variable, never as shell text. Each runs in a process group of its own, stopped with it
/// when the caller cancels.
pub(crate) fn run_hooks(
    stage: &'static str,
    hooks: &[String],
    root: &Path,
    env: &Environment,
    options: &Options,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let (output, cancel, faults) = (options.child_output, &options.cancel, &options.faults);
    use std::os::unix::process::CommandExt as _;
    for (i, cmd) in hooks.iter().enumerate() {
        if i > 0 {
            faults.pause(crate::faults::FaultPoint::BetweenHooks);
        }
        reporter.report(Event::Hook {
            stage,
            command: cmd.clone(),
        });
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(root)
            .envs(env.iter())
            .stdin(Stdio::null())
            .stdout(child_stdout(output))
            .process_group(0);
        die_with_parent(&mut c);
        let mut child = c.spawn().map_err(|e| {
            Error::new(
                ErrorKind::Hook,
                format!("cannot start the {stage} hook `{cmd}`"),
            )
            .caused_by(e)
        })?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if cancel.is_cancelled() => {
                    terminate(&mut child);
                    return cancel.check();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Hook,
                        format!("the {stage} hook `{cmd}` was lost"),
                    )
                    .caused_by(e));
                }
            }
        };
        if !status.success() {
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| status.to_string());
            return Err(Error::new(
                ErrorKind::Hook,
                format!(
                    "{stage} hook `{cmd}` failed with {code} (in {})",
                    root.display()
                ),
            ));
        }
    }
    Ok(())
}
