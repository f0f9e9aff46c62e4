//! Shared services shared by people: two people (two HOMEs, their own clones of one project)
//! creating worktrees at once on one machine, in Redis db and prefix modes; and two
//! machines (distinct holders) sharing servers through the team store.

use pwt_tests::rt;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

use crate::common::{Run, TestEnv, services_toml};

/// A person: a sandbox (HOME, registry) and a clone of the project.
struct Person {
    t: TestEnv,
    repo: PathBuf,
    machine: PathBuf,
    holder: String,
}

impl Person {
    fn new(toml: &str, machine: &Path, holder: &str) -> Self {
        let t = TestEnv::new();
        let repo = t.repo("shop", Some(toml));
        Self {
            t,
            repo,
            machine: machine.to_owned(),
            holder: holder.to_owned(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.t.cmd(&self.repo, args);
        c.env("PWT_MACHINE_DIR", &self.machine)
            .env("PWT_HOLDER", &self.holder);
        c
    }

    fn pwt(&self, args: &[&str]) -> Run {
        self.cmd(args).output().expect("pwt").into()
    }

    fn spawn_new(&self, branch: &str) -> Child {
        self.cmd(&["new", branch, "--format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    }
}

/// Everything one worktree has that must be nobody else's.
fn holdings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["ports"]
        .as_object()
        .expect("ports")
        .values()
        .map(|p| format!("port {}", p["port"]))
        .collect();
    for k in ["database", "vhost", "redis_prefix", "redis_db"] {
        if !v[k].is_null() {
            out.push(format!("{k} {}", v[k]));
        }
    }
    out
}

fn twenty_each_at_once(mode: &str, redis_url: &str) {
    let machine = tempfile::tempdir().expect("machine dir");
    // The same project (one name for both people's databases), one shared machine.
    let project = pwt_tests::unique("ppl");
    let toml = services_toml(&project, mode).replace(pwt_tests::REDIS_URL, redis_url);
    let alice = Person::new(&toml, machine.path(), "alice@m");
    let bob = Person::new(&toml, machine.path(), "bob@m");
    let branches: Vec<String> = (0..20).map(|i| format!("feature-{i}")).collect();
    let mut children = Vec::new();
    for b in &branches {
        children.push(alice.spawn_new(b));
        children.push(bob.spawn_new(b));
    }
    let mut seen = HashSet::new();
    for c in children {
        let run: Run = c.wait_with_output().expect("wait").into();
        let v = run.ok().json();
        for h in holdings(&v) {
            assert!(seen.insert(h.clone()), "{h} handed out twice ({mode} mode)");
        }
    }
    assert_eq!(seen.iter().filter(|h| h.starts_with("port")).count(), 80);
    for p in [&alice, &bob] {
        for b in &branches {
            p.pwt(&["rm", b]).ok();
        }
    }
}

#[test]
fn two_people_creating_twenty_worktrees_each_at_once_share_nothing() {
    if !pwt_tests::all_services_up() {
        return;
    }
    twenty_each_at_once("prefix", pwt_tests::REDIS_URL);
    let Some(server) = pwt_tests::RedisServer::start(&["--databases", "64"]) else {
        return;
    };
    twenty_each_at_once("db", &server.url());
}

fn admin(sql: &str) {
    sql_at(pwt_tests::POSTGRES_URL, sql);
}

fn sql_at(url: &str, sql: &str) {
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(url).await.expect("pg");
        c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .expect("sql");
    });
}

/// Two machines (their own machine directories and holders) sharing servers through a
/// fresh team store.
struct Machines {
    store: String,
    store_url: String,
    project: String,
    alice: Person,
    bob: Person,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Machines {
    fn new(tag: &str) -> Self {
        let store = pwt_tests::unique("team");
        admin(&format!("CREATE DATABASE \"{store}\""));
        let project = pwt_tests::unique(tag);
        let store_url = format!("postgres://postgres@127.0.0.1:5432/{store}");
        let toml = format!(
            "{}[team]\nurl = \"{store_url}\"\n",
            services_toml(&project, "prefix")
        );
        let dirs = (
            tempfile::tempdir().expect("m1"),
            tempfile::tempdir().expect("m2"),
        );
        let alice = Person::new(&toml, dirs.0.path(), "alice@m1");
        let bob = Person::new(&toml, dirs.1.path(), "bob@m2");
        Self {
            store,
            store_url,
            project,
            alice,
            bob,
            _dirs: dirs,
        }
    }
}

#[test]
fn two_machines_through_the_team_store_never_share_a_name_and_gc_minds_its_own() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let Machines {
        store,
        store_url,
        project,
        alice,
        bob,
        _dirs,
    } = Machines::new("tm");
    let mut children = Vec::new();
    for i in 0..5 {
        children.push(alice.spawn_new(&format!("f{i}")));
        children.push(bob.spawn_new(&format!("f{i}")));
    }
    let mut seen = HashSet::new();
    for c in children {
        let v = Run::from(c.wait_with_output().expect("wait")).ok().json();
        for h in holdings(&v).into_iter().filter(|h| !h.starts_with("port")) {
            assert!(seen.insert(h.clone()), "{h} held twice across the machines");
        }
    }
    let team = alice
        .pwt(&["list", "--team", "--format", "json"])
        .ok()
        .json();
    let holders: HashSet<&str> = team
        .as_array()
        .expect("holds")
        .iter()
        .filter_map(|h| h["holder"].as_str())
        .collect();
    assert_eq!(holders, HashSet::from(["alice@m1", "bob@m2"]), "{team}");
    assert_eq!(team.as_array().expect("holds").len(), 30);
    // Bob loses his registry: his worktrees still declare their names, so neither his gc
    // nor Alice's lets his holds go.
    std::fs::remove_file(bob.t.state_dir().join("registry.json")).expect("lose it");
    for p in [&alice, &bob] {
        let gc = p.pwt(&["gc", "--yes", "--format", "json"]).ok().json();
        assert!(gc["done"].as_array().expect("done").is_empty(), "{gc}");
    }
    let after = alice
        .pwt(&["list", "--team", "--format", "json"])
        .ok()
        .json();
    assert_eq!(
        after.as_array().expect("holds").len(),
        30,
        "a gc let go of live holds: {after}"
    );
    // A hold of Bob's nothing accounts for (a pwt killed between its claim and its lease):
    // Alice's gc leaves it, Bob's lets it go.
    let bob_repo = after
        .as_array()
        .expect("holds")
        .iter()
        .find(|h| h["holder"] == "bob@m2")
        .and_then(|h| h["repo"].as_str())
        .expect("bob's repo")
        .to_owned();
    sql_at(
        &store_url,
        &format!(
            "INSERT INTO pwt_team.holds (kind, server, name, holder, repo, branch) \
         VALUES ('database', '127.0.0.1:5432', '{project}_lost', 'bob@m2', '{bob_repo}', 'lost')"
        ),
    );
    let gc = alice.pwt(&["gc", "--yes", "--format", "json"]).ok().json();
    assert!(
        gc["done"].as_array().expect("done").is_empty(),
        "alice let bob's go: {gc}"
    );
    let gc = bob.pwt(&["gc", "--yes", "--format", "json"]).ok().json();
    assert_eq!(gc["done"].as_array().expect("done").len(), 1, "{gc}");
    assert_eq!(
        alice
            .pwt(&["list", "--team", "--format", "json"])
            .ok()
            .json()
            .as_array()
            .expect("holds")
            .len(),
        30
    );
    // Removing lets go: Alice's worktrees, then Bob's (his registry rebuilt first).
    for i in 0..5 {
        alice.pwt(&["rm", &format!("f{i}")]).ok();
    }
    let left = bob.pwt(&["list", "--team", "--format", "json"]).ok().json();
    assert!(
        left.as_array()
            .expect("holds")
            .iter()
            .all(|h| h["holder"] == "bob@m2"),
        "{left}"
    );
    bob.pwt(&["doctor", "--rebuild"]).ok();
    for i in 0..5 {
        bob.pwt(&["rm", &format!("f{i}")]).ok();
    }
    let none = bob.pwt(&["list", "--team", "--format", "json"]).ok().json();
    assert!(none.as_array().expect("holds").is_empty(), "{none}");
    admin(&format!("DROP DATABASE \"{store}\" WITH (FORCE)"));
}

/// The holds of `who` in the team store at `url`, as `kind name` lines.
fn holds_of(p: &Person, who: &str) -> Vec<String> {
    let v = p.pwt(&["list", "--team", "--format", "json"]).ok().json();
    let mut out: Vec<String> = v
        .as_array()
        .expect("holds")
        .iter()
        .filter(|h| h["holder"] == who)
        .map(|h| {
            format!(
                "{} {}",
                h["kind"].as_str().unwrap_or(""),
                h["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_worktree_never_moves_to_new_names_and_the_store_holds_the_names_in_use() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let Machines {
        store,
        store_url,
        alice,
        bob,
        _dirs,
        ..
    } = Machines::new("tv");
    let made = alice
        .pwt(&["new", "legacy", "--format", "json"])
        .ok()
        .json();
    let db = made["database"].as_str().expect("database").to_owned();
    // Alice's holds vanish (a worktree made before `[team]` was set): Bob's `legacy` finds
    // her database on the server, takes other names, and the store holds those, not hers.
    sql_at(
        &store_url,
        "DELETE FROM pwt_team.holds WHERE holder = 'alice@m1'",
    );
    let bobs = bob.pwt(&["new", "legacy", "--format", "json"]).ok().json();
    let bob_db = bobs["database"].as_str().expect("database").to_owned();
    assert_ne!(bob_db, db);
    let held = holds_of(&bob, "bob@m2");
    assert!(held.contains(&format!("database {bob_db}")), "{held:?}");
    assert!(!held.contains(&format!("database {db}")), "{held:?}");
    // Alice under another holder name, and with her names now someone else's: `pwt up`
    // keeps her worktree where its data is, or refuses, and gc drops nothing of hers.
    sql_at(
        &store_url,
        &format!(
            "INSERT INTO pwt_team.holds (kind, server, name, holder, repo, branch) \
             VALUES ('database', '127.0.0.1:5432', '{db}', 'eve@m3', 'elsewhere', 'x')"
        ),
    );
    let up = alice.pwt(&["up", "legacy", "--format", "json"]).fails(3);
    assert!(up.stderr.contains("eve@m3"), "{}", up.stderr);
    let env = alice
        .pwt(&["env", "legacy", "--format", "json"])
        .ok()
        .json();
    assert_eq!(
        env["DATABASE_URL"]
            .as_str()
            .map(|u| u.ends_with(&format!("/{db}"))),
        Some(true)
    );
    let gc = alice
        .pwt(&["gc", "--dry-run", "--format", "json"])
        .ok()
        .json();
    assert!(
        !gc.to_string().contains(&format!("\\\"{db}\\\"")),
        "gc would drop alice's database: {gc}"
    );
    sql_at(
        &store_url,
        "DELETE FROM pwt_team.holds WHERE holder = 'eve@m3'",
    );
    alice.pwt(&["up", "legacy"]).ok();
    alice.pwt(&["rm", "legacy"]).ok();
    bob.pwt(&["rm", "legacy"]).ok();
    assert!(holds_of(&bob, "bob@m2").is_empty());
    admin(&format!("DROP DATABASE \"{store}\" WITH (FORCE)"));
}

/// Two people, one project, the same branch names, all at once, through the team store, in
/// Redis db mode: every `pwt new` succeeds while names and DB indexes are free, whatever
/// the timing (an outside try once saw 7 of 16 give up after four tries).
#[test]
fn two_people_racing_for_the_same_branches_through_the_team_store_all_succeed() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let Some(server) = pwt_tests::RedisServer::start(&["--databases", "64"]) else {
        return;
    };
    let store = pwt_tests::unique("team");
    admin(&format!("CREATE DATABASE \"{store}\""));
    let project = pwt_tests::unique("race");
    let toml = format!(
        "{}[team]\nurl = \"postgres://postgres@127.0.0.1:5432/{store}\"\n",
        services_toml(&project, "db").replace(pwt_tests::REDIS_URL, &server.url())
    );
    let machine = tempfile::tempdir().expect("machine dir");
    let alice = Person::new(&toml, machine.path(), "alice@m");
    let bob = Person::new(&toml, machine.path(), "bob@m");
    let branches: Vec<String> = (0..8).map(|i| format!("feature-{i}")).collect();
    for round in 0..2 {
        let mut children = Vec::new();
        for b in &branches {
            children.push(alice.spawn_new(b));
            children.push(bob.spawn_new(b));
        }
        let mut seen = HashSet::new();
        for c in children {
            let v = Run::from(c.wait_with_output().expect("wait")).ok().json();
            for h in holdings(&v) {
                assert!(
                    seen.insert(h.clone()),
                    "round {round}: {h} handed out twice"
                );
            }
        }
        for p in [&alice, &bob] {
            for b in &branches {
                p.pwt(&["rm", b]).ok();
            }
        }
    }
    let left = alice
        .pwt(&["list", "--team", "--format", "json"])
        .ok()
        .json();
    assert!(left.as_array().expect("holds").is_empty(), "{left}");
    admin(&format!("DROP DATABASE \"{store}\" WITH (FORCE)"));
}
