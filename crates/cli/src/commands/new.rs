//! `pwt new`

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use pwt_core::BranchName;

use crate::exit_codes;
use crate::lease_ops::Mode;
use crate::output::{Format, Style, note, print_json, printable};
use crate::session::{Session, git};

/// Create a worktree with its own environment: branch (if missing), `git worktree add`,
/// ports, env files, post-create hooks; then print where everything is.
///
/// The branch is created from --base (default: the current HEAD) unless it exists. The
/// worktree goes to `worktree.path` (default `../<repo>.<slug>`) unless --path is given. With
/// -x, PROGRAM then runs inside the worktree with its environment, replacing pwt:
///
///   pwt new feature-notifications -x claude -- "Add a notification bell"
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct NewArgs {
    /// The branch to check out in the new worktree (created if it does not exist).
    pub branch: String,
    /// Start the new branch from this commit, branch or tag.
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Put the worktree here instead of `worktree.path`.
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Then run PROGRAM in the worktree with its environment (arguments after `--`).
    #[arg(short = 'x', long = "exec", value_name = "PROGRAM")]
    pub exec: Option<String>,
    /// Arguments for PROGRAM.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
    /// Do not run the post-create hooks.
    #[arg(long)]
    pub no_hooks: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub fn run(cwd: &Path, args: NewArgs) -> Result<i32> {
    let branch = BranchName::parse(&args.branch)?;
    let branch = branch.as_str();
    if let Some(base) = &args.base
        && base.starts_with('-')
    {
        bail!("invalid --base {base:?}: it starts with '-' and would read as an option");
    }
    if !args.args.is_empty() && args.exec.is_none() {
        bail!("arguments after `--` need a program: pwt new BRANCH -x PROGRAM -- ARGS");
    }
    let session = Session::open(cwd)?;
    let json = args.format == Format::Json;
    // Fail before anything is allocated when git would refuse anyway.
    if let Some(w) = session
        .repo
        .worktrees()?
        .into_iter()
        .find(|w| w.branch.as_deref() == Some(branch))
    {
        bail!(
            "branch {branch:?} is already checked out at {}\n  hint: `pwt up {}` sets up that worktree",
            w.root.display(),
            w.root.display()
        );
    }
    let branch_exists = session.repo.branch_exists(branch);
    if branch_exists && args.base.is_some() {
        bail!(
            "branch {branch:?} already exists, so --base has nothing to do\n  hint: drop --base, or pick a new branch name"
        );
    }

    let (lease, _) = session.lease(branch, Mode::New, |slug| {
        session.worktree_path(args.path.as_deref(), branch, slug.as_str())
    })?;
    let path = lease.path.clone();

    // git worktree add, outside the lock: like the user would run it, hooks and all.
    if !json {
        note(&format!("creating worktree {} ...", path.display()));
    }
    let mut git_args: Vec<&OsStr> = vec![
        OsStr::new("worktree"),
        OsStr::new("add"),
        OsStr::new("--quiet"),
    ];
    if !branch_exists {
        git_args.extend([OsStr::new("-b"), OsStr::new(branch)]);
    }
    git_args.extend([OsStr::new("--"), path.as_os_str()]);
    match (&args.base, branch_exists) {
        (_, true) => git_args.push(OsStr::new(branch)),
        (Some(base), false) => git_args.push(OsStr::new(base)),
        (None, false) => {}
    }
    if let Err(e) = session.git_worktree(cwd, &git_args) {
        session.release(&lease.repo, branch)?;
        return Err(e.context(format!(
            "cannot create the worktree for {branch:?}; nothing was left behind"
        )));
    }

    let finish = || -> Result<_> {
        let env = session.lease_env(&lease)?;
        let hashes =
            session.write_env_files(&path, lease.slug.as_str(), &env, &lease.files, false)?;
        let lease = session.mark_ready(branch, hashes)?;
        Ok((env, lease))
    };
    let (env, lease) = match finish() {
        Ok(v) => v,
        Err(e) => {
            // Roll back what this run made: the worktree, the branch if new, the lease.
            let _ = session.git_worktree(
                cwd,
                &[
                    OsStr::new("worktree"),
                    OsStr::new("remove"),
                    OsStr::new("--force"),
                    path.as_os_str(),
                ],
            );
            if !branch_exists {
                let _ = git(
                    cwd,
                    &[OsStr::new("branch"), OsStr::new("-D"), OsStr::new(branch)],
                );
            }
            session.release(&lease.repo, branch)?;
            return Err(e.context(format!(
                "cannot set up the worktree for {branch:?}; it was rolled back"
            )));
        }
    };

    if !args.no_hooks {
        let hooks = &session.config().hooks.post_create;
        if let Err(e) = crate::session::run_hooks("post-create", hooks, &path, &env, json) {
            return Err(e.context(format!(
                "the worktree for {branch:?} is set up, but a hook failed\n  hint: fix it and run the hook again in {}, or `pwt rm {branch}`",
                path.display()
            )));
        }
    }

    let info = session.lease_info(&lease, false);
    let files: Vec<String> = lease.files.keys().cloned().collect();
    if json {
        print_json(&info.to_json());
    } else {
        info.print_summary(Style::stdout(), cwd, &files, "created");
    }

    if let Some(program) = args.exec {
        if std::io::stdout().is_terminal() {
            // Terminal title: the branch, as the seed workflow's post-switch hook does.
            print!("\x1b]0;{}\x07", printable(branch));
        }
        return exec(&program, &args.args, &path, &env);
    }
    Ok(exit_codes::OK)
}

/// Replaces pwt with `program` in `dir` with `env` added.
pub fn exec(
    program: &str,
    args: &[String],
    dir: &Path,
    env: &pwt_core::Environment,
) -> Result<i32> {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    let _ = std::io::stdout().flush();
    let err = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter())
        .exec();
    bail!("cannot run {program:?}: {err}\n  hint: is it installed and on PATH?")
}
