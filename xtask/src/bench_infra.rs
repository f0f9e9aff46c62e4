//! `cargo xtask bench infra`: `pwt infra up` until every service answers its own protocol,
//! against what people do by hand with the same images: `docker-compose up -d` of the same
//! Compose file, then polling Docker's healthchecks until all three say healthy. Rounds
//! alternate; each starts from nothing (containers and volumes gone) on a real engine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::util::{output, scratch};

fn docker(args: &[&str]) -> Result<String> {
    output("docker", args)
}

/// The scratch repository whose pwt.toml points the services at free ports and the
/// images `.ci/docker-images` builds.
fn repo(root: &Path, id: &str) -> Result<std::path::PathBuf> {
    let repo = root.join("infra");
    std::fs::create_dir_all(&repo)?;
    let port = || -> Result<u16> {
        Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port())
    };
    std::fs::write(
        repo.join("pwt.toml"),
        format!(
            "[postgres]\nurl = \"postgres://postgres@127.0.0.1:{}/postgres\"\n[rabbitmq]\nurl = \"amqp://guest:guest@127.0.0.1:{}\"\nmanagement_url = \"http://127.0.0.1:{}\"\n[redis]\nurl = \"redis://127.0.0.1:{}\"\n[infra]\nproject = \"{id}\"\nnetwork = \"{id}\"\npostgres_image = \"pwt-ci/postgres\"\nrabbitmq_image = \"pwt-ci/rabbitmq\"\nredis_image = \"pwt-ci/redis\"\n",
            port()?,
            port()?,
            port()?,
            port()?
        ),
    )?;
    let git = |args: &[&str]| -> Result<()> {
        let ok = Command::new("git")
            .current_dir(&repo)
            .args(args)
            .env("HOME", root.join("home"))
            .env("GIT_CONFIG_GLOBAL", root.join("home/.gitconfig"))
            .stdout(Stdio::null())
            .status()?
            .success();
        ensure!(ok, "git {args:?}");
        Ok(())
    };
    git(&["init", "-q"])?;
    git(&["add", "."])?;
    git(&["commit", "-q", "-m", "init"])?;
    Ok(repo)
}

fn pwt_cmd(pwt: &Path, root: &Path, repo: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(pwt)
        .current_dir(repo)
        .args(args)
        .env("HOME", root.join("home"))
        .env("PWT_STATE_DIR", root.join("state"))
        .env("GIT_CONFIG_GLOBAL", root.join("home/.gitconfig"))
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("pwt {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `docker-compose up -d` of `file` as project `project`, then healthchecks polled.
fn by_hand(file: &Path, project: &str) -> Result<Duration> {
    let start = Instant::now();
    let ok = Command::new("docker-compose")
        .args(["-p", project, "-f"])
        .arg(file)
        .args(["up", "-d"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    ensure!(ok, "docker-compose up");
    loop {
        let ids = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])?;
        let ids: Vec<&str> = ids.lines().collect();
        let mut args = vec!["inspect", "-f", "{{.State.Health.Status}}"];
        args.extend(&ids);
        let health = docker(&args)?;
        if ids.len() == 3 && health.lines().all(|h| h == "healthy") {
            return Ok(start.elapsed());
        }
        ensure!(
            start.elapsed() < Duration::from_secs(300),
            "never healthy: {health}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn down(file: &Path, project: &str) {
    let _ = Command::new("docker-compose")
        .args(["-p", project, "-f"])
        .arg(file)
        .args(["down", "--volumes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub fn run(pwt: &Path, rounds: usize) -> Result<()> {
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .context("no Docker engine answers: `eval \"$(.ci/docker-engine start)\"` and `.ci/docker-images` first")?;
    let root = scratch("bench-infra")?;
    let id = format!("pwtbench{}", std::process::id());
    let repo = repo(&root, &id)?;
    // The very file pwt runs, for the baseline too (another project, the same network).
    let text = output_in(pwt, &root, &repo, &["infra", "compose"])?;
    let file = root.join("compose.yaml");
    std::fs::write(&file, text)?;
    let _ = docker(&["network", "create", &id]);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let result = (|| -> Result<()> {
        for i in 0..rounds {
            eprintln!("round {}/{rounds}", i + 1);
            let start = Instant::now();
            pwt_cmd(pwt, &root, &repo, &["infra", "up"])?;
            ours.push(start.elapsed());
            pwt_cmd(pwt, &root, &repo, &["infra", "down", "--volumes"])?;
            let baseline = format!("{id}hand");
            theirs.push(by_hand(&file, &baseline)?);
            down(&file, &baseline);
        }
        Ok(())
    })();
    down(&file, &id);
    let _ = docker(&["network", "rm", &id]);
    let _ = std::fs::remove_dir_all(&root);
    result?;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (o, t) = (median(&mut ours), median(&mut theirs));
    println!(
        "\npwt infra up, until every service answers (median of {rounds}, same images, same engine)"
    );
    println!("{:<58} {:>9}", "", "median");
    println!(
        "{:<58} {:>7.2} s",
        "docker-compose up -d + polling the healthchecks",
        t.as_secs_f64()
    );
    println!(
        "{:<58} {:>7.2} s  {:.2}x  goal: no slower (1.00x)",
        "pwt infra up (healthy, and each answers its protocol)",
        o.as_secs_f64(),
        o.as_secs_f64() / t.as_secs_f64()
    );
    Ok(())
}

fn output_in(pwt: &Path, root: &Path, repo: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(pwt)
        .current_dir(repo)
        .args(args)
        .env("HOME", root.join("home"))
        .env("PWT_STATE_DIR", root.join("state"))
        .output()?;
    ensure!(out.status.success(), "pwt {args:?}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
