//! Whole requests against the database's own limit, side by side in one
//! run on one PostgreSQL server:
//! - **read**: the signed-in home screen (`me` with its wallets and the first
//!   20 transactions) from wallet-bff with a bearer token, the same shape
//!   from PostGraphile 4 on the same database, and the same reads as plain
//!   SQL through pgbench (the floor: session, user, wallets, 21
//!   transactions);
//! - **write**: transfers with fresh idempotency keys between 40 users,
//!   against pgbench's TPC-B on a database of its own.
//!
//! One load tool (wrk, 2 threads, 32 connections) drives both GraphQL
//! servers; rounds alternate the contenders so a drift of the machine hits
//! each alike. The server runs as in production apart from the sandbox
//! deposit that funds the users: PostgreSQL, Redis, rate limits off, every
//! risk rule on with thresholds above what a bench user does, tier limits
//! above the amounts moved. After the writes the books are checked: every
//! transaction balances per currency, every wallet equals its ledger, and
//! every answered transfer was applied exactly once.
//!
//! The notifier works beside the transfers while they are measured (its
//! cost is part of a transfer's), and is waited for before the next
//! measurement: after loading and after each round's transfers, until every
//! event is published and no delivery is due; the table shows how long that
//! took.
//!
//! `BENCH_NOTIFIER=off` runs the server without its outbox relay and
//! notifier (`OUTBOX_RELAY_ENABLED=false`, `NOTIFY_WORKERS=0`): the events
//! stay in the outbox and nothing is waited for. Not how the server runs;
//! it tells what a transfer's own transaction costs against TPC-B, apart
//! from the notices it causes.
//!
//! Usage: `api_load <wallet-bff> <postgraphile bin> [seconds] [rounds]`
//! (10 s, 2 rounds); `bench/api.sh` builds and runs it. Reads
//! `TEST_POSTGRES_URL` and `REDIS_URL`; needs `psql`, `pgbench`, `wrk`.
//! `DATABASE_MAX_CONNECTIONS` sets the server's database pool (10, its
//! default); PostGraphile's two workers share the same number.
//! `BENCH_SSLMODE` (`disable`, or `require`) is how all of them, pgbench
//! included, reach PostgreSQL: one transport for every contender.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{
    Killed, check_ledger, database_url, free_port, gql, median, psql, register, scalar, sslmode,
};
use futures_util::StreamExt;
use sea_orm::{Database, DatabaseConnection};
use serde_json::json;

const USERS: usize = 40;
const CONNECTIONS: usize = 32;
const THREADS: usize = 2;
/// Transfers made before measuring, so each user has a history of about
/// `2 * LOAD_TRANSFERS / USERS` rows (among everyone else's) to page.
const LOAD_TRANSFERS: usize = 12_000;
/// pgbench's scale for TPC-B: one branch per connection.
const TPCB_SCALE: usize = 32;

/// The read as the apps send it.
const READ: &str = "{ me { id email wallets { id currency balance availableBalance frozenBalance } } transactions(first: 20) { edges { node { id kind status amount currency createdAt } } } }";

/// The same shape from PostGraphile: the user and its wallets through the
/// foreign key, the page through `bench.user_transactions`.
const READ_POSTGRAPHILE: &str = "query($id: UUID!) { userById(id: $id) { id email walletsByUserId(orderBy: CREATED_AT_ASC) { nodes { id currency balance available frozen } } } userTransactions(uid: $id, page: 21, first: 20) { edges { node { id kind status amount currency createdAt } } } }";

const TRANSFER: &str = "mutation($k: String!, $i: TransferInput!) { transfer(idempotencyKey: $k, input: $i) { transaction { id } } }";

/// Bench-only objects beside the server's tables: the users' ids for
/// pgbench, and a user's history page as one statement (per wallet and
/// side an index range scan, merged: the query wallet-bff sends) for
/// PostGraphile and the floor.
const BENCH_SCHEMA: &str = r"
CREATE SCHEMA bench;
CREATE TABLE bench.ids AS
  SELECT row_number() OVER (ORDER BY u.email)::int AS n, u.id AS user_id, s.id AS session_id
  FROM users u JOIN sessions s ON s.user_id = u.id
  WHERE u.email LIKE 'bench%@bench.example';
ALTER TABLE bench.ids ADD PRIMARY KEY (n);
CREATE FUNCTION bench.user_transactions(uid uuid, page int) RETURNS SETOF public.transactions
LANGUAGE sql STABLE AS $$
  SELECT p.* FROM public.wallets w CROSS JOIN LATERAL (
    (SELECT * FROM public.transactions t WHERE t.from_wallet_id = w.id
      ORDER BY t.created_at DESC, t.id DESC LIMIT page)
    UNION ALL
    (SELECT * FROM public.transactions t WHERE t.to_wallet_id = w.id
      AND (t.from_wallet_id IS NULL
           OR t.from_wallet_id NOT IN (SELECT id FROM public.wallets WHERE user_id = uid))
      ORDER BY t.created_at DESC, t.id DESC LIMIT page)
  ) p
  WHERE w.user_id = uid
  ORDER BY p.created_at DESC, p.id DESC LIMIT page
$$;
ANALYZE;
";

/// The floor: the reads of one home screen as plain SQL.
const FLOOR: &str = r"\set n random(1, 40)
SELECT user_id, created_at FROM sessions WHERE id = (SELECT session_id FROM bench.ids WHERE n = :n) AND revoked_at IS NULL;
SELECT * FROM users WHERE id = (SELECT user_id FROM bench.ids WHERE n = :n);
SELECT * FROM wallets WHERE user_id = (SELECT user_id FROM bench.ids WHERE n = :n) ORDER BY created_at, id;
SELECT * FROM bench.user_transactions((SELECT user_id FROM bench.ids WHERE n = :n), 21);
";

/// Counts answers that are not a 200 without `errors`, per wrk thread,
/// and prints their sum and the successes, and the first failed answer
/// (its status and up to 500 bytes of body).
const LUA_COMMON: &str = r#"
threads = {}
errors = 0
ok = 0
first_error = ""
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function response(status, headers, body)
  if status ~= 200 or body:find('"errors"', 1, true) then
    errors = errors + 1
    if first_error == "" then
      first_error = status .. " " .. body:sub(1, 500):gsub("\n", " ")
    end
  else
    ok = ok + 1
  end
end
function done(summary, latency, requests)
  local e, o, first = 0, 0, ""
  for _, t in ipairs(threads) do
    e = e + t:get("errors")
    o = o + t:get("ok")
    if first == "" then first = t:get("first_error") end
  end
  io.write(string.format("bench-errors %d\nbench-ok %d\nbench-first-error %s\n", e, o, first))
end
function lines(path)
  local out = {}
  for line in io.lines(path) do
    local fields = {}
    for f in line:gmatch("%S+") do table.insert(fields, f) end
    table.insert(out, fields)
  end
  return out
end
"#;

struct User {
    id: String,
    token: String,
    usd: String,
}

/// One load tool run.
struct Load {
    per_sec: f64,
    p99_ms: f64,
    ok: u64,
    errors: u64,
    /// The first failed answer, when there was one.
    first_error: String,
}

fn wrk(script: &Path, url: &str, secs: u64) -> anyhow::Result<Load> {
    let out = Command::new("wrk")
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}");
    }
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .with_context(|| format!("no {prefix:?} in wrk's output: {text}"))
    };
    Ok(Load {
        per_sec: field("Requests/sec:")?.parse()?,
        p99_ms: duration_ms(&field("99%")?)?,
        ok: field("bench-ok")?.parse()?,
        errors: field("bench-errors")?.parse()?,
        first_error: field("bench-first-error").unwrap_or_default(),
    })
}

/// wrk's `1.23ms`, `456.00us`, `1.02s`.
fn duration_ms(v: &str) -> anyhow::Result<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("unknown duration {v:?}")
    };
    Ok(num.parse::<f64>()? * factor)
}

/// pgbench's transactions per second at the bench's connections and
/// threads for `secs`, prepared statements, no vacuum; `script` is a file of
/// its own or, when `None`, its built-in TPC-B.
fn pgbench(database: &str, secs: u64, script: Option<&str>) -> anyhow::Result<f64> {
    let mut cmd = Command::new("pgbench");
    cmd.args(["-n", "-M", "prepared"])
        .args(["-c", &CONNECTIONS.to_string(), "-j", &THREADS.to_string()])
        .args(["-T", &secs.to_string()]);
    if let Some(file) = script {
        cmd.args(["-f", file]);
    }
    let out = cmd
        .arg(database_url(database)?)
        .stderr(Stdio::piped())
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .with_context(|| format!("no tps in pgbench's output: {text}"))?;
    Ok(tps.split_whitespace().next().unwrap_or_default().parse()?)
}

fn start_server(
    binary: &str,
    database_url: &str,
    data_dir: &Path,
    notifier: bool,
) -> anyhow::Result<(Killed, String)> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut cmd = bench::load_server_command(binary, database_url, &redis_url, data_dir);
    if !notifier {
        cmd.env("OUTBOX_RELAY_ENABLED", "false")
            .env("NOTIFY_WORKERS", "0");
    }
    bench::start_server(cmd).with_context(|| format!("starting {binary}"))
}

fn start_postgraphile(bin: &str, database_url: &str) -> anyhow::Result<(Killed, String)> {
    let port = free_port()?;
    let pool = bench::database_pool()?;
    // node-postgres reads `sslmode=require` as `verify-full` unless asked
    // for libpq's meaning (encrypted, certificate not checked), as the
    // others have it.
    let database_url = match sslmode()? {
        "require" => format!("{database_url}&uselibpqcompat=true"),
        _ => database_url.to_owned(),
    };
    let child = Command::new(bin)
        .args([
            "-c",
            &database_url,
            "--schema",
            "public,bench",
            "--host",
            "127.0.0.1",
        ])
        .args(["--port", &port.to_string()])
        // One worker per core, the server's pool shared out between them.
        .args([
            "--cluster-workers",
            "2",
            "--max-pool-size",
            &pool.div_ceil(2).to_string(),
        ])
        .args(["--disable-query-log", "--disable-graphiql"])
        .env("NODE_ENV", "production")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let server = Killed(child);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            bail!("PostGraphile did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((server, addr))
}

/// Whether the server runs its outbox relay and notifier (`BENCH_NOTIFIER`:
/// `on`, the default, or `off`).
fn notifier_on() -> anyhow::Result<bool> {
    match std::env::var("BENCH_NOTIFIER").as_deref() {
        Err(_) | Ok("on") => Ok(true),
        Ok("off") => Ok(false),
        Ok(other) => bail!("BENCH_NOTIFIER={other}: on or off"),
    }
}

/// Waits until every event is published and no delivery is due or in
/// hand: the notifier caught up with what the transfers wrote, so the next
/// measurement does not share the machine with it. How long that took;
/// nothing is waited for without a `notifier`.
async fn drain(db: &DatabaseConnection, notifier: bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    if !notifier {
        // Nothing publishes the events; nothing to wait for.
        return Ok(Duration::ZERO);
    }
    let mut told = false;
    loop {
        let left = scalar(
            db,
            "SELECT (SELECT count(*) FROM outbox_events WHERE published_at IS NULL) \
                  + (SELECT count(*) FROM deliveries WHERE status IN ('PENDING', 'FAILED', 'SENDING'))",
        )
        .await?;
        if left == 0 {
            return Ok(started.elapsed());
        }
        if !told && started.elapsed() > Duration::from_secs(10) {
            // Slower than a backlog drains here: say what is left, once.
            told = true;
            eprintln!(
                "the notifier is still behind after 10 s: {}",
                behind(db).await?
            );
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the notifier is {left} events and deliveries behind after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the notifier has left: events unpublished, and deliveries not
/// finished by channel and status, with their attempts and how far their
/// lease or next attempt is.
async fn behind(db: &DatabaseConnection) -> anyhow::Result<String> {
    use sea_orm::{ConnectionTrait, Statement};
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT 'events unpublished' AS what, count(*) AS n, 0 AS attempts, \
               coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS secs \
               FROM outbox_events WHERE published_at IS NULL \
             UNION ALL \
             SELECT channel || ' ' || status, count(*), max(attempts), \
               coalesce(extract(epoch FROM max(coalesce(lease_until, next_attempt_at)) - now()), 0)::float8 \
               FROM deliveries WHERE status IN ('PENDING', 'FAILED', 'SENDING') GROUP BY channel, status",
        ))
        .await?;
    let mut parts = Vec::new();
    for row in rows {
        let (what, n, attempts, secs): (String, i64, i64, f64) = (
            row.try_get("", "what")?,
            row.try_get("", "n")?,
            row.try_get("", "attempts")?,
            row.try_get("", "secs")?,
        );
        parts.push(format!(
            "{what}: {n} (attempts up to {attempts}, {secs:.1} s)"
        ));
    }
    // And what the database's other sessions are doing: a delivery claimed
    // and not finished is in hand somewhere, waiting or gone.
    let sessions = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT state || coalesce(' on ' || wait_event_type || ':' || wait_event, '') \
               || coalesce(', in a transaction for ' \
                  || round(extract(epoch FROM now() - xact_start)::numeric, 1) || ' s', '') \
               || ': ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS what \
             FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle' \
             ORDER BY xact_start",
        ))
        .await?;
    for row in sessions {
        parts.push(format!("session {}", row.try_get::<String>("", "what")?));
    }
    Ok(parts.join("; "))
}

async fn load_users(http: &reqwest::Client, addr: &str) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for i in 0..USERS {
        let bench::Account { id, token } = register(http, addr, &format!("bench{i:02}")).await?;
        let open = |currency: &'static str| {
            gql(
                http,
                addr,
                Some(&token),
                "mutation($c: String!) { openWallet(currency: $c) { id } }",
                json!({ "c": currency }),
            )
        };
        let usd = open("USD").await?["openWallet"]["id"]
            .as_str()
            .context("wallet")?
            .to_owned();
        open("EUR").await?;
        gql(
            http,
            addr,
            Some(&token),
            "mutation($i: DepositInput!) { deposit(input: $i, idempotencyKey: \"fund\") { wallet { id } } }",
            json!({ "i": { "walletId": usd, "amount": "10000000" } }),
        )
        .await?;
        users.push(User { id, token, usd });
    }
    Ok(users)
}

/// The `n`th transfer's sender and receiver: every ordered pair in turn.
fn pair(n: usize) -> (usize, usize) {
    let from = n % USERS;
    (from, (from + 1 + (n / USERS) % (USERS - 1)) % USERS)
}

async fn load_history(http: &reqwest::Client, addr: &str, users: &[User]) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<serde_json::Value>> =
        futures_util::stream::iter(0..LOAD_TRANSFERS)
            .map(|n| {
                let (from, to) = pair(n);
                gql(
                    http,
                    addr,
                    Some(&users[from].token),
                    TRANSFER,
                    json!({ "k": format!("load-{n}"), "i": { "fromWalletId": users[from].usd, "toWalletId": users[to].usd, "amount": "1.00" } }),
                )
            })
            .buffer_unordered(CONNECTIONS)
            .collect()
            .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// The read scripts (wallet-bff's, PostGraphile's) and pgbench's floor,
/// over the users' ids and tokens in `dir/users`.
fn write_scripts(dir: &Path, users: &[User]) -> anyhow::Result<[PathBuf; 2]> {
    let users_file = dir.join("users");
    std::fs::write(
        &users_file,
        users
            .iter()
            .map(|u| format!("{} {} {}\n", u.id, u.token, u.usd))
            .collect::<String>(),
    )?;
    let users_file = users_file.display().to_string();
    let body = |query: &str| serde_json::to_string(&json!({ "query": query })).expect("json");
    let read = format!(
        r#"{LUA_COMMON}
local users = lines("{users_file}")
local body = [[{}]]
local n = 0
function request()
  n = n + 1
  local u = users[(n + tid) % #users + 1]
  return wrk.format("POST", "/graphql", {{ ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. u[2] }}, body)
end
"#,
        body(READ)
    );
    let read_pgl = format!(
        r#"{LUA_COMMON}
local users = lines("{users_file}")
local n = 0
function request()
  n = n + 1
  local u = users[(n + tid) % #users + 1]
  local body = string.format([[{{"query":%q,"variables":{{"id":"%s"}}}}]], [[{READ_POSTGRAPHILE}]], u[1])
  return wrk.format("POST", "/graphql", {{ ["Content-Type"] = "application/json" }}, body)
end
"#
    );
    let paths = [dir.join("read.lua"), dir.join("read_pgl.lua")];
    for (path, text) in paths.iter().zip([read, read_pgl]) {
        std::fs::write(path, text)?;
    }
    std::fs::write(dir.join("floor.sql"), FLOOR)?;
    Ok(paths)
}

/// The transfer script of one round: keys `w-<round>-<thread>-<n>`, every
/// ordered pair of users in turn.
fn write_script(dir: &Path, round: usize) -> anyhow::Result<PathBuf> {
    let users_file = dir.join("users").display().to_string();
    let write = format!(
        r#"{LUA_COMMON}
local users = lines("{users_file}")
local n = 0
function request()
  n = n + 1
  local from = (n * {THREADS} + tid) % #users
  local to = (from + 1 + math.floor(n / #users) % (#users - 1)) % #users
  local body = string.format([[{{"query":%q,"variables":{{"k":"w-{round}-%d-%d","i":{{"fromWalletId":"%s","toWalletId":"%s","amount":"1.00"}}}}}}]],
    [[{TRANSFER}]], tid, n, users[from + 1][3], users[to + 1][3])
  return wrk.format("POST", "/graphql", {{ ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. users[from + 1][2] }}, body)
end
"#
    );
    let path = dir.join(format!("write{round}.lua"));
    std::fs::write(&path, write)?;
    Ok(path)
}

/// The books after the run: every transaction balances per currency and
/// has its posting, every wallet equals its ledger, there is one transfer
/// per completed key, and one per answer (plus at most the requests in
/// flight when wrk stopped).
async fn check_books(
    db: &DatabaseConnection,
    answered: u64,
    unanswered: u64,
) -> anyhow::Result<()> {
    check_ledger(db).await?;
    // wrk stops with requests in flight: those may be applied unanswered.
    let made = scalar(
        db,
        "SELECT count(*) FROM transactions WHERE kind = 'TRANSFER'",
    )
    .await?
        - LOAD_TRANSFERS as i64;
    let keys = scalar(
        db,
        "SELECT count(*) FROM idempotency_keys WHERE key LIKE 'w-%' AND status = 'COMPLETED'",
    )
    .await?;
    if keys != made {
        bail!("{made} transfers for {keys} completed keys");
    }
    if made < answered as i64 || made > (answered + unanswered) as i64 {
        bail!(
            "{made} transfers for {answered} answered and at most {unanswered} unanswered requests"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: api_load <path to wallet-bff> <path to postgraphile> [seconds] [rounds]";
    let binary = args.next().context(usage)?;
    let postgraphile = args.next().context(usage)?;
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let rounds: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2)
        .max(1);
    let notifier = notifier_on()?;

    let pid = std::process::id();
    let (app_db, tpcb_db) = (
        format!("wallet_bench_api_{pid}"),
        format!("wallet_bench_tpcb_{pid}"),
    );
    for db in [&app_db, &tpcb_db] {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        )?;
        psql("postgres", &format!("CREATE DATABASE {db}"))?;
    }
    let dir = std::env::temp_dir().join(format!("wallet-bff-bench-api-{pid}"));
    std::fs::create_dir_all(&dir)?;
    let app_url = database_url(&app_db)?;
    let (server, addr) = start_server(&binary, &app_url, &dir, notifier)?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let users = load_users(&http, &addr).await?;
    load_history(&http, &addr, &users).await?;
    let loaded = started.elapsed();
    let books: DatabaseConnection = Database::connect(&app_url).await?;
    let caught_up = drain(&books, notifier).await?;
    println!(
        "loaded {USERS} users and {LOAD_TRANSFERS} transfers in {:.1} s; the notifier caught up {:.1} s later",
        loaded.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    psql(&app_db, BENCH_SCHEMA)?;
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", &TPCB_SCALE.to_string()])
        .arg(database_url(&tpcb_db)?)
        .stderr(Stdio::null())
        .status()
        .context("running pgbench -i")?;
    if !init.success() {
        bail!("pgbench -i failed");
    }
    let [read, read_pgl] = write_scripts(&dir, &users)?;
    let floor = dir.join("floor.sql").display().to_string();
    let (pgl, pgl_addr) = start_postgraphile(&postgraphile, &app_url)?;
    // Both answer the shape before anything is measured.
    let mine = gql(&http, &addr, Some(&users[0].token), READ, json!({})).await?;
    let theirs = gql(
        &http,
        &pgl_addr,
        None,
        READ_POSTGRAPHILE,
        json!({ "id": users[0].id }),
    )
    .await?;
    let (a, b) = (
        &mine["transactions"]["edges"],
        &theirs["userTransactions"]["edges"],
    );
    if a.as_array().map(Vec::len) != Some(20)
        || a.as_array().map(Vec::len) != b.as_array().map(Vec::len)
    {
        bail!("the two pages differ: {a} / {b}");
    }

    let mut rows = Vec::new();
    let (mut vs_pgl, mut vs_floor, mut vs_tpcb, mut p99s) = (vec![], vec![], vec![], vec![]);
    let mut floor_latencies = vec![];
    let mut answered = 0;
    for round in 1..=rounds {
        let ours = wrk(&read, &format!("http://{addr}"), secs)?;
        let theirs = wrk(&read_pgl, &format!("http://{pgl_addr}"), secs)?;
        let floor_tps = pgbench(&app_db, secs, Some(&floor))?;
        // Its clients each wait for their answer: the mean latency is the
        // clients over the rate (Little's law; pgbench's "latency average").
        let floor_latency_ms = CONNECTIONS as f64 / floor_tps * 1000.0;
        let transfers = wrk(&write_script(&dir, round)?, &format!("http://{addr}"), secs)?;
        // TPC-B gets the machine to itself, as the read scripts did.
        let behind = drain(&books, notifier).await?;
        let tpcb = pgbench(&tpcb_db, secs, None)?;
        for (name, l) in [
            ("read", &ours),
            ("PostGraphile read", &theirs),
            ("transfer", &transfers),
        ] {
            if l.errors > 0 {
                bail!(
                    "{name}: {} failed answers, the first: {}",
                    l.errors,
                    l.first_error
                );
            }
        }
        answered += transfers.ok;
        vs_pgl.push(ours.per_sec / theirs.per_sec);
        vs_floor.push(ours.per_sec / floor_tps);
        floor_latencies.push(floor_latency_ms);
        vs_tpcb.push(transfers.per_sec / tpcb);
        p99s.push(ours.p99_ms);
        rows.push(format!(
            "| {round} | {:.0} (p99 {:.1} ms) | {:.0} (p99 {:.1} ms) | {:.0} (mean {:.1} ms) | {:.0} (p99 {:.1} ms) | {:.1} s | {:.0} |",
            ours.per_sec, ours.p99_ms, theirs.per_sec, theirs.p99_ms, floor_tps, floor_latency_ms, transfers.per_sec, transfers.p99_ms, behind.as_secs_f64(), tpcb
        ));
    }
    drop(pgl);
    drop(server);
    println!(
        "{CONNECTIONS} connections, {THREADS} wrk threads, {secs} s per measurement, {rounds} rounds; TPC-B at scale {TPCB_SCALE}; database pool {}; sslmode={} for every client; notifier {}",
        bench::database_pool()?,
        sslmode()?,
        if notifier {
            "on"
        } else {
            "off (BENCH_NOTIFIER)"
        }
    );
    println!(
        "| round | wallet-bff read/s | PostGraphile 4 read/s | plain-SQL floor/s | wallet-bff transfers/s | notifier caught up after | pgbench TPC-B/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "median ratios: read / PostGraphile {:.2}, read / floor {:.2}, transfers / TPC-B {:.2}; read p99 {:.1} ms (the floor's own mean latency {:.1} ms)",
        median(vs_pgl),
        median(vs_floor),
        median(vs_tpcb),
        median(p99s),
        median(floor_latencies)
    );
    check_books(&books, answered, (CONNECTIONS * rounds) as u64).await?;
    books.close().await?;
    for db in [&app_db, &tpcb_db] {
        psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        )?;
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "books after {answered} answered transfers: balanced, every wallet equals its ledger, one transfer per completed key"
    );
    Ok(())
}
