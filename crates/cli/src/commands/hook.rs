//! `pwt hook`

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::exit_codes;

/// Glue for tools that create and remove worktrees themselves (Claude Code)
///
/// Claude Code (`.claude/settings.json`):
///
///   {"hooks": {
///     "WorktreeCreate": [{"hooks": [{"type": "command", "command": "pwt hook claude-code-create"}]}],
///     "WorktreeRemove": [{"hooks": [{"type": "command", "command": "pwt hook claude-code-remove"}]}]}}
///
/// Worktrunk, gtr and git hooks need no glue: their post-create hook runs `pwt up` in the new
/// worktree and their pre-remove hook runs `pwt rm --keep-worktree .` (see the README).
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct HookArgs {
    #[command(subcommand)]
    pub kind: HookKind,
}

/// Which hook.
#[derive(clap::Subcommand, Debug)]
pub enum HookKind {
    /// Claude Code's WorktreeCreate: reads the event JSON on stdin (`name`, optional
    /// `worktree_path`, `base_ref`/`base_commit`, `cwd`), runs `pwt new`, prints the
    /// worktree's path (all Claude Code reads from stdout).
    ClaudeCodeCreate,
    /// Claude Code's WorktreeRemove: reads the event JSON on stdin (`worktree_path`), runs
    /// `pwt rm` on it (refusing uncommitted work, exit 3).
    ClaudeCodeRemove,
}

fn payload() -> Result<Value> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the hook's JSON from stdin")?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "the hook input is not JSON: {:?}",
            text.chars().take(200).collect::<String>()
        )
    })
}

fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| v[*n].as_str())
        .filter(|s| !s.is_empty())
}

/// Runs this pwt with `args` in `dir`; its stdout is returned, its stderr passed through.
fn pwt(dir: &Path, args: &[String]) -> Result<(i32, String)> {
    let exe = std::env::current_exe().context("cannot find the pwt executable")?;
    let out = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    Ok((
        out.status.code().unwrap_or(exit_codes::FAILURE),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

pub fn run(cwd: &Path, args: HookArgs) -> Result<i32> {
    let v = payload()?;
    let dir = field(&v, &["cwd"]).map_or_else(|| cwd.to_owned(), PathBuf::from);
    match args.kind {
        HookKind::ClaudeCodeCreate => {
            let Some(name) = field(&v, &["name", "worktree_name", "branch_name"]) else {
                bail!("the WorktreeCreate input has no `name`: {v}");
            };
            let mut a = vec![
                "new".to_owned(),
                name.to_owned(),
                "--format".into(),
                "json".into(),
            ];
            if let Some(p) = field(&v, &["worktree_path"]) {
                a.extend(["--path".into(), p.to_owned()]);
            }
            if let Some(b) = field(&v, &["base_ref", "base_commit"]) {
                a.extend(["--base".into(), b.to_owned()]);
            }
            let (code, out) = pwt(&dir, &a)?;
            if code != exit_codes::OK {
                return Ok(code);
            }
            let created: Value = serde_json::from_str(&out).context("pwt new printed no JSON")?;
            let path = created["path"]
                .as_str()
                .context("pwt new printed no path")?;
            println!("{path}");
            Ok(exit_codes::OK)
        }
        HookKind::ClaudeCodeRemove => {
            let Some(path) = field(&v, &["worktree_path"]) else {
                bail!("the WorktreeRemove input has no `worktree_path`: {v}");
            };
            let (code, out) = pwt(&dir, &["rm".to_owned(), path.to_owned()])?;
            eprint!("{out}");
            Ok(code)
        }
    }
}
