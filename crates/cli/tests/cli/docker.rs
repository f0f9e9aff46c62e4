//! Against a real Docker engine (dockerd from Debian's docker.io, Compose v1, the images
//! `.ci/docker-images` builds from a Debian root): `pwt infra` beside the native services,
//! a worktree's app as a Compose project of its own on the shared network, reading only
//! `.env.docker`, and everything of it gone after `pwt rm` and `pwt gc`.
//!
//! Under CI a missing engine fails these tests (.ci/run starts one); elsewhere they skip.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Run, TestEnv, installed};

/// The images `.ci/docker-images` makes: stand-ins for the official ones.
const IMAGES: [&str; 4] = [
    "pwt-ci/postgres",
    "pwt-ci/rabbitmq",
    "pwt-ci/redis",
    "pwt-ci/debian:bookworm",
];

/// `docker ARGS`, its stdout; panics with Docker's words when it fails.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn engine() -> Result<(), String> {
    let info = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    if !info.status.success() {
        return Err(
            "no Docker engine answers (start one: `eval \"$(.ci/docker-engine start)\"`)".into(),
        );
    }
    for image in IMAGES {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(format!(
                "image {image} is missing (`.ci/docker-images` builds it)"
            ));
        }
    }
    if !Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Err("docker-compose is missing".into());
    }
    Ok(())
}

/// A scratch infra: its own Compose project, network and ports.
struct Infra {
    project: String,
    network: String,
    pg: u16,
    amqp: u16,
    mgmt: u16,
    redis: u16,
}

impl Infra {
    fn new(tag: &str) -> Self {
        let id = pwt_tests::unique(tag).replace('_', "-");
        Self {
            project: id.clone(),
            network: format!("{id}-net"),
            pg: pwt_tests::free_port(),
            amqp: pwt_tests::free_port(),
            mgmt: pwt_tests::free_port(),
            redis: pwt_tests::free_port(),
        }
    }

    fn toml(&self, project: &str, range: (u16, u16)) -> String {
        format!(
            r#"project = "{project}"
[ports]
range = [{lo}, {hi}]
[ports.services]
web = {{ env = "WEB_PORT", main = 8000 }}
[postgres]
url = "postgres://postgres@127.0.0.1:{pg}/postgres"
[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:{amqp}"
management_url = "http://127.0.0.1:{mgmt}"
vhost = "/{{{{ project }}}}/{{{{ slug }}}}"
[redis]
url = "redis://127.0.0.1:{redis}"
[infra]
project = "{ip}"
network = "{net}"
postgres_image = "pwt-ci/postgres"
rabbitmq_image = "pwt-ci/rabbitmq"
redis_image = "pwt-ci/redis"
[docker]
"#,
            lo = range.0,
            hi = range.1,
            pg = self.pg,
            amqp = self.amqp,
            mgmt = self.mgmt,
            redis = self.redis,
            ip = self.project,
            net = self.network,
        )
    }

    /// Containers of its Compose project.
    fn containers(&self) -> Vec<String> {
        docker(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        let ids = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ]);
        for id in ids.lines() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        for v in ["pgdata", "rabbitmq"] {
            let _ = Command::new("docker")
                .args(["volume", "rm", &format!("{}_{v}", self.project)])
                .output();
        }
    }
}

/// The app of a worktree, in the seed's shape: a Compose project of its own, on the shared
/// network, reading `.env.docker`, publishing its port on the worktree's.
const APP_COMPOSE: &str = "services:
  web:
    image: pwt-ci/debian:bookworm
    command: [\"sleep\", \"600\"]
    env_file: .env.docker
    ports:
      - \"127.0.0.1:${WEB_PORT}:8000\"
networks:
  default:
    name: ${PWT_NETWORK}
    external: true
";

/// `docker-compose --env-file .env.worktree ARGS` in `dir` (v1 takes the project's name
/// from `COMPOSE_PROJECT_NAME` there).
fn compose(t: &TestEnv, dir: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("docker-compose");
    t.sandbox(&mut c);
    c.current_dir(dir)
        .args(["--env-file", ".env.worktree"])
        .args(args)
        .output()
        .expect("docker-compose runs")
        .into()
}

/// A container's environment, from `env -0` inside it.
fn container_env(name: &str) -> BTreeMap<String, String> {
    docker(&["exec", name, "env", "-0"])
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What a container reads as pwt means it: the worktree's environment, with the URLs the
/// containers use under the names the app reads.
fn meant_in_a_container(env: &Value) -> BTreeMap<String, String> {
    let env = env.as_object().expect("object");
    env.iter()
        .map(|(k, v)| {
            let v = match env.get(&format!("CONTAINER_{k}")) {
                Some(c) => c,
                None => v,
            };
            (k.clone(), v.as_str().expect("string").to_owned())
        })
        .collect()
}

#[test]
fn infra_beside_native_services_and_a_worktrees_app_in_compose() {
    if installed(engine()).is_none() || !pwt_tests::all_services_up() {
        return;
    }
    let t = TestEnv::new();
    let infra = Infra::new("dki");
    let project = pwt_tests::unique("dk");
    // On the native services' ports, nothing starts: the holder and the setting are named.
    let native = t.repo(
        "native",
        Some(
            &infra
                .toml(&project, (28400, 28449))
                .replace(&format!(":{}/postgres", infra.pg), ":5432/postgres"),
        ),
    );
    let refused = t.pwt(&native, &["infra", "up"]).fails(3);
    assert!(
        refused.stderr.contains("port 5432")
            && refused.stderr.contains("postgres.url")
            && refused.stderr.contains("nothing was started"),
        "{}",
        refused.stderr
    );
    assert!(infra.containers().is_empty(), "{:?}", infra.containers());
    // On ports of their own: up means each answers, and a worktree can be made at once.
    let repo = t.repo("shop", Some(&infra.toml(&project, (28400, 28449))));
    std::fs::write(repo.join("compose.yaml"), APP_COMPOSE).expect("compose file");
    t.git(&repo, &["add", "compose.yaml"]);
    t.git(&repo, &["commit", "-q", "-m", "app"]);
    let up = t.pwt(&repo, &["infra", "up"]).ok();
    let status = t.pwt(&repo, &["infra", "status", "--format", "json"]).ok();
    for s in status.json()["services"].as_array().expect("services") {
        assert_eq!(s["answers"], true, "{s}");
        assert_eq!(s["runs_in"]["kind"], "compose", "{s}");
        assert_eq!(s["runs_in"]["project"], infra.project.as_str(), "{s}");
    }
    for service in ["postgres", "rabbitmq", "redis"] {
        assert!(
            up.stderr.contains(&format!("{service} answers on")),
            "{}",
            up.stderr
        );
    }
    // The shared services' port proxies (and any other's), before the app's is added.
    let proxies = docker_proxies();
    let made = t
        .pwt(&repo, &["new", "feat/a", "--format", "json"])
        .ok()
        .json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    compose(&t, &dir, &["up", "-d"]).ok();
    // The container reads what pwt means, byte for byte, and reaches the services by name.
    let env = t
        .pwt(&repo, &["env", "feat/a", "--format", "json"])
        .ok()
        .json();
    let compose_project = env["COMPOSE_PROJECT_NAME"].as_str().expect("project");
    let name = docker(&[
        "ps",
        "--filter",
        &format!("label=com.docker.compose.project={compose_project}"),
        "--format",
        "{{.Names}}",
    ])
    .trim()
    .to_owned();
    assert!(!name.is_empty(), "the app's container runs");
    let inside = container_env(&name);
    for (k, want) in meant_in_a_container(&env) {
        assert_eq!(inside.get(&k), Some(&want), "{k} in the container");
    }
    assert!(
        inside["DATABASE_URL"].contains("@postgres:5432/"),
        "{inside:?}"
    );
    assert_eq!(inside["PWT_NETWORK"], infra.network);
    docker(&[
        "exec", &name, "getent", "hosts", "postgres", "rabbitmq", "redis",
    ]);
    // pwt list shows it.
    let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    let row = list
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["branch"] == "feat/a")
        .expect("row");
    assert_eq!(row["containers"][0]["service"], "web", "{row}");
    assert_eq!(row["containers"][0]["state"], "running", "{row}");
    // pwt rm takes the app down first (its port proxy with it) and leaves the others' be.
    let rm = t.pwt(&repo, &["rm", "feat/a"]).ok();
    assert!(rm.stdout.contains("container"), "{}", rm.stdout);
    assert!(
        docker(&["ps", "-a", "--format", "{{.Names}}"])
            .lines()
            .all(|n| n != name),
        "the app's container outlived pwt rm"
    );
    assert_eq!(docker_proxies(), proxies, "a docker-proxy was stopped");
    // A container started by hand with a worktree's env file is the worktree's: `pwt rm`
    // takes it down too (by the marker in its environment).
    let run_with = |env_file: &Path| {
        docker(&[
            "run",
            "-d",
            "--env-file",
            &env_file.display().to_string(),
            "pwt-ci/debian:bookworm",
            "sleep",
            "600",
        ])
        .trim()
        .to_owned()
    };
    let exists = |id: &str| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .expect("docker")
            .status
            .success()
    };
    let made = t.pwt(&repo, &["new", "b", "--format", "json"]).ok().json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    let by_hand = run_with(&dir.join(".env.docker"));
    t.pwt(&repo, &["rm", "b"]).ok();
    assert!(!exists(&by_hand), "pwt rm left the worktree's container");
    // One started with the env file of a worktree that is gone (no lease): gc finds it.
    let made = t.pwt(&repo, &["new", "c", "--format", "json"]).ok().json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    let saved = t.root().join("c.env.docker");
    std::fs::copy(dir.join(".env.docker"), &saved).expect("copy");
    t.pwt(&repo, &["rm", "c"]).ok();
    let stray = run_with(&saved);
    let found = t.pwt(&repo, &["gc", "--dry-run"]).ok();
    assert!(
        found.stdout.contains("of a worktree that is gone"),
        "{}",
        found.stdout
    );
    t.pwt(&repo, &["gc", "--yes"]).ok();
    assert!(!exists(&stray), "gc left the stray container");
    // A worktree deleted by hand while such a container runs: one gc takes both.
    let made = t.pwt(&repo, &["new", "d", "--format", "json"]).ok().json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    let orphan = run_with(&dir.join(".env.docker"));
    std::fs::remove_dir_all(&dir).expect("rm -rf");
    t.git(&repo, &["worktree", "prune"]);
    t.pwt(&repo, &["gc", "--yes"]).ok();
    assert!(!exists(&orphan), "the first gc left the container");
    // A port a container publishes is never leased, even while it does not run.
    let small = t.repo(
        "small",
        Some(&infra.toml(&pwt_tests::unique("dks"), (28450, 28451))),
    );
    docker(&[
        "create",
        "-p",
        "127.0.0.1:28450:80",
        "--label",
        "pwt-test=1",
        "pwt-ci/debian:bookworm",
    ]);
    let got = t.pwt(&small, &["new", "x", "--format", "json"]).ok().json();
    assert_eq!(got["ports"]["web"]["port"], 28451, "{got}");
    for id in docker(&["ps", "-aq", "--filter", "label=pwt-test=1"]).lines() {
        docker(&["rm", "-f", id]);
    }
    t.pwt(&small, &["rm", "x"]).ok();
    t.pwt(&repo, &["infra", "down", "--volumes"]).ok();
    assert!(infra.containers().is_empty());
}

/// The pids of Docker's port proxies.
fn docker_proxies() -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "docker-proxy")
        })
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn a_failed_infra_up_takes_down_what_it_started_and_names_the_one_still_starting() {
    if installed(engine()).is_none() {
        return;
    }
    let t = TestEnv::new();
    let infra = Infra::new("dkf");
    // RabbitMQ takes seconds to answer: one second is too short.
    let toml = format!(
        "{}timeout = 1\n",
        infra
            .toml(&pwt_tests::unique("dkf"), (28460, 28469))
            .replace("[docker]\n", "")
    );
    let repo = t.repo("slow", Some(&toml));
    let failed = t.pwt(&repo, &["infra", "up"]).fails(1);
    assert!(
        failed.stderr.contains("still starting") && failed.stderr.contains("rabbitmq"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("taken down"), "{}", failed.stderr);
    assert!(infra.containers().is_empty(), "{:?}", infra.containers());
}

/// Ctrl-C while `pwt infra up` waits, as a terminal sends it (to pwt and the Compose it
/// runs): what the run started is taken down, and it exits 130.
#[test]
fn an_interrupted_infra_up_takes_down_what_it_started() {
    if installed(engine()).is_none() {
        return;
    }
    let t = TestEnv::new();
    let infra = Infra::new("dkc");
    let toml = infra
        .toml(&pwt_tests::unique("dkc"), (28470, 28479))
        .replace("[docker]\n", "");
    let repo = t.repo("interrupted", Some(&toml));
    let mut cmd = t.cmd(&repo, &["infra", "up"]);
    cmd.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("pwt starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while infra.containers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!infra.containers().is_empty(), "nothing started in 60 s");
    Command::new("kill")
        .args(["-INT", "--", &format!("-{}", child.id())])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("pwt ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("taken down"), "{stderr}");
    assert!(infra.containers().is_empty(), "{:?}", infra.containers());
    let volumes = docker(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=com.docker.compose.project={}", infra.project),
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(volumes.trim(), "", "the volumes this run made are left");
    let networks = docker(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !networks.lines().any(|n| n == infra.network),
        "the network this run made is left"
    );
}

/// A worktree's app with a named volume of its own and an external one it only mounts, its
/// container removed by hand: `pwt rm --volumes` still finds its own volume by Compose's
/// label, and never deletes the external one. A Compose project name the engine knows
/// already (a project run from elsewhere) is never given to a new worktree, so its volumes
/// are never that worktree's to delete.
#[test]
fn rm_volumes_deletes_the_worktrees_own_volumes_and_no_other() {
    if installed(engine()).is_none() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("dkv");
    let toml = format!(
        "project = \"{project}\"\n[ports]\nrange = [28480, 28489]\n[ports.services]\nweb = {{ env = \"WEB_PORT\", main = 8000 }}\n[docker]\n"
    );
    let repo = t.repo("vol", Some(&toml));
    let shared = format!("{project}-shared");
    let app = format!(
        "services:\n  web:\n    image: pwt-ci/debian:bookworm\n    command: [\"sleep\", \"600\"]\n    volumes: [\"data:/data\", \"shared:/shared\"]\nvolumes:\n  data: {{}}\n  shared:\n    external: true\n    name: {shared}\n"
    );
    std::fs::write(repo.join("compose.yaml"), app).expect("compose file");
    t.git(&repo, &["add", "compose.yaml"]);
    t.git(&repo, &["commit", "-q", "-m", "app"]);
    docker(&["volume", "create", &shared]);
    // Another directory's Compose project under the name the next worktree would get.
    let foreign = format!("{project}-w_data");
    docker(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={project}-w"),
        &foreign,
    ]);
    let volume_exists = |name: &str| {
        docker(&["volume", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == name)
    };
    let made = t.pwt(&repo, &["new", "v", "--format", "json"]).ok().json();
    let dir = PathBuf::from(made["path"].as_str().expect("path"));
    compose(&t, &dir, &["up", "-d"]).ok();
    let label = format!("label=com.docker.compose.project={project}-v");
    let volumes = || docker(&["volume", "ls", "--filter", &label, "--format", "{{.Name}}"]);
    assert_eq!(volumes().trim(), format!("{project}-v_data"));
    for id in docker(&["ps", "-aq", "--filter", &label]).lines() {
        docker(&["rm", "-f", id]);
    }
    let rm = t.pwt(&repo, &["rm", "v", "--volumes"]).ok();
    assert!(rm.stdout.contains("volume"), "{}", rm.stdout);
    assert_eq!(volumes().trim(), "", "the volume outlived pwt rm --volumes");
    assert!(
        volume_exists(&shared),
        "pwt rm --volumes deleted an external volume"
    );
    // The name the engine knows is not given out again.
    let env = t.pwt(&repo, &["new", "w", "--format", "json"]).ok().json();
    let named = t.pwt(&repo, &["env", "w", "--format", "json"]).ok().json()["COMPOSE_PROJECT_NAME"]
        .as_str()
        .expect("set")
        .to_owned();
    assert_ne!(named, format!("{project}-w"), "{env}");
    t.pwt(&repo, &["rm", "w", "--volumes"]).ok();
    assert!(
        volume_exists(&foreign),
        "pwt rm --volumes deleted another project's volume"
    );
    // A worktree made while the engine did not answer gets the plain name, which another
    // project's older volume carries: its `rm --volumes` leaves that volume alone.
    let older = format!("{project}-x_data");
    docker(&[
        "volume",
        "create",
        "--label",
        &format!("com.docker.compose.project={project}-x"),
        &older,
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let socket = t.root().join("down.sock");
    let made = within_a_minute(&t, &repo, &socket, &["new", "x"]).ok();
    assert!(made.stderr.contains("does not answer"), "{}", made.stderr);
    t.pwt(&repo, &["rm", "x", "--volumes"]).ok();
    assert!(
        volume_exists(&older),
        "pwt rm --volumes deleted an older project's volume"
    );
    for v in [&shared, &foreign, &older] {
        docker(&["volume", "rm", v]);
    }
}

/// `.env.docker` over the hostile corpus: `docker run --env-file` (the real engine) and
/// Compose v1's `env_file:` parser read every value as pwt means it, or pwt left it out and
/// said so; nothing is evaluated.
#[test]
fn the_containers_env_file_reads_the_same_in_docker_run_and_compose() {
    if installed(engine()).is_none() {
        return;
    }
    let t = TestEnv::new();
    if !pwt_tests::all_services_up() {
        return;
    }
    let project = pwt_tests::unique("dkr");
    let toml = format!(
        "project = \"{project}\"\n{}[postgres]\nurl = \"postgres://postgres:p%24ss@127.0.0.1:5432/postgres\"\n[docker]\n",
        crate::readers::hostile_env_toml()
    );
    let repo = t.repo("demo", Some(&toml));
    for branch in crate::readers::BRANCHES {
        let made = t.pwt(&repo, &["new", branch, "--format", "json"]).ok();
        let dir = PathBuf::from(made.json()["path"].as_str().expect("path"));
        let env = t
            .pwt(&repo, &["env", branch, "--format", "json"])
            .ok()
            .json();
        let meant = meant_in_a_container(&env);
        let file = dir.join(".env.docker");
        let text = std::fs::read_to_string(&file).expect("env file");
        let run: BTreeMap<String, String> = docker(&[
            "run",
            "--rm",
            "--env-file",
            &file.display().to_string(),
            "pwt-ci/debian:bookworm",
            "env",
            "-0",
        ])
        .split('\0')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let out = Command::new("/usr/bin/python3")
            .current_dir(&dir)
            .args([
                "-c",
                "import json; from compose.config.environment import env_vars_from_file; print(json.dumps(env_vars_from_file('.env.docker')))",
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let compose: BTreeMap<String, String> =
            serde_json::from_slice(&out.stdout).expect("compose's reading");
        for (reader, got) in [
            ("docker run --env-file", &run),
            ("compose env_file", &compose),
        ] {
            for (k, want) in &meant {
                match got.get(k) {
                    Some(v) => assert_eq!(v, want, "{reader} reads {k} as {v:?}:\n{text}"),
                    None => assert!(
                        made.stderr
                            .contains(&format!("{k} left out of .env.docker")),
                        "{k} = {want:?} is missing for {reader}, unannounced:\n{text}"
                    ),
                }
            }
        }
        assert!(
            !dir.join("pwned").exists(),
            "a reader ran a command from a value"
        );
        t.pwt(&repo, &["rm", branch, "--force"]).ok();
    }
}

/// `pwt ARGS` in `repo` with DOCKER_HOST at `socket`, killed if it runs past a minute (a
/// hang, which is the bug this guards against), its result.
fn within_a_minute(t: &TestEnv, repo: &Path, socket: &Path, args: &[&str]) -> Run {
    let mut child = t
        .cmd(repo, args)
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pwt runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("pwt {args:?} hung on a Docker engine that never answers");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("output").into()
}

#[test]
fn a_docker_engine_that_never_answers_never_hangs_pwt() {
    let Some(()) = installed(
        Command::new("docker")
            .arg("--version")
            .output()
            .map(|_| ())
            .map_err(|_| "the docker CLI is not installed".to_owned()),
    ) else {
        return;
    };
    let t = TestEnv::new();
    // A socket that accepts connections and never says a word (a hung dockerd).
    let socket = t.root().join("hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let repo = t.repo("demo", Some("[ports]\nrange = [27780, 27799]\n[docker]\n"));
    // Setting up and listing work without the engine (no containers to see), saying that
    // the ports its containers publish could not be kept out.
    let made = within_a_minute(&t, &repo, &socket, &["new", "feat"]).ok();
    assert!(
        made.stderr
            .contains("the Docker engine does not answer: ports"),
        "{}",
        made.stderr
    );
    within_a_minute(&t, &repo, &socket, &["list"]).ok();
    // Removing refuses, naming Docker, and touches nothing.
    let rm = within_a_minute(&t, &repo, &socket, &["rm", "feat"]).fails(1);
    assert!(
        rm.stderr.contains("Docker engine does not answer"),
        "{}",
        rm.stderr
    );
    assert!(repo.with_file_name("demo.feat").exists());
    // pwt infra says so too.
    let up = within_a_minute(&t, &repo, &socket, &["infra", "up"]);
    assert_ne!(up.code, 0);
    assert!(up.stderr.contains("Docker"), "{}", up.stderr);
}
