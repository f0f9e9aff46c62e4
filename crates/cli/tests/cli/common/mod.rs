//! A sandbox per test: its own HOME, XDG dirs, git config, state directory and repository,
//! so tests run in parallel without seeing each other or the developer's setup.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct TestEnv {
    pub tmp: tempfile::TempDir,
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
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = TestEnv { tmp };
        std::fs::create_dir_all(t.home()).expect("home");
        std::fs::write(
            t.home().join(".gitconfig"),
            "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n",
        )
        .expect("gitconfig");
        t
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root().join("state")
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
        let mut cmd = Command::new("git");
        self.sandbox(&mut cmd);
        let out = cmd.current_dir(dir).args(args).output().expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A repository named `name` with one commit and optionally a pwt.toml.
    pub fn repo(&self, name: &str, pwt_toml: Option<&str>) -> PathBuf {
        let dir = self.root().join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        self.git(&dir, &["init", "-q"]);
        std::fs::write(dir.join("README"), "hello\n").expect("write");
        if let Some(t) = pwt_toml {
            std::fs::write(dir.join("pwt.toml"), t).expect("write");
        }
        self.git(&dir, &["add", "."]);
        self.git(&dir, &["commit", "-q", "-m", "init"]);
        std::fs::canonicalize(dir).expect("canonical")
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

/// Parses `KEY='value'` lines.
pub fn dotenv(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("has =");
            (
                k.to_owned(),
                v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
            )
        })
        .collect()
}

/// A pwt.toml with all three services on this machine's servers, names unique to `project`
/// so parallel tests never share a database, vhost or prefix.
pub fn services_toml(project: &str, redis_mode: &str) -> String {
    format!(
        r#"project = "{project}"
[ports]
range = [27000, 28999]
[ports.services]
frontend = {{ env = "FRONTEND_PORT", main = 3000 }}
backend = {{ env = "BACKEND_PORT", main = 5000 }}
[postgres]
url = "{pg}"
database = "{{{{ project }}}}_{{{{ slug | db_ident }}}}"
main_database = "{project}_main"
[rabbitmq]
url = "{amqp}"
management_url = "{mgmt}"
vhost = "/{{{{ project }}}}/{{{{ slug }}}}"
[redis]
url = "{redis}"
mode = "{redis_mode}"
prefix = "{{{{ project }}}}:{{{{ slug }}}}:"
"#,
        pg = pwt_tests::POSTGRES_URL,
        amqp = pwt_tests::AMQP_URL,
        mgmt = pwt_tests::MANAGEMENT_URL,
        redis = pwt_tests::REDIS_URL,
    )
}
