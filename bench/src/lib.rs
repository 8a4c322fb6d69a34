//! Tools that measure wallet-bff; see BENCHMARKS.md for the figures.
//!
//! # Layout
//! - `src/bin/ws_idle.rs`: resident memory per idle, subscribed WebSocket
//!   connection, for our buffer sizes against tungstenite's defaults.
//! - `src/bin/notify_burst.rs`: a burst of transfers through the notifier to
//!   a real SMTP server, healthy and slow: e-mails per second, and the
//!   commit-to-subscriber latency of the same transfers' live events.
//! - `src/bin/history_query.rs`: the transaction-history page query as it
//!   was (one `OR` over both wallet columns) against the merged per-wallet
//!   index range scans, side by side on one PostgreSQL database.
//!
//! - `src/bin/api_load.rs`: whole requests (a read and a transfer) against
//!   PostGraphile 4 on the same data and pgbench's plain-SQL floor and
//!   TPC-B, with one load tool (wrk); `bench/api.sh` runs it.
//! - `src/bin/fanout.rs`: commit-to-client latency of live events at a
//!   steady rate over many subscribers on two instances and Redis.
//! - `src/bin/soak.rs`: many transfers from many clients through two
//!   instances while Redis, one instance and PostgreSQL are restarted, with
//!   a subscriber that reconnects; then the books, the keys and the events;
//!   `bench/soak.sh` runs it.
//!
//! Shared here: [`graphql_ws`], an authenticated `graphql-transport-ws`
//! connection with one subscription running; [`gql`], one GraphQL request;
//! [`start_server`], the server binary on a free port; [`psql`] and
//! [`Killed`] for the databases and processes a run starts; [`scalar`] and
//! [`check_ledger`] for the books after a run.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `ws://{addr}/graphql/ws` with `token`, waits for the
/// `connection_ack` and starts `query` as operation `id`.
pub async fn graphql_ws(addr: &str, token: &str, id: &str, query: &str) -> anyhow::Result<Socket> {
    let mut ws = graphql_ws_acked(addr, token).await?;
    ws.send(Message::text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }).to_string(),
    ))
    .await?;
    Ok(ws)
}

/// A `graphql-transport-ws` connection signed in with `token` and
/// acknowledged, running nothing yet.
pub async fn graphql_ws_acked(addr: &str, token: &str) -> anyhow::Result<Socket> {
    let mut req = format!("ws://{addr}/graphql/ws").into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
            .to_string(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("connection_ack") => {}
        other => bail!("no connection_ack: {other:?}"),
    }
    Ok(ws)
}

/// A child process killed (and reaped) when dropped, so a failing run
/// leaves nothing behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The PostgreSQL server runs use: `TEST_POSTGRES_URL`, without a database.
pub fn pg_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// How every client of a measurement reaches PostgreSQL: `BENCH_SSLMODE`,
/// `disable` (the default) or `require`, the same for wallet-bff, PostGraphile,
/// pgbench and psql. Left to themselves they differ: sqlx and libpq take TLS
/// when the server offers it (`prefer`), node-postgres does not, and TLS
/// costs both ends of every round trip.
pub fn sslmode() -> anyhow::Result<&'static str> {
    match std::env::var("BENCH_SSLMODE").as_deref() {
        Err(_) | Ok("disable") => Ok("disable"),
        Ok("require") => Ok("require"),
        Ok(other) => bail!("BENCH_SSLMODE={other:?}: `disable` or `require`"),
    }
}

/// The URL of `database` on [`pg_url`]'s server, with [`sslmode`].
pub fn database_url(database: &str) -> anyhow::Result<String> {
    Ok(format!("{}/{database}?sslmode={}", pg_url(), sslmode()?))
}

/// Runs one statement with `psql` on `database` of [`pg_url`].
pub fn psql(database: &str, sql: &str) -> anyhow::Result<()> {
    let status = Command::new("psql")
        .args([
            &database_url(database)?,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .stdout(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql {sql:?} failed");
    }
    Ok(())
}

/// A port nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server's warnings and errors a run passes on to its own standard
/// error; the rest are counted.
const PASSED_ON: usize = 20;

/// Starts `cmd` (the server binary with its `serve` arguments and
/// environment; `BIND_ADDR` is set here) and waits for the address it
/// prints. Its first warnings and errors go to standard error, so a run
/// that went wrong says why.
pub fn start_server(mut cmd: Command) -> anyhow::Result<(Killed, String)> {
    let mut child = cmd
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut passed = 0;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                passed += 1;
                if passed <= PASSED_ON {
                    eprintln!("server: {line}");
                } else if passed == PASSED_ON + 1 {
                    eprintln!("server: (further warnings and errors not shown)");
                }
            }
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let server = Killed(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the server did not print its address")?;
    Ok((server, addr))
}

/// One GraphQL request to `http://{addr}/graphql`; its `data`, or an error
/// holding the whole answer when it has `errors`.
pub async fn gql(
    http: &reqwest::Client,
    addr: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut req = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body: Value = req.send().await?.json().await?;
    if body.get("errors").is_some() {
        bail!("{body}");
    }
    Ok(body["data"].clone())
}

/// A signed-up account on the server at `addr`: its access token and id.
#[derive(Debug)]
pub struct Account {
    pub id: String,
    pub token: String,
}

/// Registers `{name}@bench.example` and returns its token and id.
pub async fn register(http: &reqwest::Client, addr: &str, name: &str) -> anyhow::Result<Account> {
    let reg = gql(
        http,
        addr,
        None,
        "mutation($i: RegisterInput!) { register(input: $i) { accessToken user { id } } }",
        json!({ "i": { "email": format!("{name}@bench.example"), "password": "bench password 123", "displayName": name } }),
    )
    .await?;
    let field = |v: &Value| v.as_str().map(str::to_owned);
    Ok(Account {
        token: field(&reg["register"]["accessToken"]).context("no access token")?,
        id: field(&reg["register"]["user"]["id"]).context("no user id")?,
    })
}

/// The first column of the first row of `sql` as an integer (a count).
pub async fn scalar(db: &DatabaseConnection, sql: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .with_context(|| format!("running {sql:?}"))?
        .with_context(|| format!("no row from {sql:?}"))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The ledger's own invariants: every transaction's postings sum to zero
/// per currency, every transaction has a posting, and every wallet's
/// available and held balances equal the sums of its ledger lines.
pub async fn check_ledger(db: &DatabaseConnection) -> anyhow::Result<()> {
    let unbalanced = scalar(db, "SELECT count(*) FROM (SELECT transaction_id, currency FROM ledger_entries GROUP BY 1, 2 HAVING sum(amount) <> 0) x").await?;
    let unposted = scalar(db, "SELECT count(*) FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.transaction_id = t.id)").await?;
    if unbalanced != 0 || unposted != 0 {
        bail!("{unbalanced} unbalanced postings, {unposted} transactions without one");
    }
    for w in entity::entities::wallets::Entity::find()
        .all(db)
        .await
        .context("reading the wallets")?
    {
        let (available, held) = entity::store::payments::ledger_balances(db, w.id).await?;
        if available != w.available.0.normalize() || held != w.frozen.0.normalize() {
            bail!("wallet {} differs from its ledger", w.id);
        }
    }
    Ok(())
}

/// The median of `xs`: the middle value, or the mean of the two middle
/// values of an even count (so two rounds do not report their better one).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The server's database pool in a bench: `DATABASE_MAX_CONNECTIONS` from
/// the bench's own environment, else the server's default of 10. A
/// contender given a pool (PostGraphile) gets the same number in all.
pub fn database_pool() -> anyhow::Result<u32> {
    match std::env::var("DATABASE_MAX_CONNECTIONS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("DATABASE_MAX_CONNECTIONS={v:?} is not a positive number")),
        Err(_) => Ok(10),
    }
}

/// `wallet-bff serve` set up for load: only the given database, Redis and
/// data directory, the pool of [`database_pool`], rate limits off, tier
/// limits far above any amount, and every risk rule on (reading its facts)
/// with thresholds no bench user reaches, though they pay the same people
/// hundreds of times a minute.
pub fn load_server_command(
    binary: &str,
    database_url: &str,
    redis_url: &str,
    data_dir: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", redis_url)
        .env("DATA_DIR", data_dir)
        .env(
            "DATABASE_MAX_CONNECTIONS",
            // As given: the server refuses a value that is not a number.
            std::env::var("DATABASE_MAX_CONNECTIONS").unwrap_or_else(|_| "10".to_owned()),
        )
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret-00")
        .env("ACCESS_TOKEN_TTL_SECS", "7200")
        .env("RATE_LIMITS_ENABLED", "false")
        .env("TIER_LIMITS", "0:*:*=1000000000/1000000000")
        .env(
            "RISK_RULES",
            "velocity.count=1000000000,velocity.large_multiple=1000000000,history.multiple=1000000000",
        )
        .env("RUST_LOG", "warn,wallet_bff=info");
    cmd
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()
        .context("VmRSS")
}

/// A private `redis-server` on `port` that keeps nothing on disk, once it
/// accepts connections.
pub fn start_redis(port: u16, dir: &Path) -> anyhow::Result<Killed> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let redis = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("redis-server did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(redis)
}

/// The `p`th percentile (0 to 1) of sorted `xs`: the value at the rounded
/// rank; 0 for none.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

/// Two instances of `binary` ([`load_server_command`]) on the same database
/// and Redis, each with a data directory of its own under `dir`: the
/// processes and their addresses.
pub fn start_instances(
    binary: &str,
    database_url: &str,
    redis_url: &str,
    dir: &Path,
) -> anyhow::Result<(Vec<Killed>, Vec<String>)> {
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..2 {
        let (server, addr) = start_server(load_server_command(
            binary,
            database_url,
            redis_url,
            &dir.join(format!("instance-{i}")),
        ))
        .with_context(|| format!("starting instance {}", i + 1))?;
        servers.push(server);
        addrs.push(addr);
    }
    Ok((servers, addrs))
}
