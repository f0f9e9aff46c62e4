//! The kill harness: `pwt new`, `pwt up` and `pwt rm` with PostgreSQL, RabbitMQ and Redis
//! configured, killed (SIGKILL or SIGINT) at random moments and paused-then-killed at every
//! named fault point, each followed by one `pwt gc --yes`. After each: zero leftovers (no
//! database, vhost, Redis data, worktree or lease without the others; no partial checkout
//! marked ready), and the branch can be created again.
//!
//! `PWT_KILLS` sets the number of random kills (default 110); `PWT_KILL_SEED` replays a run.
//! The counts are printed (run with `--nocapture` to see them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection as _;

use crate::common::{TestEnv, services_toml};

/// A tiny xorshift generator: no dependency, and a seed that replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Files in each directory `files.copy` brings.
const COPIED: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    New,
    Up,
    Rm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sig {
    Kill,
    Int,
}

struct Harness {
    t: TestEnv,
    repo: PathBuf,
    project: String,
    rt: tokio::runtime::Runtime,
    n: u32,
    /// Worktrees made with plain git for `pwt up`: theirs to keep without a lease.
    plain: std::cell::RefCell<BTreeSet<PathBuf>>,
}

/// What is on the shared servers under this run's project name.
#[derive(Debug, Default)]
struct Inventory {
    /// Database → its comment.
    dbs: BTreeMap<String, Option<String>>,
    vhosts: BTreeSet<String>,
    /// Redis keys under the project's prefix.
    keys: BTreeSet<String>,
}

impl Harness {
    fn new() -> Option<Self> {
        if !pwt_tests::all_services_up() {
            return None;
        }
        let t = TestEnv::new();
        let project = pwt_tests::unique("kill");
        let toml = format!(
            "{}\n[files]\ncopy = [\"big/\", \"more/\"]\n[hooks]\npost-create = [\"sleep 0.05\", \"touch .hooked\"]\n",
            services_toml(&project, "prefix")
        );
        let repo = t.repo("demo", Some(&toml));
        // Enough files that a checkout takes a while, so kills land inside it too.
        for d in 0..20 {
            let dir = repo.join(format!("src{d}"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            for f in 0..100 {
                std::fs::write(dir.join(format!("f{f}.txt")), format!("{d}/{f}\n")).expect("write");
            }
        }
        std::fs::write(repo.join(".gitignore"), ".hooked\nbig/\nmore/\n").expect("write");
        t.git(&repo, &["add", "."]);
        t.git(&repo, &["commit", "-q", "-m", "files"]);
        // Ignored files `files.copy` brings, enough that kills land inside the copies too.
        for dir in ["big", "more"] {
            std::fs::create_dir_all(repo.join(dir)).expect("mkdir");
            for f in 0..COPIED {
                std::fs::write(repo.join(format!("{dir}/c{f}")), vec![b'x'; 4096]).expect("write");
            }
        }
        Some(Self {
            t,
            repo,
            project,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            n: 0,
            plain: Default::default(),
        })
    }

    fn branch(&mut self) -> String {
        self.n += 1;
        format!("k{}", self.n)
    }

    fn root(&self, branch: &str) -> PathBuf {
        self.repo
            .parent()
            .expect("parent")
            .join(format!("demo.{branch}"))
    }

    fn spawn(&self, dir: &Path, args: &[&str], fault: Option<&str>) -> Child {
        let mut cmd = self.t.cmd(dir, args);
        if let Some(f) = fault {
            cmd.env("PWT_FAULT", format!("{f}:60000"));
        }
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pwt")
    }

    /// Gets the worktree ready for the operation under test: nothing for `new`, a plain git
    /// worktree for `up`, a set-up worktree for `rm`.
    fn prepare(&self, op: Op, branch: &str) -> PathBuf {
        let root = self.root(branch);
        match op {
            Op::New => {}
            Op::Up => {
                self.t.git(
                    &self.repo,
                    &[
                        "worktree",
                        "add",
                        "-q",
                        "-b",
                        branch,
                        &root.display().to_string(),
                    ],
                );
                self.plain.borrow_mut().insert(root.clone());
            }
            Op::Rm => {
                self.t.pwt(&self.repo, &["new", branch]).ok();
            }
        }
        root
    }

    fn victim(&self, op: Op, branch: &str, root: &Path, fault: Option<&str>) -> Child {
        match op {
            Op::New => self.spawn(&self.repo, &["new", branch], fault),
            Op::Up => self.spawn(root, &["up"], fault),
            Op::Rm => self.spawn(&self.repo, &["rm", branch], fault),
        }
    }

    /// The registry, or an empty one before the first write.
    fn registry(&self) -> Value {
        match std::fs::read_to_string(self.t.state_dir().join("registry.json")) {
            Ok(text) => serde_json::from_str(&text).expect("the registry parses"),
            Err(_) => serde_json::json!({ "leases": [] }),
        }
    }

    fn inventory(&self) -> Inventory {
        let mut inv = Inventory::default();
        let project = self.project.clone();
        self.rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL).await.expect("pg");
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname LIKE $1",
            )
            .bind(format!("{project}%"))
            .fetch_all(&mut c)
            .await
            .expect("list databases");
            inv.dbs = rows.into_iter().collect();
            let r = redis::Client::open(pwt_tests::REDIS_URL).expect("redis");
            let mut r = r.get_multiplexed_async_connection().await.expect("redis conn");
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{project}:*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut r)
                    .await
                    .expect("scan");
                inv.keys.extend(keys);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        });
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-u",
                "guest:guest",
                &format!("{}/api/vhosts", pwt_tests::MANAGEMENT_URL),
            ])
            .output()
            .expect("curl");
        let v: Value = serde_json::from_slice(&out.stdout).expect("vhosts JSON");
        inv.vhosts = v
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|h| h["name"].as_str())
            .filter(|n| n.starts_with(&format!("/{project}/")))
            .map(str::to_owned)
            .collect();
        inv
    }

    /// Every invariant the promise makes; a list of what breaks it.
    fn check(&self) -> Vec<String> {
        let mut bad = Vec::new();
        let reg = self.registry();
        let leases = reg["leases"].as_array().cloned().unwrap_or_default();
        let inv = self.inventory();
        let mut owned_dbs = BTreeSet::new();
        let mut owned_vhosts = BTreeSet::new();
        let mut owned_prefixes = BTreeSet::new();
        let listed = self.t.git(&self.repo, &["worktree", "list", "--porcelain"]);
        for l in &leases {
            let branch = l["branch"].as_str().unwrap_or_default();
            if l["state"] != "ready" {
                bad.push(format!("lease {branch} left {}", l["state"]));
                continue;
            }
            let path = PathBuf::from(l["path"].as_str().unwrap_or_default());
            if !path.join("README").exists() || !path.join(".env.worktree").exists() {
                bad.push(format!(
                    "{branch}: ready, but its worktree or env file is missing"
                ));
            } else if !path.join(".hooked").exists() && l["pending_hooks"] != true {
                bad.push(format!(
                    "{branch}: ready, but its post-create hook never ran"
                ));
            } else if ["big", "more"]
                .iter()
                .any(|d| std::fs::read_dir(path.join(d)).map_or(0, |e| e.count()) != COPIED)
            {
                bad.push(format!(
                    "{branch}: ready, but its files.copy is missing or partial"
                ));
            } else {
                let status = self.t.git(&path, &["status", "--porcelain"]);
                let dirty: Vec<&str> = status.lines().filter(|l| !l.ends_with(".hooked")).collect();
                if !dirty.is_empty() {
                    bad.push(format!(
                        "{branch}: ready, but a partial checkout: {} changes",
                        dirty.len()
                    ));
                }
            }
            let r = &l["resources"];
            if let Some(db) = r["database"].as_str() {
                owned_dbs.insert(db.to_owned());
                match inv.dbs.get(db) {
                    Some(Some(m)) if m.starts_with("pwt:") => {}
                    other => bad.push(format!("{branch}: database {db} is {other:?}")),
                }
            }
            if let Some(v) = r["vhost"].as_str() {
                owned_vhosts.insert(v.to_owned());
                if !inv.vhosts.contains(v) {
                    bad.push(format!("{branch}: vhost {v} is missing"));
                }
            }
            if let Some(p) = r["redis"]["prefix"].as_str() {
                owned_prefixes.insert(p.to_owned());
                if !inv.keys.contains(&format!("{p}__pwt_owner__")) {
                    bad.push(format!("{branch}: Redis marker of {p} is missing"));
                }
            }
        }
        for (db, comment) in &inv.dbs {
            if !owned_dbs.contains(db) {
                bad.push(format!("database {db} ({comment:?}) belongs to no lease"));
            }
        }
        for v in inv.vhosts.difference(&owned_vhosts) {
            bad.push(format!("vhost {v} belongs to no lease"));
        }
        for k in &inv.keys {
            if !owned_prefixes.iter().any(|p| k.starts_with(p.as_str())) {
                bad.push(format!("Redis key {k} belongs to no lease"));
            }
        }
        // No worktree (on disk or in git's list) without a lease.
        for line in listed.lines().filter_map(|l| l.strip_prefix("worktree ")) {
            let p = Path::new(line);
            let plain = self.plain.borrow().contains(p);
            if p != self.repo && !plain && !leases.iter().any(|l| l["path"].as_str() == Some(line))
            {
                bad.push(format!("git lists {line}, which no lease holds"));
            }
        }
        bad
    }

    /// After a kill, `pwt up` of the branch first (what gc recommends for a set-up that
    /// holds work), which either finishes the set-up or refuses, leaving nothing half-made.
    fn up_first(&self, branch: &str) -> Vec<String> {
        let up = self.t.pwt(&self.repo, &["up", branch]);
        if up.code == 0 {
            return self.check();
        }
        Vec::new()
    }

    /// After a kill and one gc: the invariants hold, and the branch can be set up again.
    fn settle(&self, op: Op, branch: &str, root: &Path) -> Vec<String> {
        let gc = self.t.pwt(&self.repo, &["gc", "--yes", "--format", "json"]);
        let mut bad = Vec::new();
        if gc.code != 0 {
            bad.push(format!(
                "gc failed: {}{}",
                gc.stdout.replace('\n', " "),
                gc.stderr
            ));
        }
        bad.extend(self.check());
        // The branch again, whatever state it is in now.
        let reg = self.registry();
        let leased = reg["leases"]
            .as_array()
            .is_some_and(|ls| ls.iter().any(|l| l["branch"] == branch));
        let again = match (leased, op) {
            (true, _) => self.t.pwt(&self.repo, &["up", branch]),
            (false, Op::New) => self.t.pwt(&self.repo, &["new", branch]),
            (false, _) if root.exists() => self.t.pwt(root, &["up"]),
            (false, _) => self.t.pwt(&self.repo, &["new", branch]),
        };
        if again.code != 0 {
            bad.push(format!("{branch} cannot be set up again: {}", again.stderr));
        }
        // Tidy up, so each round starts from a clean slate.
        let rm = self
            .t
            .pwt(&self.repo, &["rm", branch, "--force", "--delete-branch"]);
        if rm.code != 0 {
            bad.push(format!("{branch} cannot be removed: {}", rm.stderr));
        }
        self.plain.borrow_mut().remove(root);
        bad.extend(self.check());
        bad
    }
}

fn kill(child: &mut Child, sig: Sig) {
    let name = match sig {
        Sig::Kill => "-KILL",
        Sig::Int => "-INT",
    };
    let _ = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status();
}

/// Waits for the child to end (SIGINT: it rolls back first); a second SIGINT after a while.
fn reap(child: &mut Child, sig: Sig) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return s.code();
        }
        if Instant::now() > deadline {
            kill(child, Sig::Kill);
            let _ = child.wait();
            panic!("pwt did not stop within 60 s of {sig:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_at_random_moments_and_at_every_step_gc_leaves_nothing_behind() {
    let Some(mut h) = Harness::new() else {
        return;
    };
    let kills: u32 = std::env::var("PWT_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(110);
    let seed: u64 = std::env::var("PWT_KILL_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    let mut rng = Rng(seed);
    let mut failures: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    // Deterministic: a pause at every named step, killed there.
    let points: &[(Op, &str)] = &[
        (Op::New, "hold-lock"),
        (Op::New, "before-rename"),
        (Op::New, "after-lease"),
        (Op::New, "after-journal"),
        (Op::New, "database-unmarked"),
        (Op::New, "after-checkout"),
        (Op::New, "between-copies"),
        (Op::New, "after-env-files"),
        (Op::New, "between-hooks"),
        (Op::New, "before-ready"),
        (Op::Up, "after-lease"),
        (Op::Up, "after-journal"),
        (Op::Up, "database-unmarked"),
        (Op::Up, "between-copies"),
        (Op::Up, "after-env-files"),
        (Op::Up, "between-hooks"),
        (Op::Up, "before-ready"),
        (Op::Rm, "after-mark-removing"),
        (Op::Rm, "after-data"),
        (Op::Rm, "after-worktree"),
    ];
    for (op, point) in points {
        let branch = h.branch();
        let root = h.prepare(*op, &branch);
        let mut child = h.victim(*op, &branch, &root, Some(point));
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(&mut child, Sig::Kill);
        reap(&mut child, Sig::Kill);
        *counts.entry(format!("{op:?} at {point}")).or_default() += 1;
        // Finished by `pwt up` where a set-up was on its way (gc's own advice), then gc.
        if *op != Op::Rm {
            for b in h.up_first(&branch) {
                failures.push(format!("{op:?} killed at {point}, then up: {b}"));
            }
        }
        for b in h.settle(*op, &branch, &root) {
            failures.push(format!("{op:?} killed at {point}: {b}"));
        }
    }
    // Random moments, over about the time each operation takes.
    let span_ms = |op: Op| match op {
        Op::New => 900,
        Op::Up => 350,
        Op::Rm => 250,
    };
    for i in 0..kills {
        let op = match rng.below(10) {
            0..=5 => Op::New,
            6..=7 => Op::Up,
            _ => Op::Rm,
        };
        let sig = if rng.below(2) == 0 {
            Sig::Kill
        } else {
            Sig::Int
        };
        let branch = h.branch();
        let root = h.prepare(op, &branch);
        let delay = rng.below(span_ms(op));
        let mut child = h.victim(op, &branch, &root, None);
        std::thread::sleep(Duration::from_millis(delay));
        kill(&mut child, sig);
        let code = reap(&mut child, sig);
        let how = match code {
            Some(0) => "finished first",
            Some(130) => "rolled back itself",
            Some(_) => "failed",
            None => "died",
        };
        *counts.entry(format!("{op:?} {sig:?}: {how}")).or_default() += 1;
        if code == Some(130) {
            // Interrupted and rolled back by itself: nothing may be left, before any gc.
            for b in h.check() {
                failures.push(format!(
                    "#{i} {op:?} {sig:?} after {delay} ms rolled back, yet: {b}"
                ));
            }
        }
        if op != Op::Rm && rng.below(3) == 0 {
            *counts.entry("then `pwt up` first".into()).or_default() += 1;
            for b in h.up_first(&branch) {
                failures.push(format!(
                    "#{i} {op:?} {sig:?} after {delay} ms, then up: {b}"
                ));
            }
        }
        for b in h.settle(op, &branch, &root) {
            failures.push(format!("#{i} {op:?} {sig:?} after {delay} ms ({how}): {b}"));
        }
    }
    eprintln!(
        "kill harness (seed {seed}): {} kills at fault points, {kills} at random moments",
        points.len()
    );
    for (k, n) in &counts {
        eprintln!("  {n:4}  {k}");
    }
    assert!(
        failures.is_empty(),
        "{} broken promise(s) (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
