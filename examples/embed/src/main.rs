//! Embedding pwt: give a branch its own worktree environment, list it, remove it — through
//! the `pwt` engine alone (no `pwt` binary, no command line parsing of pwt's).
//!
//! ```sh
//! cargo run -p pwt-example-embed -- /path/to/a/repository feature/embedded [--trust]
//! ```
//!
//! It opens the repository as the `pwt` binary does, with the engine's own configuration
//! loading: the repository's committed pwt.toml, no user file, no variables. What that file
//! would run (hooks, processes, an `[env]`) is the repository's, not this program's: the
//! engine refuses it unless it was approved on this machine (`pwt trust`), or this program
//! says to trust it (`--trust`). The state directory is a fresh one under the system's temp
//! directory, so the example never touches a real registry.

use std::path::Path;

use pwt::{
    Approvals, BranchName, ConfigSources, CreateRequest, Event, LoadedConfig, Options, Project,
    Removal, RemoveRequest,
};

/// Sets up `branch` in the repository at `repo`, lists the worktrees, removes it again.
/// Returns what it printed, for the tests below.
fn run(
    repo: &Path,
    state_dir: &Path,
    branch: &str,
    trust: bool,
) -> Result<Vec<String>, pwt::Error> {
    let mut out = Vec::new();
    let loaded = LoadedConfig::load(&ConfigSources {
        roots: pwt::config_roots(repo)?,
        ..ConfigSources::default()
    })?;
    let mut options = Options::loaded(state_dir, loaded);
    if trust {
        options.approvals = Approvals::Trust;
    }
    let project = Project::open(repo, options)?;
    // Progress and warnings come as events; this embedder collects them as lines.
    let mut events: Vec<String> = Vec::new();
    let mut reporter = |e: Event| events.push(format!("{e:?}"));

    let set_up = project.create(
        &CreateRequest {
            branch: BranchName::parse(branch)?,
            base: None,
            path: None,
            hooks: true,
            keep_on_failure: false,
        },
        &mut reporter,
    )?;
    out.push(format!(
        "created {} at {} with ports {:?}",
        set_up.lease.branch,
        set_up.lease.path.display(),
        set_up.lease.ports
    ));
    out.push(format!(
        "PWT_URL={}",
        set_up.env.get("PWT_URL").unwrap_or_default()
    ));

    for w in project.list(false)? {
        out.push(format!(
            "{:<10} {:<20} {}",
            w.state,
            w.branch,
            w.path.display()
        ));
    }

    let removed = project.remove(
        &RemoveRequest {
            target: branch.into(),
            hooks: true,
            delete_branch: true,
            ..RemoveRequest::default()
        },
        &mut reporter,
    )?;
    match removed {
        Removal::Removed(r) => {
            let what: Vec<String> = r.removed.iter().map(ToString::to_string).collect();
            out.push(format!("removed {} ({})", r.branch, what.join(", ")));
        }
        Removal::Nothing(why) => out.push(format!("nothing to remove: {why}")),
    }
    out.extend(events.into_iter().map(|e| format!("event: {e}")));
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trust = args.iter().any(|a| a == "--trust");
    let rest: Vec<&String> = args.iter().filter(|a| *a != "--trust").collect();
    let (repo, branch) = match rest.as_slice() {
        [repo, branch] => ((*repo).clone(), (*branch).clone()),
        _ => {
            eprintln!("usage: pwt-embed REPOSITORY BRANCH [--trust]");
            return std::process::ExitCode::from(2);
        }
    };
    let state = std::env::temp_dir().join(format!("pwt-embed-{}", std::process::id()));
    let result = run(Path::new(&repo), &state, &branch, trust);
    let _ = std::fs::remove_dir_all(&state);
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The whole story: message, causes, what a rollback did, the hint.
            eprintln!("error: {}", e.report());
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A repository whose committed pwt.toml has a post-create hook.
    fn repo(dir: &Path) -> PathBuf {
        let repo = dir.join("demo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .status()
                .expect("git")
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README"), "hi\n").expect("write");
        std::fs::write(repo.join(".gitignore"), "hook-ran\n").expect("write");
        std::fs::write(
            repo.join("pwt.toml"),
            "[hooks]\npost-create = [\"touch hook-ran\"]\n",
        )
        .expect("write");
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "init"]);
        std::fs::canonicalize(&repo).expect("canonical")
    }

    #[test]
    fn a_repositorys_unapproved_hook_never_runs_whatever_the_embedder_forgets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo(dir.path());
        // This embedder never thinks of approvals: the engine refuses, and made nothing.
        let e =
            super::run(&repo, &dir.path().join("state"), "feature/x", false).expect_err("refused");
        assert_eq!(e.kind(), pwt::ErrorKind::Unapproved, "{}", e.report());
        assert!(e.to_string().contains("touch hook-ran"), "{e}");
        assert!(!dir.path().join("demo.feature-x").exists());
    }

    #[test]
    fn creates_lists_and_removes_through_the_engine_once_told_to_trust() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = repo(dir.path());
        let lines =
            super::run(&repo, &dir.path().join("state"), "feature/embedded", true).expect("run");
        let text = lines.join("\n");
        assert!(text.contains("created feature/embedded"), "{text}");
        assert!(
            text.contains("http://feature-embedded.localhost:8080"),
            "{text}"
        );
        assert!(text.contains("ready      feature/embedded"), "{text}");
        assert!(text.contains("Hook"), "the hook ran: {text}");
        assert!(
            text.contains("removed feature/embedded (the worktree)"),
            "{text}"
        );
        assert!(!dir.path().join("demo.feature-embedded").exists());
    }
}
