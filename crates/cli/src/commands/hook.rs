//! `pwt hook`

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use pwt::{BranchName, CreateRequest, Removal, RemoveRequest};
use serde_json::Value;

use crate::output::{Terminal, printable};
use pwt::exit_code;

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
    /// `worktree_path`, `base_ref`/`base_commit`, `cwd`), does what `pwt new` does, prints
    /// the worktree's path (all Claude Code reads from stdout).
    ClaudeCodeCreate,
    /// Claude Code's WorktreeRemove: reads the event JSON on stdin (`worktree_path`), does
    /// what `pwt rm` does (refusing uncommitted work, exit 3).
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

pub fn run(cwd: &Path, args: HookArgs) -> Result<i32> {
    let v = payload()?;
    let dir = field(&v, &["cwd"]).map_or_else(|| cwd.to_owned(), PathBuf::from);
    // stdout is Claude Code's: only the path goes there; everything else to stderr.
    let project = super::open_interruptible(&dir, false)?;
    let mut reporter = Terminal { quiet: false };
    match args.kind {
        HookKind::ClaudeCodeCreate => {
            let Some(name) = field(&v, &["name", "worktree_name", "branch_name"]) else {
                bail!("the WorktreeCreate input has no `name`: {v}");
            };
            let req = CreateRequest {
                branch: BranchName::parse(name).map_err(pwt::Error::from)?,
                base: field(&v, &["base_ref", "base_commit"]).map(str::to_owned),
                path: field(&v, &["worktree_path"]).map(PathBuf::from),
                hooks: true,
                keep_on_failure: false,
            };
            let done = project.create(&req, &mut reporter)?;
            println!("{}", done.lease.path.display());
            Ok(exit_code::OK)
        }
        HookKind::ClaudeCodeRemove => {
            let Some(path) = field(&v, &["worktree_path"]) else {
                bail!("the WorktreeRemove input has no `worktree_path`: {v}");
            };
            let req = RemoveRequest {
                target: pwt::Selector::Path(path.into()),
                hooks: true,
                ..RemoveRequest::default()
            };
            match project.remove(&req, &mut reporter)? {
                Removal::Removed(r) => {
                    eprintln!("removed {} ({})", printable(r.branch.as_str()), r.summary());
                }
                Removal::Nothing(why) => eprintln!("nothing to do: {}", printable(&why)),
            }
            Ok(exit_code::OK)
        }
    }
}
