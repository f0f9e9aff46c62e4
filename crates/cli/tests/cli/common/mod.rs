//! A sandbox per test: its own HOME, XDG dirs, git config, state directory and repository,
//! so tests run in parallel without seeing each other or the developer's setup.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct TestEnv {
    pub sandbox: pwt_tests::Sandbox,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn fails(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            sandbox: pwt_tests::Sandbox::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.sandbox.root()
    }

    pub fn home(&self) -> PathBuf {
        self.sandbox.home()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.sandbox.state_dir()
    }

    pub fn registry(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir().join("registry.json"))
            .expect("registry exists");
        serde_json::from_str(&text).expect("registry parses")
    }

    /// Applies the sandbox environment to a command.
    pub fn sandbox(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.home().join(".config"))
            .env("XDG_STATE_HOME", self.home().join(".local/state"))
            .env("GIT_CONFIG_GLOBAL", self.home().join(".gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PWT_STATE_DIR", self.state_dir())
            .env("PWT_MACHINE_DIR", self.root().join("machine"))
            .env("NO_COLOR", "1")
            // Automation's setting: the repositories' hooks run without asking (the trust
            // tests take it away).
            .env("PWT_TRUST_HOOKS", "1")
            .stdin(Stdio::null());
        // The Docker engine the tests use (.ci/run starts one of its own).
        if let Some(host) = std::env::var_os("DOCKER_HOST") {
            cmd.env("DOCKER_HOST", host);
        }
    }

    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        self.sandbox.git(dir, args)
    }

    /// A repository named `name` with one commit and optionally a pwt.toml.
    pub fn repo(&self, name: &str, pwt_toml: Option<&str>) -> PathBuf {
        self.sandbox.repo(name, pwt_toml)
    }

    pub fn cmd(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pwt"));
        self.sandbox(&mut cmd);
        cmd.current_dir(dir).args(args);
        cmd
    }

    pub fn pwt(&self, dir: &Path, args: &[&str]) -> Run {
        self.cmd(dir, args).output().expect("pwt runs").into()
    }
}

/// A third-party tool a test needs: under CI, one that is missing fails the test (.ci/run
/// installs it); elsewhere the test is skipped, saying why.
pub fn installed<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("CI").is_some() => panic!("{why}: .ci/run installs it"),
        Err(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

/// The Python that has `module` (`.ci/run` installs them into the Django venv;
/// `PWT_TEST_PYTHON` names another), or why not.
pub fn test_python(module: &str) -> Result<PathBuf, String> {
    let python = std::env::var_os("PWT_TEST_PYTHON").map_or_else(
        || {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/pwt-ci/django/bin/python")
        },
        PathBuf::from,
    );
    match Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
    {
        Ok(o) if o.status.success() => Ok(python),
        _ => Err(format!("{} has no {module}", python.display())),
    }
}

/// The seed workflow's two ports, in a range of its own.
pub fn seed_toml(range: (u16, u16)) -> String {
    format!(
        "[ports]\nrange = [{}, {}]\n[ports.services]\nfrontend = {{ env = \"FRONTEND_PORT\", main = 3000 }}\nbackend = {{ env = \"BACKEND_PORT\", main = 5000 }}\n",
        range.0, range.1
    )
}

/// Ports of a worktree from `pwt new/up --format json`.
pub fn ports(v: &serde_json::Value) -> Vec<u16> {
    v["ports"]
        .as_object()
        .expect("ports object")
        .values()
        .map(|p| u16::try_from(p["port"].as_u64().expect("port")).expect("u16"))
        .collect()
}

pub use pwt_tests::{dotenv, services_toml};
