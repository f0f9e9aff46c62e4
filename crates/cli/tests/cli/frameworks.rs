//! The databases frameworks make, and the truths about the main worktree: names that leave
//! room for `test_<db>_<N>`, test databases that go with their worktree, doctor on a missing
//! main database, a Redis URL that selects the main worktree's DB index.

use std::path::Path;

use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

use crate::common::{TestEnv, services_toml};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn sql(statement: &str) {
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("pg");
        c.execute(sqlx::AssertSqlSafe(statement.to_owned()))
            .await
            .expect("sql");
    });
}

fn databases(prefix: &str) -> Vec<String> {
    rt().block_on(async {
        let mut c = sqlx::PgConnection::connect(pwt_tests::POSTGRES_URL)
            .await
            .expect("pg");
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT datname::text FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
        )
        .bind(format!("%{prefix}%"))
        .fetch_all(&mut c)
        .await
        .expect("list");
        rows.into_iter().map(|(n,)| n).collect()
    })
}

fn env(t: &TestEnv, repo: &Path, target: &str) -> Value {
    t.pwt(repo, &["env", target, "--format", "json"])
        .ok()
        .json()
}

#[test]
fn test_databases_go_with_their_worktree_and_doctor_names_those_left_behind() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("fw");
    let repo = t.repo("demo", Some(&services_toml(&project, "prefix")));
    // The main database does not exist yet: doctor says so, with the command.
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(
        doctor.contains(&format!("\"{project}_main\" does not exist")),
        "{doctor}"
    );
    assert!(doctor.contains("CREATE DATABASE"), "{doctor}");
    sql(&format!("CREATE DATABASE \"{project}_main\""));
    sql(&format!("CREATE DATABASE \"test_{project}_main\""));
    t.pwt(&repo, &["new", "x"]).ok();
    let db = env(&t, &repo, "x")["DATABASE_NAME"]
        .as_str()
        .expect("db")
        .to_owned();
    // What Django's `manage.py test --keepdb --parallel 2` and Rails leave.
    for name in [
        format!("test_{db}"),
        format!("test_{db}_1"),
        format!("test_{db}_2"),
        format!("{db}_test"),
    ] {
        sql(&format!("CREATE DATABASE \"{name}\""));
    }
    // One a worktree gone long ago left.
    sql(&format!("CREATE DATABASE \"test_{project}_gone\""));
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(doctor.contains(&format!("test_{project}_gone")), "{doctor}");
    assert!(!doctor.contains("main\" does not exist"), "{doctor}");
    let rm = t.pwt(&repo, &["rm", "x"]).ok().stdout;
    assert!(rm.contains("test database"), "{rm}");
    let mut left = databases(&project);
    left.sort();
    let mut want = vec![
        format!("test_{project}_gone"),
        format!("{project}_main"),
        format!("test_{project}_main"),
    ];
    want.sort();
    assert_eq!(left, want);
    for name in left {
        sql(&format!("DROP DATABASE \"{name}\""));
    }
}

#[test]
fn the_longest_names_leave_room_for_test_databases() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let t = TestEnv::new();
    let project = format!("{}_customer_portal_backend", pwt_tests::unique("ln"));
    let toml = services_toml(&project, "prefix")
        .replace("database = \"{{ project }}_{{ slug | db_ident }}\"\n", "");
    let repo = t.repo("demo", Some(&toml));
    let mut names = Vec::new();
    for b in [
        "feature/reporting-dashboard-with-charts-a",
        "feature/reporting-dashboard-with-charts-b",
    ] {
        t.pwt(&repo, &["new", b]).ok();
        let db = env(&t, &repo, b)["DATABASE_NAME"]
            .as_str()
            .expect("db")
            .to_owned();
        assert!(db.len() <= 50, "{db} is {} bytes", db.len());
        assert!(format!("test_{db}_16").len() <= 63);
        names.push(db);
    }
    assert_ne!(names[0], names[1]);
    for b in [
        "feature/reporting-dashboard-with-charts-a",
        "feature/reporting-dashboard-with-charts-b",
    ] {
        t.pwt(&repo, &["rm", b]).ok();
    }
}

#[test]
fn a_redis_url_that_selects_a_db_is_the_main_worktrees_and_never_leased() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let Some(server) = pwt_tests::RedisServer::start(&["--databases", "4"]) else {
        return;
    };
    let t = TestEnv::new();
    let toml = format!(
        "[ports]\nrange = [27500, 27599]\n[redis]\nurl = \"{}/2\"\nmode = \"db\"\n",
        server.url()
    );
    let repo = t.repo("demo", Some(&toml));
    let main = env(&t, &repo, "main");
    assert_eq!(main["REDIS_DB"], "2");
    let list = t.pwt(&repo, &["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["redis_db"], 2, "{list}");
    let mut got = Vec::new();
    for b in ["a", "b"] {
        t.pwt(&repo, &["new", b]).ok();
        got.push(
            env(&t, &repo, b)["REDIS_DB"]
                .as_str()
                .expect("db")
                .to_owned(),
        );
    }
    got.sort();
    assert_eq!(got, ["1", "3"], "DB 2 is the main worktree's");
    let err = t.pwt(&repo, &["new", "c"]).fails(1).stderr;
    assert!(err.contains("1-3"), "{err}");
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(doctor.contains("uses DB 2"), "{doctor}");
}
