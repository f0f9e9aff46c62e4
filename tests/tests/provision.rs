//! pwt-provision against the real PostgreSQL, RabbitMQ and Redis of this machine.

use pwt_core::{DbName, RedisPrefix, Vhost, owner_marker};
use pwt_provision::{Outcome, Postgres, ProvisionError, RabbitMq, Redis};
use pwt_tests::{AMQP_URL, MANAGEMENT_URL, POSTGRES_URL, REDIS_URL, service_up, unique};
use redis::AsyncCommands as _;
use sqlx::{Connection as _, Executor as _};

fn marker(tag: &str) -> String {
    owner_marker("/tests/.git", &unique(tag))
}

async fn psql(db: &str) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&pwt_core::with_path(POSTGRES_URL, db))
        .await
        .expect("connect")
}

#[tokio::test]
async fn postgres_create_is_idempotent_marked_and_dropped_only_with_the_marker() {
    if !service_up("PostgreSQL", 5432) {
        return;
    }
    let pg = Postgres::new(POSTGRES_URL).expect("url");
    // A hostile name reaches SQL only as a quoted identifier.
    let name =
        DbName::parse(&format!("{}\";DROP DATABASE postgres;--", unique("pg"))).expect("name");
    let m = marker("pg");
    assert_eq!(
        pg.create(&name, None, &m).await.expect("create"),
        Outcome::Created
    );
    assert_eq!(
        pg.create(&name, None, &m).await.expect("again"),
        Outcome::Existed
    );
    assert!(
        pg.marked()
            .await
            .expect("marked")
            .iter()
            .any(|x| x.name == name.as_str() && x.marker == m)
    );
    // Someone else's marker: neither adopted nor dropped.
    let other = marker("other");
    assert!(matches!(
        pg.create(&name, None, &other).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert!(matches!(
        pg.drop(&name, &other).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    // A connected client does not block the drop.
    let mut client = psql(&pwt_core::percent_encode(name.as_str())).await;
    client.execute("SELECT 1").await.expect("query");
    assert_eq!(pg.drop(&name, &m).await.expect("drop"), Outcome::Removed);
    assert_eq!(
        pg.drop(&name, &m).await.expect("drop twice"),
        Outcome::Absent
    );
    drop(client);
}

#[tokio::test]
async fn postgres_unmarked_database_is_never_adopted_or_dropped() {
    if !service_up("PostgreSQL", 5432) {
        return;
    }
    let pg = Postgres::new(POSTGRES_URL).expect("url");
    let name = unique("foreign");
    let mut admin = psql("postgres").await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .expect("create foreign");
    let db = DbName::parse(&name).expect("name");
    let err = pg
        .create(&db, None, &marker("x"))
        .await
        .expect_err("not ours");
    assert!(err.to_string().contains("no pwt marker"), "{err}");
    assert!(matches!(
        pg.drop(&db, &marker("x")).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    let still: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("q");
    assert!(still.is_some(), "the foreign database was dropped");
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn postgres_clone_copies_data_and_names_blocking_sessions() {
    if !service_up("PostgreSQL", 5432) {
        return;
    }
    let pg = Postgres::new(POSTGRES_URL).expect("url");
    let main = DbName::parse(&unique("main")).expect("name");
    let mut admin = psql("postgres").await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{main}\"")))
        .await
        .expect("main");
    {
        let mut m = psql(main.as_str()).await;
        m.execute("CREATE TABLE todos (title text); INSERT INTO todos VALUES ('from main')")
            .await
            .expect("seed");
        m.close().await.expect("close");
    }
    let clone = DbName::parse(&unique("clone")).expect("name");
    let mk = marker("clone");
    assert_eq!(
        pg.create(&clone, Some(&main), &mk).await.expect("clone"),
        Outcome::Created
    );
    let mut c = psql(clone.as_str()).await;
    let (title,): (String,) = sqlx::query_as("SELECT title FROM todos")
        .fetch_one(&mut c)
        .await
        .expect("copied");
    assert_eq!(title, "from main");
    c.close().await.expect("close");

    // A session on the source blocks the clone: the error names it.
    let mut blocker = sqlx::PgConnection::connect_with(
        &pwt_core::with_path(POSTGRES_URL, main.as_str())
            .parse::<sqlx::postgres::PgConnectOptions>()
            .expect("opts")
            .application_name("blocker-app"),
    )
    .await
    .expect("blocker");
    blocker.execute("SELECT 1").await.expect("q");
    let clone2 = DbName::parse(&unique("clone")).expect("name");
    let err = pg
        .create(&clone2, Some(&main), &mk)
        .await
        .expect_err("blocked")
        .to_string();
    assert!(err.contains("blocker-app") && err.contains("pid"), "{err}");
    blocker.close().await.expect("close");
    pg.drop(&clone, &mk).await.expect("drop clone");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{main}\" WITH (FORCE)"
        )))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn postgres_works_as_a_createdb_non_superuser() {
    if !service_up("PostgreSQL", 5432) {
        return;
    }
    let role = unique("role");
    let mut admin = psql("postgres").await;
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{role}\" LOGIN CREATEDB"
        )))
        .await
        .expect("role");
    let url = format!("postgres://{role}@127.0.0.1:5432/postgres");
    let pg = Postgres::new(&url).expect("url");
    let status = pg.status().await.expect("status");
    assert!(status.createdb && !status.superuser);
    let db = DbName::parse(&unique("lp")).expect("name");
    let m = marker("lp");
    assert_eq!(
        pg.create(&db, None, &m)
            .await
            .expect("create as CREATEDB role"),
        Outcome::Created
    );
    assert_eq!(
        pg.drop(&db, &m).await.expect("drop as owner"),
        Outcome::Removed
    );
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\"")))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn rabbitmq_vhost_created_verified_isolated_and_deleted_only_with_the_marker() {
    if !(service_up("RabbitMQ", 5672) && service_up("RabbitMQ management", 15672)) {
        return;
    }
    let mq = RabbitMq::new(AMQP_URL, MANAGEMENT_URL).expect("urls");
    assert!(mq.status().await.expect("status").can_manage_vhosts());
    let vhost = Vhost::parse(&format!("/{}/ü ?#%", unique("vh"))).expect("vhost");
    let m = marker("vh");
    assert_eq!(
        mq.create(&vhost, &m).await.expect("create"),
        Outcome::Created
    );
    assert_eq!(
        mq.create(&vhost, &m).await.expect("again"),
        Outcome::Existed
    );
    mq.verify(&vhost).await.expect("AMQP round trip");
    assert!(
        mq.marked()
            .await
            .expect("marked")
            .iter()
            .any(|x| x.name == vhost.as_str())
    );
    assert!(matches!(
        mq.delete(&vhost, &marker("other")).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert_eq!(
        mq.delete(&vhost, &m).await.expect("delete"),
        Outcome::Removed
    );
    assert_eq!(mq.delete(&vhost, &m).await.expect("twice"), Outcome::Absent);
    // Unreachable broker: the error names RabbitMQ and the URL.
    let down = RabbitMq::new(AMQP_URL, "http://127.0.0.1:1").expect("urls");
    let err = down.create(&vhost, &m).await.expect_err("down").to_string();
    assert!(
        err.contains("RabbitMQ at http://127.0.0.1:1/ is unreachable"),
        "{err}"
    );
}

#[tokio::test]
async fn redis_prefix_cleanup_removes_only_its_own_keys() {
    if !service_up("Redis", 6379) {
        return;
    }
    let r = Redis::new(REDIS_URL);
    let base = unique("rp");
    let mine = RedisPrefix::parse(&format!("{base}:a:")).expect("prefix");
    let neighbour = format!("{base}:ab:"); // shares the text "…:a" but not the prefix "…:a:"
    let m = marker("rp");
    assert_eq!(
        r.claim_prefix(&mine, &m).await.expect("claim"),
        Outcome::Created
    );
    assert_eq!(
        r.claim_prefix(&mine, &m).await.expect("again"),
        Outcome::Existed
    );
    let client = redis::Client::open(REDIS_URL).expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    for i in 0..1200 {
        let _: () = c
            .set(format!("{}k{i}", mine.as_str()), i)
            .await
            .expect("set");
    }
    let _: () = c.set(format!("{neighbour}keep"), 1).await.expect("set");
    assert!(matches!(
        r.clean_prefix(&mine, &marker("other"), &[]).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert_eq!(
        r.clean_prefix(&mine, &m, &[]).await.expect("clean"),
        Outcome::Removed
    );
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{base}*"))
        .query_async(&mut c)
        .await
        .expect("keys");
    assert_eq!(left, vec![format!("{neighbour}keep")]);
    assert_eq!(
        r.clean_prefix(&mine, &m, &[]).await.expect("twice"),
        Outcome::Absent
    );
    // Keys under a prefix without a marker: never claimed, never cleaned.
    let foreign = RedisPrefix::parse(&neighbour).expect("prefix");
    assert!(matches!(
        r.claim_prefix(&foreign, &m).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert!(matches!(
        r.clean_prefix(&foreign, &m, &[]).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    let _: () = c.del(format!("{neighbour}keep")).await.expect("cleanup");
}

#[tokio::test]
async fn redis_db_mode_flushes_only_marked_dbs() {
    // DB indexes are the whole server's: a server of this test's own, never the shared one.
    let Some(server) = pwt_tests::RedisServer::start(&["--databases", "4"]) else {
        return;
    };
    let r = Redis::new(&server.url());
    let status = r.status().await.expect("status");
    assert_eq!(status.databases, Some(4));
    let index = 3;
    let client = redis::Client::open(pwt_core::with_path(&server.url(), &index.to_string()))
        .expect("client");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut c)
        .await
        .expect("start empty");
    let m = marker("db");
    assert_eq!(
        r.claim_db(index, &m).await.expect("claim"),
        Outcome::Created
    );
    let _: () = c.set("data", 1).await.expect("set");
    assert!(matches!(
        r.flush_db(index, &marker("other")).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert_eq!(
        r.flush_db(index, &m).await.expect("flush"),
        Outcome::Removed
    );
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut c)
        .await
        .expect("dbsize");
    assert_eq!(size, 0);
    // An unmarked DB with data is neither claimed nor flushed.
    let _: () = c.set("someone-elses", 1).await.expect("set");
    assert!(matches!(
        r.claim_db(index, &m).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    assert!(matches!(
        r.flush_db(index, &m).await,
        Err(ProvisionError::NotOurs { .. })
    ));
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut c)
        .await
        .expect("dbsize");
    assert_eq!(size, 1);
    let _: () = redis::cmd("FLUSHDB")
        .query_async(&mut c)
        .await
        .expect("cleanup");
}

/// The whole cause chain of an error, as the CLI prints it.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(" / ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// A refusal keeps the service's own words and says what to do: a role without CREATEDB, a
/// wrong RabbitMQ password, a Redis that wants a password.
#[tokio::test]
async fn refusals_keep_the_services_words_and_name_the_remedy() {
    if !(service_up("PostgreSQL", 5432)
        && service_up("RabbitMQ", 5672)
        && service_up("RabbitMQ management", 15672))
    {
        return;
    }
    // PostgreSQL: a role that may log in but not create databases.
    let role = unique("nocreate");
    let mut admin = psql("postgres").await;
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE ROLE \"{role}\" LOGIN")))
        .await
        .expect("role");
    let pg = Postgres::new(&format!("postgres://{role}@127.0.0.1:5432/postgres")).expect("url");
    let db = DbName::parse(&unique("denied")).expect("name");
    let e = pg
        .create(&db, None, &marker("d"))
        .await
        .expect_err("no CREATEDB");
    assert!(matches!(e, ProvisionError::Denied { .. }), "{e:?}");
    let text = chain(&e);
    assert!(
        text.contains("permission denied to create database"),
        "{text}"
    );
    assert!(
        e.hint()
            .is_some_and(|h| h.contains(&format!("ALTER ROLE \"{role}\" CREATEDB"))),
        "{:?}",
        e.hint()
    );
    admin
        .execute(sqlx::AssertSqlSafe(format!("DROP ROLE \"{role}\"")))
        .await
        .expect("cleanup");

    // RabbitMQ: a wrong password; the 401 and what the broker said come through.
    let mq = RabbitMq::new("amqp://guest:wrong@127.0.0.1:5672", MANAGEMENT_URL).expect("urls");
    let vhost = Vhost::parse(&format!("/{}", unique("denied"))).expect("vhost");
    let e = mq.create(&vhost, &marker("d")).await.expect_err("401");
    assert!(matches!(e, ProvisionError::Denied { .. }), "{e:?}");
    let text = chain(&e);
    assert!(text.contains("401"), "{text}");
    assert!(
        text.to_lowercase().contains("not_authorized") || text.contains("Login failed"),
        "{text}"
    );
    assert!(e.hint().is_some_and(|h| h.contains("rabbitmq.url")));

    // Redis with a password: none given, then a wrong one.
    let Some(server) = pwt_tests::RedisServer::start(&["--requirepass", "s3cret"]) else {
        return;
    };
    let prefix = pwt_core::RedisPrefix::parse("denied:").expect("prefix");
    for url in [
        server.url(),
        format!("redis://:wrong@127.0.0.1:{}", server.port),
    ] {
        let e = Redis::new(&url)
            .claim_prefix(&prefix, &marker("d"))
            .await
            .expect_err("refused");
        assert!(matches!(e, ProvisionError::Denied { .. }), "{url}: {e:?}");
        let text = chain(&e);
        assert!(
            text.contains("NOAUTH") || text.contains("WRONGPASS") || text.contains("uthentication"),
            "{text}"
        );
        assert!(e.hint().is_some_and(|h| h.contains("redis.url")));
    }
    let ok = Redis::new(&format!("redis://:s3cret@127.0.0.1:{}", server.port));
    assert_eq!(
        ok.claim_prefix(&prefix, &marker("d"))
            .await
            .expect("with the password"),
        Outcome::Created
    );
}
