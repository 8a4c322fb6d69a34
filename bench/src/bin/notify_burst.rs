//! The notifier under a burst of transfers, and the live path beside it.
//!
//! Runs twice in one invocation: once against the tests' SMTP server
//! (`scripts/smtp/sink.py`, Debian's aiosmtpd) answering at once, once
//! against one that answers each message only after a delay. Each run starts
//! the server binary on a fresh PostgreSQL database with e-mail on, lets 10
//! senders pay 10 receivers (8 requests in flight), and measures
//! - e-mails per second: the receiver's and the sender's e-mail of every
//!   transfer, from the first request to the last message the SMTP server
//!   accepted;
//! - commit-to-subscriber latency of `transactionReceived`: the event's
//!   `occurredAt` (the commit's clock) to its arrival on the receiver's
//!   WebSocket (the same machine's clock).
//!
//! A slow SMTP server must slow the e-mails, never the live events.
//!
//! Usage: `notify_burst <path to wallet-bff> [transfers] [slow SMTP delay ms]`
//! Reads `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`)
//! and `TEST_SMTP_PYTHON` (default `/usr/bin/python3`); needs `psql`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bench::{Killed, free_port, gql, graphql_ws, median, pg_url, psql};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const PAIRS: usize = 10;
const IN_FLIGHT: usize = 8;

fn start_sink(dir: &std::path::Path, delay_ms: u64) -> anyhow::Result<(Killed, u16)> {
    let port = free_port()?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/smtp/sink.py");
    let python =
        std::env::var("TEST_SMTP_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
    let child = Command::new(python)
        .args([
            script,
            "--port",
            &port.to_string(),
            "--dir",
            &dir.display().to_string(),
            "--delay-ms",
            &delay_ms.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the SMTP sink (python3-aiosmtpd)")?;
    let sink = Killed(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((sink, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the SMTP sink did not start")
}

fn start_server(
    binary: &str,
    database_url: &str,
    smtp_port: u16,
) -> anyhow::Result<(Killed, String)> {
    let mut cmd = Command::new(binary);
    cmd.arg("serve").env_clear();
    // NOTIFY_* and SMTP_POOL_SIZE from the bench's environment tune the server.
    for (k, v) in std::env::vars() {
        if k.starts_with("NOTIFY_") || k == "SMTP_POOL_SIZE" {
            cmd.env(k, v);
        }
    }
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret-00")
        .env("RATE_LIMITS_ENABLED", "false")
        // The burst moves more than an unverified user may.
        .env("TIER_LIMITS", "0:*:*=1000000000/1000000000")
        // Hundreds of transfers a minute between the same users are what
        // the velocity rule holds; the burst measures the notifier.
        .env(
            "RISK_RULES",
            "velocity.weight=0,above_history.weight=0,new_recipient.weight=0",
        )
        .env("SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("SMTP_FROM", "Wallet <no-reply@wallet.bench>")
        .env("RUST_LOG", "warn,wallet_bff=info");
    bench::start_server(cmd).with_context(|| format!("starting {binary}"))
}

struct User {
    token: String,
    wallet: String,
}

async fn user(http: &reqwest::Client, addr: &str, name: &str) -> anyhow::Result<User> {
    let token = bench::register(http, addr, name).await?.token;
    let w = gql(
        http,
        addr,
        Some(&token),
        "mutation { openWallet(currency: \"USD\") { id } }",
        json!({}),
    )
    .await?;
    let wallet = w["openWallet"]["id"].as_str().context("wallet")?.to_owned();
    Ok(User { token, wallet })
}

/// Arrival times and `occurredAt`s of `transactionReceived` on one socket.
async fn listen(
    addr: String,
    token: String,
    seen: Arc<Mutex<Vec<Duration>>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut ws = graphql_ws(
        &addr,
        &token,
        "r",
        "subscription { transactionReceived { occurredAt } }",
    )
    .await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let arrived = SystemTime::now();
            let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let Some(at) = v["payload"]["data"]["transactionReceived"]["occurredAt"].as_str()
            else {
                continue;
            };
            let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) else {
                continue;
            };
            let committed =
                SystemTime::UNIX_EPOCH + Duration::from_micros(at.timestamp_micros().max(0) as u64);
            let latency = arrived.duration_since(committed).unwrap_or_default();
            seen.lock().expect("lock").push(latency);
        }
    }))
}

struct Figures {
    transfers_per_sec: f64,
    emails_per_sec: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn mails(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

async fn run(
    binary: &str,
    label: &str,
    transfers: usize,
    delay_ms: u64,
) -> anyhow::Result<Figures> {
    let db = format!("wallet_bench_notify_{}_{label}", std::process::id());
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    psql("postgres", &format!("CREATE DATABASE {db}"))?;
    let dir = std::env::temp_dir().join(format!(
        "wallet-bff-bench-smtp-{}-{label}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let (sink, port) = start_sink(&dir, delay_ms)?;
    let (server, addr) = start_server(binary, &format!("{}/{db}", pg_url()), port)?;
    let http = reqwest::Client::new();
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..PAIRS {
        let s = user(&http, &addr, &format!("sender{i}")).await?;
        gql(
            &http,
            &addr,
            Some(&s.token),
            "mutation($i: DepositInput!) { deposit(input: $i, idempotencyKey: \"fund\") { wallet { id } } }",
            json!({ "i": { "walletId": s.wallet, "amount": "1000000" } }),
        )
        .await?;
        senders.push(s);
        receivers.push(user(&http, &addr, &format!("receiver{i}")).await?);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut listeners = Vec::new();
    for r in &receivers {
        listeners.push(listen(addr.clone(), r.token.clone(), seen.clone()).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let results: Vec<anyhow::Result<Value>> = futures_util::stream::iter(0..transfers)
        .map(|n| {
            let (s, r) = (&senders[n % PAIRS], &receivers[n % PAIRS]);
            gql(
                &http,
                &addr,
                Some(&s.token),
                "mutation($i: TransferInput!, $k: String!) { transfer(input: $i, idempotencyKey: $k) { transaction { id } } }",
                json!({ "i": { "fromWalletId": s.wallet, "toWalletId": r.wallet, "amount": "1.00" }, "k": format!("b{n}") }),
            )
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let burst = started.elapsed();
    for r in results {
        r?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while mails(&dir) < 2 * transfers {
        if Instant::now() > deadline {
            bail!("only {} of {} e-mails arrived", mails(&dir), 2 * transfers);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mailed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().expect("lock").len() < transfers {
        if Instant::now() > deadline {
            bail!(
                "only {} of {transfers} events arrived",
                seen.lock().expect("lock").len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for l in listeners {
        l.abort();
    }
    drop(server);
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    let mut latencies = seen.lock().expect("lock").clone();
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(latencies.len() - 1)]
    };
    Ok(Figures {
        transfers_per_sec: transfers as f64 / burst.as_secs_f64(),
        emails_per_sec: (2 * transfers) as f64 / mailed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    })
}

fn row(name: &str, f: &Figures) -> String {
    format!(
        "| {name} | {:.0} | {:.1} | {:.1} ms | {:.1} ms | {:.1} ms |",
        f.transfers_per_sec,
        f.emails_per_sec,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.max.as_secs_f64() * 1e3
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args.next().context(
        "usage: notify_burst <path to wallet-bff> [transfers] [slow SMTP delay ms] [rounds]",
    )?;
    let transfers: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(400);
    let delay: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let rounds: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3)
        .max(1);
    let slow_name = format!("answers after {delay} ms");
    let mut lines = Vec::new();
    let (mut p50s, mut p99s, mut mails) = (Vec::new(), Vec::new(), Vec::new());
    // Healthy and slow alternate, so drifts of the machine hit both alike.
    for round in 1..=rounds {
        let healthy = run(&binary, &format!("healthy{round}"), transfers, 0).await?;
        let slow = run(&binary, &format!("slow{round}"), transfers, delay).await?;
        lines.push(row(&format!("{round}: answers at once"), &healthy));
        lines.push(row(&format!("{round}: {slow_name}"), &slow));
        p50s.push(slow.p50.as_secs_f64() / healthy.p50.as_secs_f64().max(1e-6));
        p99s.push(slow.p99.as_secs_f64() / healthy.p99.as_secs_f64().max(1e-6));
        mails.push(slow.emails_per_sec / healthy.emails_per_sec);
    }
    println!(
        "{transfers} transfers per run, {PAIRS} sender/receiver pairs, {IN_FLIGHT} requests in flight; 2 e-mails per transfer"
    );
    println!(
        "| round: SMTP server | transfers/s | e-mails/s | transactionReceived p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|");
    for line in lines {
        println!("{line}");
    }
    println!(
        "median ratio slow / healthy over {rounds} rounds: e-mails/s {:.2}, transactionReceived p50 {:.2}, p99 {:.2}",
        median(mails),
        median(p50s),
        median(p99s)
    );
    Ok(())
}
