//! The databases frameworks make, and the truths about the main worktree: names that leave
//! room for `test_<db>_<N>`, test databases that go with their worktree, doctor on a missing
//! main database, a Redis URL that selects the main worktree's DB index.

use pwt_tests::rt;
use std::path::Path;

use serde_json::Value;
use sqlx::{Connection as _, Executor as _};

use crate::common::{TestEnv, services_toml};

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
    // redis.url changed afterwards to an index a worktree leases: doctor says so, and that
    // worktree's `pwt rm` leaves the index (main's keys are in it) instead of flushing it.
    let leased = "a";
    let index = env(&t, &repo, leased)["REDIS_DB"]
        .as_str()
        .expect("db")
        .to_owned();
    std::fs::write(
        repo.join("pwt.toml"),
        toml.replace("/2\"", &format!("/{index}\"")),
    )
    .expect("toml");
    let doctor = t.pwt(&repo, &["doctor"]);
    assert!(
        doctor.stdout.contains(&format!("leased to {leased:?}")),
        "{}",
        doctor.stdout
    );
    let url = format!("{}/{index}", server.url());
    let main_key = |op: &str| {
        std::process::Command::new("redis-cli")
            .args(["-u", &url, op, "main:important"])
            .args(if op == "SET" { &["1"][..] } else { &[][..] })
            .output()
            .expect("redis-cli")
    };
    main_key("SET");
    let rm = t.pwt(&repo, &["rm", leased]).fails(1);
    assert!(rm.stderr.contains("main worktree's"), "{}", rm.stderr);
    assert_eq!(
        String::from_utf8_lossy(&main_key("GET").stdout).trim(),
        "1",
        "main's key is gone"
    );
}

/// The Python with Django, psycopg and python-dotenv (.ci/run makes it), or why it is missing.
fn django_python() -> Result<std::path::PathBuf, String> {
    let python = std::env::var_os("PWT_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/pwt-ci/django/bin/python"))
        })
        .ok_or("no HOME")?;
    let probe = std::process::Command::new(&python)
        .args(["-c", "import django, psycopg, dotenv"])
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} lacks Django, psycopg or python-dotenv",
            python.display()
        ));
    }
    Ok(python)
}

/// Copies the Django project under tests/cli/django into `repo` and commits it.
fn add_django_project(t: &TestEnv, repo: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/django");
    for rel in [
        "manage.py",
        "shop/__init__.py",
        "shop/settings.py",
        "orders/__init__.py",
        "orders/models.py",
        "orders/tests.py",
    ] {
        let to = repo.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(src.join(rel), to).expect("copy");
    }
    std::fs::copy(src.join("gitignore"), repo.join(".gitignore")).expect("copy");
    t.git(repo, &["add", "."]);
    t.git(repo, &["commit", "-q", "-m", "a Django project"]);
}

#[test]
fn two_django_worktrees_with_the_longest_names_run_their_parallel_tests_at_once() {
    let Some(python) = crate::common::installed(django_python()) else {
        return;
    };
    if !pwt_tests::all_services_up() {
        return;
    }
    let t = TestEnv::new();
    // A long project name and two long branches differing only at the end: the default
    // template cuts both names to 50 bytes, and their hashes keep them two.
    let project = format!("{}_customer_portal_backend", pwt_tests::unique("dj"));
    let toml = services_toml(&project, "prefix")
        .replace("database = \"{{ project }}_{{ slug | db_ident }}\"\n", "");
    let repo = t.repo("portal", Some(&toml));
    add_django_project(&t, &repo);
    // The main worktree's test database, which no worktree's teardown may touch.
    let main_test = format!("test_{project}_main");
    sql(&format!("CREATE DATABASE \"{main_test}\""));
    let branches = [
        "feature/reporting-dashboard-for-enterprise-customers-q1",
        "feature/reporting-dashboard-for-enterprise-customers-q2",
    ];
    let mut dbs = Vec::new();
    let mut runs = Vec::new();
    for b in branches {
        let v = t.pwt(&repo, &["new", b, "--format", "json"]).ok().json();
        let db = v["database"].as_str().expect("database").to_owned();
        assert!(db.len() <= 50, "{db} is {} bytes", db.len());
        let dir = Path::new(v["path"].as_str().expect("path")).to_owned();
        // Django reads `.env.worktree` itself (python-dotenv); nothing pwt-made is inherited.
        let child = std::process::Command::new(&python)
            .args([
                "manage.py",
                "test",
                "--parallel",
                "2",
                "--keepdb",
                "--noinput",
            ])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", t.root())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("manage.py test");
        dbs.push(db);
        runs.push(child);
    }
    assert_ne!(dbs[0], dbs[1]);
    for (run, db) in runs.into_iter().zip(&dbs) {
        let out = run.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "manage.py test for {db} failed:\n{err}"
        );
        assert!(err.contains("Ran 4 tests") && err.contains("OK"), "{err}");
    }
    // `--keepdb --parallel 2` left test_<db> and its two clones, each worktree its own.
    let all = databases(&project);
    for db in &dbs {
        for name in [
            format!("test_{db}"),
            format!("test_{db}_1"),
            format!("test_{db}_2"),
        ] {
            assert!(all.contains(&name), "{name} missing from {all:?}");
        }
    }
    for b in branches {
        t.pwt(&repo, &["rm", b]).ok();
    }
    assert_eq!(
        databases(&project),
        std::slice::from_ref(&main_test),
        "rm left test databases"
    );
    sql(&format!("DROP DATABASE \"{main_test}\""));
}

/// A name that looks derived but is another worktree's: `<db>_test` of `x` is the database
/// of a branch `x-test`, and `test_<db>_2` of `b` is Django's `test_<db>` of a branch `b-2`.
#[test]
fn test_databases_of_one_worktree_never_include_another_worktrees_data() {
    if !pwt_tests::all_services_up() {
        return;
    }
    let t = TestEnv::new();
    let project = pwt_tests::unique("fl");
    let repo = t.repo("demo", Some(&services_toml(&project, "prefix")));
    let mut db = std::collections::BTreeMap::new();
    for b in ["x", "x-test", "b", "b-2"] {
        let v = t.pwt(&repo, &["new", b, "--format", "json"]).ok().json();
        db.insert(b, v["database"].as_str().expect("database").to_owned());
    }
    assert_eq!(db["x-test"], format!("{}_test", db["x"]));
    let django_of_b2 = format!("test_{}", db["b-2"]);
    let own_of_b = format!("test_{}", db["b"]);
    sql(&format!("CREATE DATABASE \"{django_of_b2}\""));
    sql(&format!("CREATE DATABASE \"{own_of_b}\""));
    let doctor = t.pwt(&repo, &["doctor"]);
    assert!(!doctor.stdout.contains(&django_of_b2), "{}", doctor.stdout);
    // A worktree's own database dropped by hand: doctor says so, `pwt up` makes it again.
    sql(&format!("DROP DATABASE \"{}\"", db["b-2"]));
    let doctor = t.pwt(&repo, &["doctor"]).stdout;
    assert!(
        doctor.contains(&format!(
            "the database {:?} of worktree \"b-2\" does not exist",
            db["b-2"]
        )),
        "{doctor}"
    );
    t.pwt(&repo, &["up", "b-2"]).ok();
    assert!(databases(&project).contains(&db["b-2"]));
    t.pwt(&repo, &["rm", "x"]).ok();
    t.pwt(&repo, &["rm", "b"]).ok();
    let left = databases(&project);
    assert!(
        left.contains(&db["x-test"]),
        "x-test's database was dropped: {left:?}"
    );
    assert!(
        left.contains(&django_of_b2),
        "b-2's test database was dropped: {left:?}"
    );
    assert!(
        !left.contains(&own_of_b),
        "b's own test database stayed: {left:?}"
    );
    t.pwt(&repo, &["rm", "x-test"]).ok();
    t.pwt(&repo, &["rm", "b-2"]).ok();
    assert!(databases(&project).is_empty(), "{:?}", databases(&project));
}
