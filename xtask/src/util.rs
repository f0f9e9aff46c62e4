//! Small helpers shared by the benchmarks and the end-to-end run.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// Runs `program` and returns its stdout, failing with its stderr.
pub fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `psql` as `postgres` on the loopback server's maintenance database, plus `extra`.
pub fn psql(extra: &[&str]) -> Result<String> {
    let mut args = vec![
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-X",
        "-q",
    ];
    args.extend_from_slice(extra);
    output("psql", &args)
}

/// A fresh scratch directory `<tmp>/pwt-<name>-<pid>` with `home/.gitconfig` (an identity
/// and `main` as the default branch), for a run that must not touch the user's setup.
pub fn scratch(name: &str) -> Result<PathBuf> {
    let root = std::env::temp_dir().join(format!("pwt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("home"))?;
    std::fs::write(
        root.join("home/.gitconfig"),
        "[user]\n\tname = pwt xtask\n\temail = xtask@example.com\n[init]\n\tdefaultBranch = main\n",
    )?;
    Ok(root)
}
