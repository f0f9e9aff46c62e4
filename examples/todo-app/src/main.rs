//! The todo app of pwt's end-to-end run, in the shape of the seed workflow's demo: it reads
//! its configuration only from the environment a pwt worktree provides, so the same code runs
//! in every worktree (and in the main one, with the defaults).
//!
//! - `todo-app backend`: HTTP on `BACKEND_PORT`. `GET /` is its identity (`FEATURE`, port,
//!   database, vhost, Redis prefix or DB); `GET /todos` and `POST /todos` store todos in
//!   PostgreSQL (`DATABASE_URL`); each POST also publishes to the `todos` queue on RabbitMQ
//!   (`RABBITMQ_URL`) and increments a counter in Redis (`REDIS_URL` + `REDIS_KEY_PREFIX`, or
//!   `REDIS_DB` in the URL); `GET /stats` reports both.
//! - `todo-app frontend`: HTTP on `FRONTEND_PORT`. Serves a page, forwards `/api/*` to its
//!   backend (like the seed's Vite proxy), and logs in through the one registered redirect
//!   URI: `/login` sends the identity provider (`OAUTH_AUTHORIZE_URL`) a `state` that starts
//!   with `OAUTH_STATE_PREFIX`, and `/auth/callback` accepts only a state it issued.

use std::collections::HashSet;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{Value, json};
use sqlx::Row as _;

type Resp = Response<Full<Bytes>>;

fn var(name: &str) -> Result<String> {
    std::env::var(name)
        .with_context(|| format!("{name} is not set: run me with `pwt run -- todo-app ...`"))
}

fn port(name: &str) -> Result<u16> {
    var(name)?
        .parse()
        .with_context(|| format!("{name} is not a port"))
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(body.into()))
        .expect("a static response always builds")
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

/// Serves `handler` on `port` forever: on 127.0.0.1, or on the address `BIND_ADDRESS`
/// names (`0.0.0.0` in a container, whose image sets it).
async fn serve<F, Fut>(port: u16, handler: F) -> Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send,
{
    let ip: std::net::IpAddr = match std::env::var("BIND_ADDRESS") {
        Ok(a) => a
            .parse()
            .with_context(|| format!("BIND_ADDRESS {a:?} is not an address"))?,
        Err(_) => Ipv4Addr::LOCALHOST.into(),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, port)))
        .await
        .with_context(|| format!("cannot listen on {ip}:{port}"))?;
    eprintln!("listening on http://{ip}:{port}");
    loop {
        let (stream, _) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

struct Backend {
    identity: Value,
    _amqp_connection: Connection,
    db: sqlx::PgPool,
    amqp: Channel,
    redis: redis::aio::MultiplexedConnection,
    counter_key: String,
}

const QUEUE: &str = "todos";

impl Backend {
    async fn start() -> Result<Arc<Self>> {
        let prefix = std::env::var("REDIS_KEY_PREFIX").unwrap_or_default();
        let identity = json!({
            "feature": std::env::var("FEATURE").unwrap_or_else(|_| "main".into()),
            "port": port("BACKEND_PORT")?,
            "database": std::env::var("DATABASE_NAME").ok(),
            "vhost": std::env::var("RABBITMQ_VHOST").ok(),
            "redisKeyPrefix": prefix,
            "redisDb": std::env::var("REDIS_DB").ok(),
        });
        let db = sqlx::PgPool::connect(&var("DATABASE_URL")?)
            .await
            .context("PostgreSQL (DATABASE_URL)")?;
        sqlx::query("CREATE TABLE IF NOT EXISTS todos (id serial PRIMARY KEY, title text NOT NULL, is_complete boolean NOT NULL DEFAULT false)")
            .execute(&db)
            .await?;
        let conn = Connection::connect(&var("RABBITMQ_URL")?, ConnectionProperties::default())
            .await
            .context("RabbitMQ (RABBITMQ_URL)")?;
        let amqp = conn.create_channel().await?;
        amqp.queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let redis = redis::Client::open(var("REDIS_URL")?)?
            .get_multiplexed_async_connection()
            .await
            .context("Redis (REDIS_URL)")?;
        Ok(Arc::new(Self {
            identity,
            _amqp_connection: conn,
            db,
            amqp,
            redis,
            counter_key: format!("{prefix}todos:created"),
        }))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => json_resp(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": format!("{e:#}") }),
            ),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Resp> {
        Ok(match (req.method().clone(), req.uri().path()) {
            (Method::GET, "/") => json_resp(StatusCode::OK, &self.identity),
            (Method::GET, "/todos") => {
                let rows = sqlx::query("SELECT id, title, is_complete FROM todos ORDER BY id")
                    .fetch_all(&self.db)
                    .await?;
                let todos: Vec<Value> = rows
                    .iter()
                    .map(|r| json!({ "id": r.get::<i32, _>(0), "title": r.get::<String, _>(1), "isComplete": r.get::<bool, _>(2) }))
                    .collect();
                json_resp(StatusCode::OK, &Value::Array(todos))
            }
            (Method::POST, "/todos") => {
                let body = req.into_body().collect().await?.to_bytes();
                let v: Value = serde_json::from_slice(&body).context("the body is not JSON")?;
                let title = v["title"]
                    .as_str()
                    .context("a todo needs a title")?
                    .to_owned();
                let done = v["isComplete"].as_bool().unwrap_or(false);
                let id: i32 = sqlx::query(
                    "INSERT INTO todos (title, is_complete) VALUES ($1, $2) RETURNING id",
                )
                .bind(&title)
                .bind(done)
                .fetch_one(&self.db)
                .await?
                .get(0);
                let todo = json!({ "id": id, "title": title, "isComplete": done });
                self.amqp
                    .basic_publish(
                        "".into(),
                        QUEUE.into(),
                        BasicPublishOptions::default(),
                        todo.to_string().as_bytes(),
                        BasicProperties::default(),
                    )
                    .await?
                    .await?;
                let mut r = self.redis.clone();
                let _: i64 = redis::cmd("INCR")
                    .arg(&self.counter_key)
                    .query_async(&mut r)
                    .await?;
                json_resp(StatusCode::CREATED, &todo)
            }
            (Method::GET, "/stats") => {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                let q = self
                    .amqp
                    .queue_declare(QUEUE.into(), passive, FieldTable::default())
                    .await?;
                let mut r = self.redis.clone();
                let counter: Option<i64> = redis::cmd("GET")
                    .arg(&self.counter_key)
                    .query_async(&mut r)
                    .await?;
                json_resp(
                    StatusCode::OK,
                    &json!({ "messages": q.message_count(), "counter": counter.unwrap_or(0) }),
                )
            }
            _ => json_resp(StatusCode::NOT_FOUND, &json!({ "error": "not found" })),
        })
    }
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()),
        ) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (x, _) => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == name).then(|| decode(v))
    })
}

struct Frontend {
    feature: String,
    backend_port: u16,
    state_prefix: String,
    redirect_uri: String,
    authorize_url: String,
    issued: Mutex<HashSet<String>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Frontend {
    fn start() -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            feature: std::env::var("FEATURE").unwrap_or_else(|_| "main".into()),
            backend_port: port("BACKEND_PORT")?,
            state_prefix: std::env::var("OAUTH_STATE_PREFIX").unwrap_or_default(),
            redirect_uri: var("OAUTH_REDIRECT_URI")?,
            authorize_url: var("OAUTH_AUTHORIZE_URL")?,
            issued: Mutex::new(HashSet::new()),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        if let Some(rest) = path.strip_prefix("/api") {
            return match self.forward(req, rest, &query).await {
                Ok(r) => r,
                Err(e) => respond(
                    StatusCode::BAD_GATEWAY,
                    "text/plain",
                    format!("backend unreachable: {e:#}"),
                ),
            };
        }
        match path.as_str() {
            "/" => respond(
                StatusCode::OK,
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html><title>Todos · {f}</title><h1>Todos of <span id=feature>{f}</span></h1><p><a href=\"/login\">Log in</a></p>",
                    f = self.feature
                ),
            ),
            "/login" => {
                let state = format!("{}{}", self.state_prefix, random_hex());
                self.issued
                    .lock()
                    .expect("not poisoned")
                    .insert(state.clone());
                let location = format!(
                    "{}?response_type=code&client_id=pwt-demo&redirect_uri={}&state={}",
                    self.authorize_url,
                    encode(&self.redirect_uri),
                    encode(&state)
                );
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header("location", location)
                    .body(Full::new(Bytes::new()))
                    .expect("builds")
            }
            "/auth/callback" => {
                let state = param(&query, "state").unwrap_or_default();
                if !self.issued.lock().expect("not poisoned").remove(&state) {
                    return respond(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!(
                            "{}: state mismatch ({state:?} was not issued here)",
                            self.feature
                        ),
                    );
                }
                let code = param(&query, "code").unwrap_or_default();
                respond(
                    StatusCode::OK,
                    "text/plain",
                    format!("logged in to {} with code {code}", self.feature),
                )
            }
            _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found"),
        }
    }

    async fn forward(&self, req: Request<Incoming>, path: &str, query: &str) -> Result<Resp> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let path = if path.is_empty() { "/" } else { path };
        let uri = if query.is_empty() {
            format!("http://127.0.0.1:{}{path}", self.backend_port)
        } else {
            format!("http://127.0.0.1:{}{path}?{query}", self.backend_port)
        };
        let mut out = Request::builder().method(parts.method).uri(uri);
        if let Some(ct) = parts.headers.get("content-type") {
            out = out.header("content-type", ct);
        }
        let resp = self.client.request(out.body(Full::new(body))?).await?;
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok(respond(status, &ct, bytes))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("backend") => {
            let b = Backend::start().await?;
            serve(port("BACKEND_PORT")?, move |req| b.clone().handle(req)).await
        }
        Some("frontend") => {
            let f = Frontend::start()?;
            serve(port("FRONTEND_PORT")?, move |req| f.clone().handle(req)).await
        }
        _ => bail!(
            "usage: todo-app backend|frontend (inside a pwt worktree: `pwt run -- todo-app backend`)"
        ),
    }
}
