//! Embedding pwt: give a branch its own worktree environment, list it, remove it — through
//! the `pwt` library alone (no `pwt` binary, no command line parsing of pwt's).
//!
//! ```sh
//! cargo run -p pwt-example-embed -- /path/to/a/repository feature/embedded
//! ```
//!
//! The state directory is a fresh one under the system's temp directory, so the example
//! never touches a real registry; the configuration is the built-in default (one port, env
//! files, no services), built in code as any embedder would.

use std::path::Path;

use pwt::{BranchName, Config, CreateRequest, Event, Options, Project, Removal, RemoveRequest};

/// Sets up `branch` in the repository at `repo`, lists the worktrees, removes it again.
/// Returns what it printed, for the test below.
fn run(repo: &Path, state_dir: &Path, branch: &str) -> Result<Vec<String>, pwt::Error> {
    let mut out = Vec::new();
    let project = Project::open(repo, Options::new(state_dir, Config::default()))?;
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
            target: branch.to_owned(),
            hooks: true,
            delete_branch: true,
            ..RemoveRequest::default()
        },
        &mut reporter,
    )?;
    match removed {
        Removal::Removed(r) => out.push(format!("removed {} ({})", r.branch, r.removed.join(", "))),
        Removal::Nothing(why) => out.push(format!("nothing to remove: {why}")),
    }
    out.extend(events.into_iter().map(|e| format!("event: {e}")));
    Ok(out)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (repo, branch) = match args.as_slice() {
        [repo, branch] => (repo.clone(), branch.clone()),
        _ => {
            eprintln!("usage: pwt-embed REPOSITORY BRANCH");
            return std::process::ExitCode::from(2);
        }
    };
    let state = std::env::temp_dir().join(format!("pwt-embed-{}", std::process::id()));
    let result = run(Path::new(&repo), &state, &branch);
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
    use std::process::Command;

    #[test]
    fn creates_lists_and_removes_through_the_library() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("demo");
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
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "init"]);
        let repo = std::fs::canonicalize(&repo).expect("canonical");
        let lines = super::run(&repo, &dir.path().join("state"), "feature/embedded").expect("run");
        let text = lines.join("\n");
        assert!(text.contains("created feature/embedded"), "{text}");
        assert!(
            text.contains("http://feature-embedded.localhost:8080"),
            "{text}"
        );
        assert!(text.contains("ready      feature/embedded"), "{text}");
        assert!(
            text.contains("removed feature/embedded (the worktree)"),
            "{text}"
        );
        assert!(!dir.path().join("demo.feature-embedded").exists());
    }
}
