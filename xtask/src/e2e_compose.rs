//! `cargo xtask e2e --compose`: the seed-003 shape on a real Docker engine. `pwt infra up`
//! runs the shared PostgreSQL, RabbitMQ and Redis in Compose beside the native ones (ports of
//! its own); three worktrees are made at once, each running its app as a Compose project of
//! its own on the shared network, built from the README's Compose recipe as written and
//! reading only `.env.docker`; the seed's isolation checks run against the containers; then
//! `pwt rm` of each leaves nothing: no container, network, volume, database, vhost, key or
//! port of theirs.

// Worktree `i` is `BRANCHES[i]` and `envs[i]`: indexes read best here.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail, ensure};

use crate::e2e::{Ctx, build, http, json_field, ok, wait_port};
use crate::plain::free_port;
use crate::util::scratch;

const BRANCHES: [&str; 3] = [
    "feature-notifications",
    "feature-dashboard",
    "feature/user-profile",
];

/// The README's Compose recipe for the app layer, exactly as written there.
fn readme_compose() -> Result<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```yaml\n# compose.yaml: the app of each worktree")
        .context(
            "the README's Compose recipe (```yaml # compose.yaml: the app of each worktree)",
        )?;
    let body = &readme[start + "```yaml\n".len()..];
    let end = body
        .find("```")
        .context("the end of the README's Compose recipe")?;
    Ok(body[..end].to_owned())
}

/// `docker ARGS` with its output, failing with Docker's words.
fn docker(args: &[&str]) -> Result<String> {
    crate::util::output("docker", args)
}

pub fn run() -> Result<()> {
    ensure!(
        Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "no Docker engine answers: start one (`eval \"$(.ci/docker-engine start)\"`, then `.ci/docker-images`)"
    );
    for image in [
        "pwt-ci/postgres",
        "pwt-ci/rabbitmq",
        "pwt-ci/redis",
        "pwt-ci/debian:bookworm",
    ] {
        docker(&["image", "inspect", image])
            .with_context(|| format!("image {image} is missing: `.ci/docker-images` builds it"))?;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace")?
        .to_owned();
    let (pwt, app) = build(&workspace)?;
    let root = scratch("e2e-compose")?;
    let id = format!("e2ec{}", std::process::id());
    let result = scenario(&root, &id, pwt, app);
    cleanup(&root, &id);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// Whatever failed, nothing of the run is left on the engine: the worktrees' projects
/// (named after the run), the shared services, their network and volumes.
fn cleanup(root: &Path, id: &str) {
    let ids =
        docker(&["ps", "-aq", "--filter", "label=com.docker.compose.project"]).unwrap_or_default();
    for c in ids.lines() {
        let project = docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"com.docker.compose.project\"}}",
            c,
        ])
        .unwrap_or_default();
        if project.trim().starts_with(id) {
            let _ = docker(&["rm", "-f", "-v", c]);
        }
    }
    let _ = docker(&["network", "rm", &format!("{id}-net")]);
    for v in ["pgdata", "rabbitmq"] {
        let _ = docker(&["volume", "rm", &format!("{id}_{v}")]);
    }
    let images = docker(&["images", "--format", "{{.Repository}}"]).unwrap_or_default();
    for i in images.lines().filter(|i| i.starts_with(id)) {
        let _ = docker(&["rmi", "-f", i]);
    }
    let _ = root;
}

fn scenario(root: &Path, id: &str, pwt: PathBuf, app: PathBuf) -> Result<()> {
    let repo = root.join("shop");
    std::fs::create_dir_all(&repo)?;
    let ctx = Ctx {
        root: root.to_owned(),
        repo: repo.clone(),
        pwt,
        app: app.clone(),
    };
    let (pg, amqp, mgmt, redis) = (free_port(), free_port(), free_port(), free_port());
    write_repo(&ctx, id, &app, [pg, amqp, mgmt, redis])?;

    println!("`pwt infra up` beside the native services");
    ctx.pwt(&["infra", "up"])?;
    ok("the shared services answer on ports of their own, on the shared network");

    let envs = start_apps(&ctx, &app)?;
    ok("each worktree's app runs as a Compose project of its own, on the shared network");

    check_isolation(&envs)?;

    println!("`pwt rm` of each");
    let projects: Vec<String> = envs
        .iter()
        .map(|e| e["COMPOSE_PROJECT_NAME"].clone())
        .collect();
    for b in BRANCHES {
        ctx.pwt(&["rm", b, "--force"])?;
    }
    nothing_left(&ctx, id, &Ports { pg, mgmt, redis }, &projects, &envs)?;
    ctx.pwt(&["infra", "down", "--volumes"])?;
    println!("✓ end to end in Compose: isolation holds, and nothing is left");
    Ok(())
}

/// The scratch repository: its pwt.toml (the services on ports of their own, in Compose),
/// the README's Compose file, the app's Dockerfile.
fn write_repo(ctx: &Ctx, id: &str, app: &Path, [pg, amqp, mgmt, redis]: [u16; 4]) -> Result<()> {
    let toml = format!(
        r#"project = "{id}"
[ports]
range = [31000, 31999]
[ports.services]
backend = {{ env = "BACKEND_PORT", main = 5000 }}
[postgres]
url = "postgres://postgres@127.0.0.1:{pg}/postgres"
[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:{amqp}"
management_url = "http://127.0.0.1:{mgmt}"
[redis]
url = "redis://127.0.0.1:{redis}"
mode = "db"
[infra]
project = "{id}"
network = "{id}-net"
postgres_image = "pwt-ci/postgres"
rabbitmq_image = "pwt-ci/rabbitmq"
redis_image = "pwt-ci/redis"
[docker]
"#
    );
    std::fs::write(ctx.repo.join("pwt.toml"), toml)?;
    std::fs::write(ctx.repo.join("compose.yaml"), readme_compose()?)?;
    // The app image: the todo app's binary on the Debian root (no registry here), bound to
    // every address of its container.
    std::fs::write(
        ctx.repo.join("Dockerfile"),
        "FROM pwt-ci/debian:bookworm\nCOPY todo-app /usr/local/bin/todo-app\nENV BIND_ADDRESS=0.0.0.0\nCMD [\"todo-app\", \"backend\"]\n",
    )?;
    std::fs::write(ctx.repo.join(".gitignore"), "todo-app\n")?;
    std::fs::copy(app, ctx.repo.join("todo-app"))?;
    ctx.git(&["init", "-q"])?;
    ctx.git(&["add", "."])?;
    ctx.git(&["commit", "-q", "-m", "init"])?;

    Ok(())
}

/// Three `pwt new` at once, then each worktree's app with Compose, until each answers.
fn start_apps(ctx: &Ctx, app: &Path) -> Result<Vec<BTreeMap<String, String>>> {
    println!("three `pwt new` at once");
    let children: Vec<_> = BRANCHES
        .iter()
        .map(|b| {
            ctx.cmd(&ctx.pwt, &["new", b, "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut dirs = Vec::new();
    for (c, b) in children.into_iter().zip(BRANCHES) {
        let out = c.wait_with_output()?;
        ensure!(
            out.status.success(),
            "pwt new {b} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let made = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = made
            .split("\"path\": \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .context("the path in pwt new's JSON")?;
        dirs.push(PathBuf::from(path));
    }
    let envs: Vec<BTreeMap<String, String>> =
        BRANCHES.iter().map(|b| ctx.env(b)).collect::<Result<_>>()?;
    for ((b, env), dir) in BRANCHES.iter().zip(&envs).zip(&dirs) {
        let _ = env;
        // The app reads only what pwt writes: its build context is the worktree.
        std::fs::copy(app, dir.join("todo-app"))?;
        let out = ctx
            .cmd(
                Path::new("docker-compose"),
                &["--env-file", ".env.worktree", "up", "-d", "--build"],
            )
            .current_dir(dir)
            .env("DOCKER_BUILDKIT", "0")
            .output()?;
        ensure!(
            out.status.success(),
            "docker-compose up in {b}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (b, env) in BRANCHES.iter().zip(&envs) {
        wait_port(env["BACKEND_PORT"].parse()?, &format!("{b}'s container"))?;
        wait_answer(&env["BACKEND_PORT"], b)?;
    }
    Ok(envs)
}

/// Until the app answers through its published port (its database may still be new).
fn wait_answer(port: &str, what: &str) -> Result<()> {
    let start = std::time::Instant::now();
    loop {
        match http("GET", &format!("http://127.0.0.1:{port}/"), None) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) if start.elapsed().as_secs() > 60 => {
                bail!("{what}'s app answers {}: {}", r.status, r.body)
            }
            Err(e) if start.elapsed().as_secs() > 60 => return Err(e.context(what.to_owned())),
            _ => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

/// The seed's quick isolation check, against the containers: identity per backend, rows
/// per database, messages per vhost, counters per Redis DB.
fn check_isolation(envs: &[BTreeMap<String, String>]) -> Result<()> {
    let url = |i: usize, path: &str| format!("http://127.0.0.1:{}{path}", envs[i]["BACKEND_PORT"]);
    let mut seen = Vec::new();
    for (i, env) in envs.iter().enumerate() {
        let r = http("GET", &url(i, "/"), None)?;
        let feature = json_field(&r.body, "feature").unwrap_or_default();
        ensure!(
            feature == env["PWT_SLUG"],
            "identity: {}'s container says it is {feature:?}",
            BRANCHES[i]
        );
        let db = json_field(&r.body, "database").unwrap_or_default();
        ensure!(
            db == env["DATABASE_NAME"],
            "{}'s container uses database {db}",
            BRANCHES[i]
        );
        ensure!(!seen.contains(&db), "isolation broken: database {db} twice");
        seen.push(db);
    }
    ok("identity differs per container (FEATURE, database, vhost, Redis DB)");
    let posted = http(
        "POST",
        &url(0, "/todos"),
        Some(r#"{"title": "Implement login flow", "isComplete": false}"#),
    )?;
    ensure!(
        posted.status == 201,
        "POST /todos answered {}: {}",
        posted.status,
        posted.body
    );
    for i in 0..3 {
        let has = http("GET", &url(i, "/todos"), None)?
            .body
            .contains("Implement login flow");
        ensure!(
            has == (i == 0),
            "isolation broken: rows: {} has the todo: {has}",
            BRANCHES[i]
        );
        let stats = http("GET", &url(i, "/stats"), None)?.body;
        let want = if i == 0 { "1" } else { "0" };
        for field in ["messages", "counter"] {
            let got = json_field(&stats, field).unwrap_or_default();
            ensure!(
                got == want,
                "isolation broken: {field} of {} is {got}, expected {want}",
                BRANCHES[i]
            );
        }
    }
    ok("rows per database, messages per vhost, counters per Redis DB index");
    Ok(())
}

/// The shared services' published ports.
struct Ports {
    pg: u16,
    mgmt: u16,
    redis: u16,
}

/// After `pwt rm`: no container, network or volume of the worktrees' projects, no
/// database, vhost or Redis key of theirs, no lease, no port held.
fn nothing_left(
    ctx: &Ctx,
    id: &str,
    ports: &Ports,
    projects: &[String],
    envs: &[BTreeMap<String, String>],
) -> Result<()> {
    for p in projects {
        let filter = format!("label=com.docker.compose.project={p}");
        for what in [
            docker(&["ps", "-aq", "--filter", &filter])?,
            docker(&["network", "ls", "-q", "--filter", &filter])?,
            docker(&["volume", "ls", "-q", "--filter", &filter])?,
        ] {
            ensure!(what.trim().is_empty(), "Compose project {p} left: {what}");
        }
    }
    let pg = ports.pg.to_string();
    let dbs = crate::util::output(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &pg,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{id}%'"),
        ],
    )?;
    ensure!(dbs.trim().is_empty(), "databases left: {dbs}");
    let vhosts = crate::util::output(
        "curl",
        &[
            "-s",
            "-u",
            "guest:guest",
            &format!("http://127.0.0.1:{}/api/vhosts", ports.mgmt),
        ],
    )?;
    for env in envs {
        ensure!(
            !vhosts.contains(&format!("\"name\":\"{}\"", env["RABBITMQ_VHOST"])),
            "vhost {} is left: {vhosts}",
            env["RABBITMQ_VHOST"]
        );
        let keys = crate::util::output(
            "redis-cli",
            &[
                "-p",
                &ports.redis.to_string(),
                "-n",
                &env["REDIS_DB"],
                "dbsize",
            ],
        )?;
        ensure!(
            keys.trim() == "0",
            "Redis DB {} keeps {keys} keys",
            env["REDIS_DB"]
        );
        let port: u16 = env["BACKEND_PORT"].parse()?;
        ensure!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is still held"
        );
    }
    let list = ctx.pwt(&["list", "--format", "json"])?;
    ensure!(!list.contains("feature-"), "leases left: {list}");
    ok("no container, network, volume, database, vhost, key, lease or port of theirs is left");
    Ok(())
}
