//! `cargo xtask bench`: pwt against the git commands it wraps, in one run, on this machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::util::{output, psql, scratch};

/// A scratch directory with its own HOME, git config and pwt state.
pub(crate) struct Sandbox {
    pub(crate) root: PathBuf,
    pub(crate) pwt: PathBuf,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Sandbox {
    pub(crate) fn new(pwt: PathBuf) -> Result<Self> {
        let root = scratch("bench")?;
        Ok(Self { root, pwt })
    }

    pub(crate) fn env(&self, cmd: &mut Command) {
        cmd.env("HOME", self.root.join("home"))
            .env("PWT_MACHINE_DIR", self.root.join("machine"))
            .env("GIT_CONFIG_GLOBAL", self.root.join("home/.gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PWT_STATE_DIR", self.root.join("state"))
            .env("NO_COLOR", "1")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
    }

    fn run(&self, dir: &Path, program: &Path, args: &[&str]) -> Result<Duration> {
        let mut cmd = Command::new(program);
        self.env(&mut cmd);
        cmd.current_dir(dir).args(args);
        let start = Instant::now();
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", program.display()))?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "{} {args:?} failed: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }

    fn git(&self, dir: &Path, args: &[&str]) -> Result<Duration> {
        self.run(dir, Path::new("git"), args)
    }

    /// `git worktree add -q -b BRANCH ../BRANCH`, timed.
    fn add_worktree(&self, repo: &Path, branch: &str) -> Result<Duration> {
        self.git(
            repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                branch,
                &format!("../{branch}"),
            ],
        )
    }

    pub(crate) fn pwt(&self, dir: &Path, args: &[&str]) -> Result<Duration> {
        self.run(dir, &self.pwt, args)
    }

    /// A repository with `files` files of about 1 KiB in 30 directories, committed.
    pub(crate) fn repo(&self, name: &str, files: usize, toml: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        self.git(&dir, &["init", "-q"])?;
        let line = "pwt benchmark payload line, long enough to make files of a realistic size\n";
        for i in 0..files {
            let sub = dir.join("src").join(format!("d{}", i % 30));
            std::fs::create_dir_all(&sub)?;
            std::fs::write(sub.join(format!("f{i}.txt")), line.repeat(14))?;
        }
        std::fs::write(dir.join("pwt.toml"), toml)?;
        self.git(&dir, &["add", "-A"])?;
        self.git(&dir, &["commit", "-q", "-m", "init"])?;
        Ok(dir)
    }
}

pub(crate) struct Stats {
    pub(crate) median: Duration,
    min: Duration,
    p90: Duration,
}

pub(crate) fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    Stats {
        median: v[v.len() / 2],
        min: v[0],
        p90: v[(v.len() * 9 / 10).min(v.len() - 1)],
    }
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn row(name: &str, s: &Stats, baseline: Option<&Stats>, goal: &str) {
    let ratio = baseline
        .map(|b| format!("{:.2}x", s.median.as_secs_f64() / b.median.as_secs_f64()))
        .unwrap_or_else(|| "-".into());
    println!(
        "{name:<34} {:>10} {:>10} {:>10} {ratio:>8}  {goal}",
        ms(s.median),
        ms(s.min),
        ms(s.p90)
    );
}

pub(crate) fn header() {
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>8}  goal",
        "", "median", "min", "p90", "ratio"
    );
}

fn build_pwt() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned();
    eprintln!("building pwt (release) ...");
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "-p", "pwt-cli"])
        .status()?;
    if !status.success() {
        bail!("cargo build --release -p pwt-cli failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/pwt"))
}

/// `pwt new` vs `git worktree add -b` on a repository of 3000 files.
fn bench_new(pwt: &Path, rounds: usize) -> Result<()> {
    let sb = Sandbox::new(pwt.to_owned())?;
    let toml = "[ports.services]\nfrontend = { env = \"FRONTEND_PORT\", main = 3000 }\nbackend = { env = \"BACKEND_PORT\", main = 5000 }\n";
    let repo = sb.repo("demo", 3000, toml)?;
    // Warm the page cache and git's own caches once for both.
    sb.add_worktree(&repo, "warm-git")?;
    sb.pwt(&repo, &["new", "warm-pwt"])?;
    let (mut git, mut pwt_t) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate which goes first, so drift hurts both alike.
        let g = |sb: &Sandbox| sb.add_worktree(&repo, &format!("g{i}"));
        let p = |sb: &Sandbox| sb.pwt(&repo, &["new", &format!("p{i}")]);
        if i % 2 == 0 {
            git.push(g(&sb)?);
            pwt_t.push(p(&sb)?);
        } else {
            pwt_t.push(p(&sb)?);
            git.push(g(&sb)?);
        }
    }
    let (g, p) = (stats(git), stats(pwt_t));
    println!(
        "\n`pwt new` vs `git worktree add -b`: repository of 3000 files, {rounds} rounds each"
    );
    header();
    row("git worktree add -b (baseline)", &g, None, "");
    row("pwt new (2 ports, 2 env files)", &p, Some(&g), "<= 1.20x");
    println!(
        "overhead of pwt over git: {} (median)",
        ms(p.median.saturating_sub(g.median))
    );
    Ok(())
}

/// `pwt list` with 50 worktrees, a process working in each (so their resources are
/// measured: one /proc pass, every process's working directory read), vs `git worktree
/// list`.
fn bench_list(pwt: &Path, worktrees: usize, rounds: usize) -> Result<()> {
    let sb = Sandbox::new(pwt.to_owned())?;
    let toml = "[ports.services]\nfrontend = { env = \"FRONTEND_PORT\", main = 3000 }\nbackend = { env = \"BACKEND_PORT\", main = 5000 }\n";
    let repo = sb.repo("demo", 10, toml)?;
    eprintln!("creating {worktrees} worktrees, a process working in each ...");
    let mut sleepers = Vec::new();
    for i in 0..worktrees {
        sb.pwt(&repo, &["new", &format!("wt-{i}")])?;
        let dir = repo.with_file_name(format!("demo.wt-{i}"));
        let child = Command::new("sleep")
            .arg("600")
            .current_dir(&dir)
            .spawn()
            .context("sleep")?;
        sleepers.push(crate::plain::Running(child));
    }
    let time = |f: &dyn Fn() -> Result<Duration>| -> Result<Stats> {
        f()?;
        let mut v = Vec::new();
        for _ in 0..rounds {
            v.push(f()?);
        }
        Ok(stats(v))
    };
    let git = time(&|| sb.git(&repo, &["worktree", "list"]))?;
    let table = time(&|| sb.pwt(&repo, &["list"]))?;
    let json = time(&|| sb.pwt(&repo, &["list", "--format", "json"]))?;
    let top = time(&|| sb.pwt(&repo, &["top", "--count", "1", "--format", "json"]))?;
    println!(
        "\n`pwt list` with {worktrees} worktrees (2 ports each, probed for listening; CPU and memory of a process in each), {rounds} runs each"
    );
    header();
    row("git worktree list (baseline)", &git, None, "");
    row("pwt list", &table, Some(&git), "< 100 ms");
    row("pwt list --format json", &json, Some(&git), "< 100 ms");
    row(
        "pwt top --count 1 --format json",
        &top,
        Some(&git),
        "< 100 ms",
    );
    drop(sleepers);
    Ok(())
}

/// `CREATE DATABASE` as the server sees it: psql's own `\timing`, without psql's start-up.
fn create_database(name: &str) -> Result<Duration> {
    let out = psql(&[
        "-c",
        "\\timing on",
        "-c",
        &format!("CREATE DATABASE \"{name}\""),
    ])?;
    let ms: f64 = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("Time: ")
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .context("psql printed no timing")?;
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

fn drop_database(name: &str) -> Result<()> {
    psql(&["-c", &format!("DROP DATABASE IF EXISTS \"{name}\"")])?;
    Ok(())
}

/// The vhost PUT as curl times the request (`time_total`), without curl's start-up.
fn put_vhost(name: &str, method: &str) -> Result<Duration> {
    let url = format!("http://127.0.0.1:15672/api/vhosts/%2F{name}");
    let out = output(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            "-u",
            "guest:guest",
            "-X",
            method,
            &url,
        ],
    )?;
    let mut parts = out.split_whitespace();
    let code = parts.next().unwrap_or_default();
    if !code.starts_with('2') {
        bail!("{method} {url} answered {code}");
    }
    let secs: f64 = parts
        .next()
        .and_then(|t| t.parse().ok())
        .context("curl printed no timing")?;
    Ok(Duration::from_secs_f64(secs))
}

/// `pwt new` with PostgreSQL, RabbitMQ and Redis against the floors of the same run.
fn bench_services(pwt: &Path, rounds: usize) -> Result<()> {
    let sb = Sandbox::new(pwt.to_owned())?;
    let project = format!("pwtbench{}", std::process::id());
    let toml = format!(
        r#"project = "{project}"
[ports.services]
frontend = {{ env = "FRONTEND_PORT", main = 3000 }}
backend = {{ env = "BACKEND_PORT", main = 5000 }}
[postgres]
url = "postgres://postgres@127.0.0.1:5432/postgres"
[rabbitmq]
url = "amqp://guest:guest@127.0.0.1:5672"
management_url = "http://127.0.0.1:15672"
vhost = "/{{{{ project }}}}-{{{{ slug }}}}"
[redis]
url = "redis://127.0.0.1:6379"
prefix = "{{{{ project }}}}:{{{{ slug }}}}:"
"#
    );
    let repo = sb.repo("demo", 3000, &toml)?;
    // The same with the team store: names claimed in a PostgreSQL first.
    let store = format!("{project}_team");
    create_database(&store)?;
    let team_toml = format!("{toml}[team]\nurl = \"postgres://postgres@127.0.0.1:5432/{store}\"\n");
    let team = sb.repo("team", 3000, &team_toml)?;
    sb.add_worktree(&repo, "warm-git")?;
    sb.pwt(&repo, &["new", "warm-pwt"])?;
    sb.pwt(&team, &["new", "warm-team"])?;
    let (mut git, mut db, mut vh) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pwt_t, mut team_t) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        git.push(sb.add_worktree(&repo, &format!("g{i}"))?);
        db.push(create_database(&format!("{project}_floor_{i}"))?);
        vh.push(put_vhost(&format!("{project}-floor-{i}"), "PUT")?);
        pwt_t.push(sb.pwt(&repo, &["new", &format!("s{i}")])?);
        team_t.push(sb.pwt(&team, &["new", &format!("t{i}")])?);
    }
    for i in 0..rounds {
        drop_database(&format!("{project}_floor_{i}"))?;
        put_vhost(&format!("{project}-floor-{i}"), "DELETE")?;
        sb.pwt(&repo, &["rm", &format!("s{i}")])?;
        sb.pwt(&team, &["rm", &format!("t{i}")])?;
    }
    sb.pwt(&repo, &["rm", "warm-pwt"])?;
    sb.pwt(&team, &["rm", "warm-team"])?;
    drop_database(&store)?;
    report_services(rounds, [git, db, vh], pwt_t, team_t);
    Ok(())
}

/// Prints `bench services`: the floors, both `pwt new`s and the goal they are held to.
fn report_services(
    rounds: usize,
    floors: [Vec<Duration>; 3],
    pwt_t: Vec<Duration>,
    team_t: Vec<Duration>,
) {
    let [git, db, vh] = floors;
    let (g, d, v) = (stats(git), stats(db), stats(vh));
    let (p, t) = (stats(pwt_t), stats(team_t));
    let slowest = g.median.max(d.median).max(v.median);
    let goal = slowest.mul_f64(1.2) + Duration::from_millis(50);
    println!(
        "\n`pwt new` with PostgreSQL + RabbitMQ + Redis vs its floors, repository of 3000 files, {rounds} rounds"
    );
    header();
    row("git worktree add -b", &g, None, "");
    row("CREATE DATABASE (server time)", &d, None, "");
    row("PUT /api/vhosts (request time)", &v, None, "");
    let goal_text = format!("<= {} (1.2 x slowest + 50 ms)", ms(goal));
    row("pwt new (all three + verify)", &p, None, &goal_text);
    row("pwt new, [team] store", &t, None, &goal_text);
    for (what, x) in [("pwt new", &p), ("pwt new with the team store", &t)] {
        println!(
            "{what} / slowest floor = {:.2}x; {} against the goal of {}",
            x.median.as_secs_f64() / slowest.as_secs_f64(),
            if x.median <= goal { "within" } else { "OVER" },
            ms(goal)
        );
    }
}

/// A `node_modules` of `dirs` x `per_dir` files of `size` bytes under `root`.
fn synthetic_node_modules(root: &Path, dirs: usize, per_dir: usize, size: usize) -> Result<()> {
    let body = vec![b'x'; size];
    for d in 0..dirs {
        let dir = root
            .join("node_modules")
            .join(format!("pkg{d}"))
            .join("lib");
        std::fs::create_dir_all(&dir)?;
        for f in 0..per_dir {
            std::fs::write(dir.join(format!("m{f}.js")), &body)?;
        }
    }
    Ok(())
}

/// A command's wall time, failing on a non-zero exit.
fn timed(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("cannot run a baseline")?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(took)
}

/// `pwt new` bringing a 200 MB, 20,000-file `node_modules` (`.worktreeinclude`) against
/// `git worktree add` + `cp -r` of it; then a real `node_modules` (Vite's, from npm) against
/// `npm ci` from a warm cache.
fn bench_files(pwt: &Path, rounds: usize) -> Result<()> {
    let sb = Sandbox::new(pwt.to_owned())?;
    let repo = sb.repo("files", 300, "")?;
    std::fs::write(repo.join(".gitignore"), "node_modules/\n")?;
    std::fs::write(repo.join(".worktreeinclude"), "node_modules/\n")?;
    sb.git(&repo, &["add", "-A"])?;
    sb.git(&repo, &["commit", "-q", "-m", "include"])?;
    synthetic_node_modules(&repo, 200, 100, 10 * 1024)?;
    let (mut manual, mut cp, mut new) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        let to = sb.root.join(format!("cp{i}"));
        cp.push(timed(
            Command::new("cp")
                .arg("-r")
                .arg(repo.join("node_modules"))
                .arg(&to),
        )?);
        let g = sb.add_worktree(&repo, &format!("g{i}"))?;
        let c = timed(
            Command::new("cp")
                .arg("-r")
                .arg(repo.join("node_modules"))
                .arg(sb.root.join(format!("g{i}"))),
        )?;
        manual.push(g + c);
        new.push(sb.pwt(&repo, &["new", &format!("p{i}")])?);
    }
    println!(
        "\n`pwt new` with a 200 MB, 20,000-file node_modules from .worktreeinclude, {rounds} rounds"
    );
    header();
    let (cp, manual, new) = (stats(cp), stats(manual), stats(new));
    row("cp -r node_modules", &cp, None, "");
    row("git worktree add + cp -r (baseline)", &manual, None, "");
    row(
        "pwt new",
        &new,
        Some(&manual),
        "<= 1.00x (no slower than cp -r)",
    );
    bench_npm_ci(&sb, rounds)
}

/// A real `node_modules` (Vite 7's) brought by `pwt new` against `npm ci` from a warm cache.
fn bench_npm_ci(sb: &Sandbox, rounds: usize) -> Result<()> {
    let repo = sb.repo("npm", 300, "")?;
    std::fs::write(repo.join(".gitignore"), "node_modules/\n")?;
    std::fs::write(repo.join(".worktreeinclude"), "node_modules/\n")?;
    std::fs::write(
        repo.join("package.json"),
        r#"{"name":"bench","private":true,"dependencies":{"vite":"^7"}}"#,
    )?;
    let npm = |dir: &Path, args: &[&str]| {
        timed(
            Command::new("npm")
                .args(args)
                .args([
                    "--no-audit",
                    "--no-fund",
                    "--prefer-offline",
                    "--loglevel=error",
                ])
                .current_dir(dir),
        )
    };
    // Fills the cache and writes the lock file.
    npm(&repo, &["install"]).context("npm install (is npm on PATH, the registry reachable?)")?;
    sb.git(&repo, &["add", "-A"])?;
    sb.git(&repo, &["commit", "-q", "-m", "npm"])?;
    let (mut ci, mut new) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let g = sb.add_worktree(&repo, &format!("n{i}"))?;
        ci.push(g + npm(&sb.root.join(format!("n{i}")), &["ci"])?);
        new.push(sb.pwt(&repo, &["new", &format!("q{i}")])?);
    }
    let files = count_files(&repo.join("node_modules"));
    println!(
        "\n`pwt new` bringing Vite's node_modules ({files} files) vs `npm ci` from a warm cache, {rounds} rounds"
    );
    header();
    let (ci, new) = (stats(ci), stats(new));
    row("git worktree add + npm ci (baseline)", &ci, None, "");
    row("pwt new (worktree + copy)", &new, Some(&ci), "<= 0.30x");
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => count_files(&e.path()),
                _ => 1,
            })
            .sum()
    })
}

pub fn run(args: &[String]) -> Result<()> {
    let which = args.first().map(String::as_str).unwrap_or("all");
    if !matches!(
        which,
        "all" | "new" | "list" | "services" | "proxy" | "files" | "infra" | "mcp"
    ) {
        bail!(
            "unknown benchmark {which:?}: use new, list, services, proxy, files, mcp, infra (a Docker engine), or nothing for all but infra"
        );
    }
    let pwt = build_pwt()?;
    if matches!(which, "all" | "new") {
        bench_new(&pwt, 15)?;
    }
    if matches!(which, "all" | "list") {
        bench_list(&pwt, 50, 30)?;
    }
    if matches!(which, "all" | "mcp") {
        crate::bench_mcp::run(&pwt, 200)?;
    }
    if matches!(which, "all" | "services") {
        bench_services(&pwt, 10)?;
    }
    if matches!(which, "all" | "files") {
        bench_files(&pwt, 3)?;
    }
    if matches!(which, "all" | "proxy") {
        crate::bench_proxy::run(&pwt)?;
    }
    if which == "infra" {
        crate::bench_infra::run(&pwt, 3)?;
    }
    Ok(())
}
