//! `pwt new`

use std::ffi::{OsStr, OsString};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use pwt_alloc::Lease;
use pwt_core::BranchName;

use crate::exit_codes;
use crate::git::{git, git_worktree};
use crate::lease_ops::Mode;
use crate::output::{Format, Style, note, print_json, printable};
use crate::services::{Services, Step, first_error, provision, rollback, with_progress};
use crate::session::Session;

/// Create a worktree with its own ports, env files and services
///
/// In order: the branch (if missing), `git worktree add`, ports, the database / vhost /
/// Redis slot (when configured, all at once and alongside the checkout), env files,
/// post-create hooks.
///
/// The branch is created from --base (default: the current HEAD) unless it exists. The
/// worktree goes to `worktree.path` (default `../<repo>.<slug>`) unless --path is given. If
/// any step fails, everything this run made is rolled back. With -x, PROGRAM then runs
/// inside the worktree with its environment, replacing pwt:
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

/// The `git worktree add` command line: `-b BRANCH PATH [BASE]` for a new branch, or `PATH
/// BRANCH` to check out an existing one (local, or git's tracking checkout of a remote one).
fn add_args(
    branch: &str,
    path: &Path,
    base: Option<&str>,
    checkout_existing: bool,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["worktree".into(), "add".into(), "--quiet".into()];
    if !checkout_existing {
        a.extend(["-b".into(), branch.into()]);
    }
    a.extend(["--".into(), path.as_os_str().to_owned()]);
    match (base, checkout_existing) {
        (_, true) => a.push(branch.into()),
        (Some(base), false) => a.push(base.into()),
        (None, false) => {}
    }
    a
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
            crate::output::sh(&w.root.display().to_string())
        );
    }
    let branch_exists = session.repo.branch_exists(branch);
    // Like `git worktree add PATH BRANCH`: a branch that exists in exactly one remote is
    // checked out from there, tracking it, instead of a new branch from HEAD.
    let from_remote = !branch_exists
        && args.base.is_none()
        && session.repo.remotes_with_branch(branch).len() == 1;
    if branch_exists && args.base.is_some() {
        bail!(
            "branch {branch:?} already exists, so --base has nothing to do\n  hint: drop --base, or pick a new branch name"
        );
    }
    let (services, rt, redis_plan) = Services::prepare(&session)?;

    let (lease, _) = session.lease(branch, Mode::New, redis_plan, |slug| {
        session.worktree_path(args.path.as_deref(), branch, slug.as_str())
    })?;
    let path = lease.path.clone();
    crate::session::pause_at("after-lease");

    // `git worktree add` on a thread of its own, the services on this one: all at once.
    if !json {
        note(&format!("creating worktree {} ...", path.display()));
    }
    let git_args = add_args(
        branch,
        &path,
        args.base.as_deref(),
        branch_exists || from_remote,
    );
    let (registry, repo_key) = (session.registry.clone(), session.repo.key());
    let (git_result, steps) = std::thread::scope(|scope| {
        let git_thread = scope.spawn(|| {
            let a: Vec<&OsStr> = git_args.iter().map(OsString::as_os_str).collect();
            git_worktree(&registry, &repo_key, cwd, &a)
        });
        let steps = match &rt {
            Some(rt) => rt.block_on(with_progress(
                vec!["setting up the worktree and its services".into()],
                json,
                provision(&services, &lease),
            )),
            None => Vec::new(),
        };
        let git_result = git_thread
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the git thread panicked")));
        (git_result, steps)
    });

    crate::session::pause_at("after-checkout");
    let finish = || -> Result<_> {
        if let Some((_, e)) = first_error(&steps) {
            bail!("{e}");
        }
        git_result.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let env = session.lease_env(&lease)?;
        let hashes =
            session.write_env_files(&path, lease.slug.as_str(), &env, &lease.files, false)?;
        let lease = session.mark_ready(branch, hashes)?;
        Ok((env, lease))
    };
    let (env, lease) = match finish() {
        Ok(v) => v,
        Err(e) => {
            return Err(undo(
                &session,
                &services,
                rt.as_ref(),
                &lease,
                &steps,
                git_result.is_ok(),
                branch_exists,
                cwd,
                e,
            ));
        }
    };

    if !args.no_hooks {
        let hooks = &session.config().hooks.post_create;
        if let Err(e) = crate::hooks::run_hooks("post-create", hooks, &path, &env, json) {
            return Err(e.context(format!(
                "the worktree for {branch:?} is set up, but a hook failed\n  hint: fix it and run the hook again in {}, or `pwt rm {q}`",
                path.display(),
                q = crate::output::sh(branch)
            )));
        }
    }

    let info = session.lease_info(&lease, false);
    let files: Vec<String> = lease.files.keys().cloned().collect();
    if json {
        print_json(&info.to_json());
    } else {
        let style = Style::stdout();
        info.print_summary(style, cwd, &files, "created");
        if args.exec.is_none() {
            println!(
                "  {}",
                style.dim(&format!(
                    "next: cd {} · or `pwt run {b} -- <command>` · `pwt rm {b}` when done",
                    crate::paths::display_path(&path, cwd),
                    // The slug, never the raw branch: a suggestion people paste into a shell
                    // must not carry `$(…)` from a branch name.
                    b = lease.slug
                ))
            );
        }
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

/// Rolls back what this run made (resources it created, the worktree, the branch if new, the
/// lease) and returns the error, saying what was undone and what could not be.
#[allow(clippy::too_many_arguments)]
fn undo(
    session: &Session,
    services: &Services,
    rt: Option<&tokio::runtime::Runtime>,
    lease: &Lease,
    steps: &[Step],
    worktree_made: bool,
    branch_existed: bool,
    cwd: &Path,
    cause: anyhow::Error,
) -> anyhow::Error {
    let branch = lease.branch.as_str();
    let mut stuck = match rt {
        Some(rt) => rt.block_on(rollback(services, lease, steps)),
        None => Vec::new(),
    };
    if worktree_made {
        let args = [
            OsStr::new("worktree"),
            OsStr::new("remove"),
            OsStr::new("--force"),
            lease.path.as_os_str(),
        ];
        if session.git_worktree(cwd, &args).is_err() {
            stuck.push(format!("worktree {}", lease.path.display()));
        }
        if !branch_existed {
            let _ = git(
                cwd,
                &[
                    OsStr::new("branch"),
                    OsStr::new("--quiet"),
                    OsStr::new("-D"),
                    OsStr::new(branch),
                ],
            );
        }
    }
    let undone: Vec<String> = steps
        .iter()
        .filter(|s| matches!(s.result, Ok(pwt_provision::Outcome::Created)))
        .map(|s| s.what.clone())
        .collect();
    // A refusal (exit 3) stays one after the rollback.
    let code = cause
        .downcast_ref::<crate::exit_codes::ExitError>()
        .map_or(crate::exit_codes::FAILURE, |e| e.code);
    let mut msg = format!("cannot set up the worktree for {branch:?}: {cause:#}");
    if stuck.is_empty() {
        let _ = session.release(&lease.repo, branch);
        if undone.is_empty() && !worktree_made {
            msg.push_str("\n  nothing was left behind");
        } else {
            let mut all = undone;
            if worktree_made {
                all.push("the worktree".into());
            }
            msg.push_str(&format!("\n  rolled back: {}", all.join(", ")));
        }
    } else {
        let _ = session.mark_removing(branch, vec!["rollback".into()]);
        msg.push_str(&format!(
            "\n  could not roll back: {}\n  hint: `pwt rm {q}` finishes the cleanup once the service is back",
            stuck.join("; "),
            q = crate::output::sh(branch)
        ));
    }
    crate::exit_codes::ExitError { code, message: msg }.into()
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
