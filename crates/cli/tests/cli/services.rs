//! new / up / rm / gc with PostgreSQL, RabbitMQ and Redis on this machine: the seed
//! workflow's isolation check, teardown, ownership, rollback, concurrency.

use pwt_tests::rt;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Stdio};

use redis::AsyncCommands as _;
use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

use crate::common::{Run, TestEnv, services_toml};

fn up() -> bool {
    pwt_tests::all_services_up()
}

/// A sandbox and a repository `demo` configured for all three services under a project name
/// unique to this test; `None` (the test is skipped) when a service is missing locally.
fn service_repo(tag: &str, redis_mode: &str) -> Option<(TestEnv, String, std::path::PathBuf)> {
    if !up() {
        return None;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique(tag);
    let repo = t.repo("demo", Some(&services_toml(&project, redis_mode)));
    Some((t, project, repo))
}

fn env_of(t: &TestEnv, repo: &Path, branch: &str) -> Value {
    t.pwt(repo, &["env", branch, "--format", "json"])
        .ok()
        .json()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

use pwt_tests::probe::{db_exists, vhost_exists};

async fn redis_keys(pattern: &str) -> Vec<String> {
    pwt_tests::probe::redis_keys(pwt_tests::REDIS_URL, pattern).await
}

#[test]
fn seed_isolation_check_and_teardown() {
    let Some((t, _, repo)) = service_repo("iso", "prefix") else {
        return;
    };
    t.pwt(&repo, &["new", "feature-a"]).ok();
    t.pwt(&repo, &["new", "feature-b"]).ok();
    let a = env_of(&t, &repo, "feature-a");
    let b = env_of(&t, &repo, "feature-b");
    for k in ["DATABASE_NAME", "RABBITMQ_VHOST", "REDIS_KEY_PREFIX"] {
        assert_ne!(a[k], b[k], "{k} shared");
    }
    rt().block_on(async {
        // PostgreSQL: a table and a row through feature-a's DATABASE_URL are not in feature-b's.
        let mut ca = sqlx::PgConnection::connect(s(&a, "DATABASE_URL"))
            .await
            .expect("a");
        ca.execute(
            "CREATE TABLE todos (title text); INSERT INTO todos VALUES ('Implement login flow')",
        )
        .await
        .expect("write a");
        let mut cb = sqlx::PgConnection::connect(s(&b, "DATABASE_URL"))
            .await
            .expect("b");
        let in_b: Option<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_name = 'todos'",
        )
        .fetch_optional(&mut cb)
        .await
        .expect("query b");
        assert!(
            in_b.is_none(),
            "feature-a's table is visible in feature-b's database"
        );
        ca.close().await.expect("close");
        cb.close().await.expect("close");
        // RabbitMQ: a queue and a message in feature-a's vhost are not in feature-b's.
        pwt_tests::amqp_publish(s(&a, "RABBITMQ_URL"), "notifications", b"bell").await;
        assert_eq!(
            pwt_tests::amqp_count(s(&a, "RABBITMQ_URL"), "notifications").await,
            1
        );
        assert_eq!(
            pwt_tests::amqp_count(s(&b, "RABBITMQ_URL"), "notifications").await,
            0
        );
        // Redis: keys under each prefix.
        let c = redis::Client::open(s(&a, "REDIS_URL")).expect("client");
        let mut c = c.get_multiplexed_async_connection().await.expect("conn");
        for v in [&a, &b] {
            let _: () = c
                .set(format!("{}counter", s(v, "REDIS_KEY_PREFIX")), 1)
                .await
                .expect("set");
        }
    });

    // Removing feature-b leaves feature-a's data alone.
    let out = t.pwt(&repo, &["rm", "feature-b"]).ok().stdout;
    assert!(out.contains("removed feature-b"), "{out}");
    rt().block_on(async {
        assert!(!db_exists(s(&b, "DATABASE_NAME")).await);
        assert!(!vhost_exists(s(&b, "RABBITMQ_VHOST")).await);
        assert_eq!(
            redis_keys(&format!("{}*", s(&b, "REDIS_KEY_PREFIX"))).await,
            Vec::<String>::new()
        );
        assert!(db_exists(s(&a, "DATABASE_NAME")).await);
        assert!(vhost_exists(s(&a, "RABBITMQ_VHOST")).await);
        assert_eq!(
            pwt_tests::amqp_count(s(&a, "RABBITMQ_URL"), "notifications").await,
            1
        );
        let keys = redis_keys(&format!("{}*", s(&a, "REDIS_KEY_PREFIX"))).await;
        assert!(
            keys.contains(&format!("{}counter", s(&a, "REDIS_KEY_PREFIX"))),
            "{keys:?}"
        );
    });
    let again = t.pwt(&repo, &["rm", "feature-b"]).ok().stdout;
    assert!(again.contains("nothing to do"), "{again}");

    // An open session on the database does not block removal.
    let session = rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(s(&a, "DATABASE_URL"))
            .await
            .expect("psql-like session");
        c.execute("SELECT 1").await.expect("q");
        c
    });
    t.pwt(&repo, &["rm", "feature-a"]).ok();
    drop(session);
    rt().block_on(async {
        assert!(!db_exists(s(&a, "DATABASE_NAME")).await);
        assert!(!vhost_exists(s(&a, "RABBITMQ_VHOST")).await);
        assert_eq!(
            redis_keys(&format!("{}*", s(&a, "REDIS_KEY_PREFIX"))).await,
            Vec::<String>::new()
        );
    });
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
}

#[test]
fn unmarked_resources_with_pwts_names_are_neither_adopted_nor_dropped() {
    let Some((t, project, repo)) = service_repo("own", "prefix") else {
        return;
    };
    let db = format!("{project}_taken");
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("connect");
        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .await
            .expect("create");
    });
    let err = t.pwt(&repo, &["new", "taken"]).fails(1).stderr;
    assert!(
        err.contains(&format!("database \"{db}\" already exists")) && err.contains("no pwt marker"),
        "{err}"
    );
    assert!(err.contains("PostgreSQL at postgres://"), "{err}");
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
    assert!(!repo.parent().expect("parent").join("demo.taken").exists());
    // Its vhost and prefix, created by this run, were rolled back.
    rt().block_on(async {
        assert!(db_exists(&db).await, "the foreign database was dropped");
        assert!(!vhost_exists(&format!("/{project}/taken")).await);
        assert_eq!(
            redis_keys(&format!("{project}:taken:*")).await,
            Vec::<String>::new()
        );
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("connect");
        c.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{db}\"")))
            .await
            .expect("cleanup");
    });
}

#[test]
fn teardown_with_a_service_down_leaves_removing_and_a_second_rm_finishes() {
    if !up() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("half");
    let toml = services_toml(&project, "prefix");
    let repo = t.repo("demo", Some(&toml));
    t.pwt(&repo, &["new", "x"]).ok();
    let env = env_of(&t, &repo, "x");
    // The broker "goes down": a user config layer points at a port where nothing answers.
    let user = t.home().join(".config/pwt");
    std::fs::create_dir_all(&user).expect("mkdir");
    std::fs::write(
        user.join("config.toml"),
        "[rabbitmq]\nmanagement_url = \"http://127.0.0.1:1\"\n",
    )
    .expect("write");
    let err = t.pwt(&repo, &["rm", "x"]).fails(1).stderr;
    assert!(
        err.contains("lease stays `removing`") && err.contains("vhost"),
        "{err}"
    );
    let lease = &t.registry()["leases"][0];
    assert_eq!(lease["state"], "removing");
    assert_eq!(lease["leftover"], serde_json::json!(["vhost"]));
    rt().block_on(async {
        assert!(
            !db_exists(s(&env, "DATABASE_NAME")).await,
            "what could go did not go"
        );
        assert!(vhost_exists(s(&env, "RABBITMQ_VHOST")).await);
    });
    assert!(!repo.parent().expect("parent").join("demo.x").exists());
    // The broker is back: the second rm finishes.
    std::fs::remove_file(user.join("config.toml")).expect("rm");
    t.pwt(&repo, &["rm", "x"]).ok();
    rt().block_on(async { assert!(!vhost_exists(s(&env, "RABBITMQ_VHOST")).await) });
    assert!(
        t.registry()["leases"]
            .as_array()
            .expect("leases")
            .is_empty()
    );
}

fn spawn_new(t: &TestEnv, repo: &Path, branch: &str) -> Child {
    t.cmd(repo, &["new", branch, "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn twenty_at_once_get_distinct_resources() {
    let Some((t, _, repo)) = service_repo("par", "prefix") else {
        return;
    };
    let children: Vec<Child> = (0..20)
        .map(|i| spawn_new(&t, &repo, &format!("par-{i}")))
        .collect();
    let infos: Vec<Value> = children
        .into_iter()
        .map(|c| Run::from(c.wait_with_output().expect("wait")).ok().json())
        .collect();
    for key in ["database", "vhost", "redis_prefix"] {
        let set: HashSet<String> = infos
            .iter()
            .map(|i| i[key].as_str().expect("name").to_owned())
            .collect();
        assert_eq!(set.len(), 20, "{key} not distinct");
    }
    rt().block_on(async {
        for i in &infos {
            assert!(db_exists(i["database"].as_str().expect("db")).await);
            assert!(vhost_exists(i["vhost"].as_str().expect("vhost")).await);
        }
    });
    let children: Vec<Child> = (0..20)
        .map(|i| {
            t.cmd(&repo, &["rm", &format!("par-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        Run::from(c.wait_with_output().expect("wait")).ok();
    }
    rt().block_on(async {
        for i in &infos {
            assert!(!db_exists(i["database"].as_str().expect("db")).await);
        }
    });
}

#[test]
fn gc_removes_orphans_of_this_repo_and_spares_kept_data() {
    let Some((t, _, repo)) = service_repo("gc", "prefix") else {
        return;
    };
    t.pwt(&repo, &["new", "lost"]).ok();
    t.pwt(&repo, &["new", "kept"]).ok();
    let lost = env_of(&t, &repo, "lost");
    let kept = env_of(&t, &repo, "kept");
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(s(&kept, "DATABASE_URL"))
            .await
            .expect("c");
        c.execute("CREATE TABLE todos (title text); INSERT INTO todos VALUES ('keep me')")
            .await
            .expect("write");
        c.close().await.expect("close");
    });
    t.pwt(&repo, &["rm", "kept", "--keep-data"]).ok();
    // "lost" loses its lease (a registry restored from an old backup, say), but its worktree
    // is still there: git lists it and its env files name its data, so gc spares it.
    let file = t.state_dir().join("registry.json");
    let mut reg = t.registry();
    reg["leases"]
        .as_array_mut()
        .expect("leases")
        .retain(|l| l["branch"] != "lost");
    std::fs::write(&file, serde_json::to_vec_pretty(&reg).expect("json")).expect("write");
    let dry = t.pwt(&repo, &["gc", "--dry-run"]).ok().stdout;
    assert!(dry.contains("(spared)"), "{dry}");
    assert!(dry.contains("kept by `pwt rm --keep-data`"), "{dry}");
    t.pwt(&repo, &["gc", "--yes"]).ok();
    rt().block_on(async {
        assert!(
            db_exists(s(&lost, "DATABASE_NAME")).await,
            "gc dropped a live worktree's data"
        );
        assert!(vhost_exists(s(&lost, "RABBITMQ_VHOST")).await);
    });
    // Once the worktree is gone from git too, its data is an orphan, and gc drops it.
    let lost_root = repo.parent().expect("parent").join("demo.lost");
    let _ = t.git(
        &repo,
        &[
            "worktree",
            "remove",
            "--force",
            &lost_root.display().to_string(),
        ],
    );
    let dry = t.pwt(&repo, &["gc", "--dry-run"]).ok().stdout;
    assert!(
        dry.contains(&format!(
            "database \"{}\": pwt's, but no worktree owns it",
            s(&lost, "DATABASE_NAME")
        )),
        "{dry}"
    );
    t.pwt(&repo, &["gc", "--yes"]).ok();
    rt().block_on(async {
        assert!(!db_exists(s(&lost, "DATABASE_NAME")).await);
        assert!(!vhost_exists(s(&lost, "RABBITMQ_VHOST")).await);
        assert_eq!(
            redis_keys(&format!("{}*", s(&lost, "REDIS_KEY_PREFIX"))).await,
            Vec::<String>::new()
        );
        assert!(
            db_exists(s(&kept, "DATABASE_NAME")).await,
            "gc dropped kept data"
        );
    });
    t.pwt(&repo, &["new", "kept"]).ok();
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(s(&kept, "DATABASE_URL"))
            .await
            .expect("c");
        let (title,): (String,) = sqlx::query_as("SELECT title FROM todos")
            .fetch_one(&mut c)
            .await
            .expect("kept row");
        assert_eq!(title, "keep me");
    });
    t.pwt(&repo, &["rm", "kept"]).ok();
    rt().block_on(async { assert!(!db_exists(s(&kept, "DATABASE_NAME")).await) });
}

/// Two clones of one project on one machine: the rendered names coincide, so the second
/// worktree's are suffixed from the registry; never the same database twice.
#[test]
fn coinciding_names_across_repositories_are_disambiguated() {
    if !up() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("twin");
    let one = t.repo("one", Some(&services_toml(&project, "prefix")));
    let two = t.repo("two", Some(&services_toml(&project, "prefix")));
    let a = t
        .pwt(&one, &["new", "feature-a", "--format", "json"])
        .ok()
        .json();
    let b = t
        .pwt(&two, &["new", "feature-a", "--format", "json"])
        .ok()
        .json();
    for key in ["database", "vhost", "redis_prefix"] {
        assert_ne!(a[key], b[key], "{key} shared by two repositories");
    }
    let second = b["database"].as_str().expect("db");
    assert!(
        second.starts_with(&format!("{project}_feature_a_")),
        "{second}"
    );
    rt().block_on(async {
        assert!(db_exists(a["database"].as_str().expect("db")).await);
        assert!(db_exists(second).await);
    });
    t.pwt(&one, &["rm", "feature-a"]).ok();
    t.pwt(&two, &["rm", "feature-a"]).ok();
    rt().block_on(async { assert!(!db_exists(second).await) });
}

/// `mode = "db"` against a Redis Cluster (DB 0 only): pwt falls back to a key prefix, says
/// so, and cleans the prefix up (key by key, since a cluster refuses cross-slot UNLINK).
/// A one-node cluster with every slot, started by the test.
#[test]
fn redis_cluster_gets_prefix_mode() {
    if !up() {
        return;
    }
    let t = TestEnv::new();
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = t.root().join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--cluster-config-file")
        .arg(dir.join("nodes.conf"))
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let url = format!("redis://127.0.0.1:{port}");
    rt().block_on(async {
        let mut conn = None;
        for _ in 0..100 {
            if let Ok(c) = redis::Client::open(url.as_str())
                .expect("client")
                .get_multiplexed_async_connection()
                .await
            {
                conn = Some(c);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut c = conn.expect("the cluster node came up");
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut c)
            .await
            .expect("slots");
        for _ in 0..100 {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut c)
                .await
                .expect("info");
            if info.contains("cluster_state:ok") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let project = pwt_tests::unique("clu");
    let toml = services_toml(&project, "db").replace(pwt_tests::REDIS_URL, &url);
    let repo = t.repo("demo", Some(&toml));
    let run = t.pwt(&repo, &["new", "x", "--format", "json"]).ok();
    assert!(
        run.stderr.contains("is a cluster") && run.stderr.contains("key prefix"),
        "{}",
        run.stderr
    );
    let v = run.json();
    assert_eq!(v["redis_db"], serde_json::Value::Null);
    let env = env_of(&t, &repo, "x");
    let prefix = s(&env, "REDIS_KEY_PREFIX").to_owned();
    assert_eq!(prefix, format!("{project}:x:"));
    assert!(env.get("REDIS_DB").is_none(), "{env}");
    rt().block_on(async {
        let mut c = redis::Client::open(url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        for i in 0..50 {
            let _: () = c.set(format!("{prefix}k{i}"), i).await.expect("set");
        }
        let _: () = c.set("someone-else", 1).await.expect("set");
    });
    t.pwt(&repo, &["rm", "x"]).ok();
    rt().block_on(async {
        let mut c = redis::Client::open(url.as_str())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let left: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .expect("keys");
        assert_eq!(left, vec!["someone-else".to_owned()]);
    });
    let _ = server.kill();
    let _ = server.wait();
}

/// `clone_from_main = true`: a new worktree's database starts as a copy of the main one.
#[test]
fn clone_from_main_copies_the_main_database() {
    if !up() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("cln");
    let main_db = format!("{project}_main");
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("connect");
        c.execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE \"{main_db}\""
        )))
        .await
        .expect("main db");
        let mut m =
            sqlx::PgConnection::connect(&pwt_core::with_path(pwt_tests::POSTGRES_URL, &main_db))
                .await
                .expect("main");
        m.execute("CREATE TABLE todos (title text); INSERT INTO todos VALUES ('seeded in main')")
            .await
            .expect("seed");
        m.close().await.expect("close");
    });
    let toml = services_toml(&project, "prefix")
        .replace("[rabbitmq]", "clone_from_main = true\n[rabbitmq]");
    let repo = t.repo("demo", Some(&toml));
    t.pwt(&repo, &["new", "copy"]).ok();
    let env = env_of(&t, &repo, "copy");
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(s(&env, "DATABASE_URL"))
            .await
            .expect("copy");
        let (title,): (String,) = sqlx::query_as("SELECT title FROM todos")
            .fetch_one(&mut c)
            .await
            .expect("copied row");
        assert_eq!(title, "seeded in main");
        c.close().await.expect("close");
    });
    t.pwt(&repo, &["rm", "copy"]).ok();
    rt().block_on(async {
        assert!(db_exists(&main_db).await, "the main database must survive");
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("connect");
        c.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{main_db}\"")))
            .await
            .expect("cleanup");
    });
}
