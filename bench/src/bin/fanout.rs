//! Commit-to-client latency of live events over two instances.
//!
//! Starts two instances of the server binary on a fresh PostgreSQL database
//! and a private Redis, signs up N users (10,000 by default) with a wallet
//! each, and opens one `graphql-transport-ws` connection per user running
//! `balanceUpdated`, alternately on the two instances. Then it commits
//! `balance.updated` events at a steady rate (1,000 a second by default),
//! each for the next user in a shuffled round, ten per transaction, written
//! by the store's own `events::append_all` as a transfer writes them. Each
//! event carries its wallet's real state with a delta of zero (what a hold
//! sends), so the books are not touched.
//!
//! The path measured is the live one: commit, the trigger's `NOTIFY`, the
//! relay of whichever instance holds its lock, Redis pub/sub, both
//! instances' hubs, the resolver, the WebSocket. Latency is from the
//! instant the bench's `COMMIT` returned to the instant the subscriber read
//! the message (one process, one monotonic clock). A first round gives
//! every user one event and waits for all of them, so every subscription is
//! known to be live before the measured round starts.
//!
//! Usage: `fanout <path to wallet-bff> [subscribers] [events/s] [seconds]`
//! (10,000, 1,000, 30). Reads `TEST_POSTGRES_URL`; needs `psql` and
//! `redis-server`. The open-file limit must allow the subscribers (one
//! socket each in this process, half that in each instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{
    Killed, free_port, gql, graphql_ws, median, percentile, pg_url, psql, register, rss_kib,
};
use domain::events::{BalanceUpdated, EventBody};
use futures_util::{StreamExt, stream};
use sea_orm::{Database, DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Events per transaction.
const PER_COMMIT: usize = 10;
/// Requests in flight while signing up.
const SIGN_UP_CONCURRENCY: usize = 16;

/// A subscriber: its user and the wallet its events are about.
struct Subscriber {
    user_id: Uuid,
    wallet: domain::records::WalletRecord,
}

/// Signs up user `i` on `addr` and opens its wallet.
async fn sign_up(
    http: &reqwest::Client,
    db: &DatabaseConnection,
    addr: &str,
    i: usize,
) -> anyhow::Result<(String, Subscriber)> {
    let account = register(http, addr, &format!("fan{i}")).await?;
    let opened = gql(
        http,
        addr,
        Some(&account.token),
        "mutation { openWallet(currency: \"USD\") { id } }",
        json!({}),
    )
    .await?;
    let wallet_id: Uuid = opened["openWallet"]["id"]
        .as_str()
        .context("no wallet id")?
        .parse()?;
    let wallet = entity::store::wallets::get(db, wallet_id)
        .await?
        .context("the opened wallet is not in the database")?;
    let user_id = account.id.parse()?;
    Ok((account.token, Subscriber { user_id, wallet }))
}

/// What the subscribers saw: event id and when it arrived.
type Arrival = (Uuid, Instant);

/// One subscriber's connection: every `next` message's event id goes to
/// `arrivals`, until the socket closes.
async fn listen(
    addr: String,
    token: String,
    arrivals: mpsc::UnboundedSender<Arrival>,
    connected: mpsc::Sender<anyhow::Result<()>>,
) {
    let mut ws =
        match graphql_ws(&addr, &token, "1", "subscription { balanceUpdated { id } }").await {
            Ok(ws) => {
                let _ = connected.send(Ok(())).await;
                ws
            }
            Err(err) => {
                let _ = connected.send(Err(err)).await;
                return;
            }
        };
    drop(connected);
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let at = Instant::now();
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if value["type"] != "next" {
            eprintln!("subscriber got {value}");
            continue;
        }
        if let Some(id) = value["payload"]["data"]["balanceUpdated"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
        {
            let _ = arrivals.send((id, at));
        }
    }
}

/// Commits `total` events at `rate` a second, `PER_COMMIT` per
/// transaction, for the subscribers in turn from `start`; returns each
/// event's commit instant.
async fn commit_events(
    db: &DatabaseConnection,
    subscribers: &Arc<Vec<Subscriber>>,
    start: usize,
    total: usize,
    rate: usize,
) -> anyhow::Result<HashMap<Uuid, Instant>> {
    let commits = Arc::new(Mutex::new(HashMap::with_capacity(total)));
    let period = Duration::from_secs_f64(PER_COMMIT as f64 / rate as f64);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = start;
    let mut written = 0;
    while written < total {
        tick.tick().await;
        let count = PER_COMMIT.min(total - written);
        let batch: Vec<(Uuid, EventBody)> = (0..count)
            .map(|k| {
                let s = &subscribers[(next + k) % subscribers.len()];
                let body =
                    BalanceUpdated::of(&s.wallet, rust_decimal::Decimal::ZERO, Uuid::now_v7());
                (s.user_id, EventBody::BalanceUpdated(body))
            })
            .collect();
        next += count;
        written += count;
        let db = db.clone();
        let commits = commits.clone();
        tasks.spawn(async move {
            let txn = db.begin().await?;
            let envelopes = entity::store::events::append_all(&txn, batch).await?;
            txn.commit().await?;
            let at = Instant::now();
            let mut commits = commits.lock().expect("commit map");
            for e in envelopes {
                commits.insert(e.id, at);
            }
            anyhow::Ok(())
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let commits = std::mem::take(&mut *commits.lock().expect("commit map"));
    Ok(commits)
}

/// Gathers arrivals until every committed event arrived or `patience`
/// passed without a new one; returns each arrived event's commit instant
/// and latency (ms), how many events did not arrive and how many arrived
/// twice.
async fn gather(
    arrivals: &mut mpsc::UnboundedReceiver<Arrival>,
    commits: &HashMap<Uuid, Instant>,
    patience: Duration,
) -> (Vec<(Instant, f64)>, usize, usize) {
    let mut seen: HashMap<Uuid, Instant> = HashMap::with_capacity(commits.len());
    let mut doubled = 0;
    let mut stray = 0;
    while seen.len() < commits.len() {
        match tokio::time::timeout(patience, arrivals.recv()).await {
            Ok(Some((id, at))) => {
                if !commits.contains_key(&id) {
                    stray += 1;
                } else if seen.insert(id, at).is_some() {
                    doubled += 1;
                }
            }
            _ => break,
        }
    }
    if stray > 0 {
        eprintln!("{stray} arrivals of events from an earlier round");
    }
    let latencies = seen
        .iter()
        .map(|(id, at)| {
            let committed = commits[id];
            (
                committed,
                at.saturating_duration_since(committed).as_secs_f64() * 1000.0,
            )
        })
        .collect();
    (latencies, commits.len() - seen.len(), doubled)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let usage = "usage: fanout <path to wallet-bff> [subscribers] [events/s] [seconds]";
    let mut args = std::env::args().skip(1);
    let binary = args.next().context(usage)?;
    let mut number = |default: usize| -> anyhow::Result<usize> {
        Ok(args
            .next()
            .map(|s| s.parse())
            .transpose()
            .context(usage)?
            .unwrap_or(default))
    };
    let n = number(10_000)?.max(2);
    let rate = number(1_000)?.max(PER_COMMIT);
    let seconds = number(30)?.max(1);

    let dir = std::env::temp_dir().join(format!("wallet-bff-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database = format!("bench_fanout_{}", std::process::id());
    psql("postgres", &format!("CREATE DATABASE {database}"))?;
    let database_url = format!("{}/{database}", pg_url());
    let redis_port = free_port()?;
    let _redis = bench::start_redis(redis_port, &dir)?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let (servers, addrs) = bench::start_instances(&binary, &database_url, &redis_url, &dir)?;
    let result = run(&servers, &addrs, &database_url, n, rate, seconds).await;
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    )?;
    result
}

async fn run(
    servers: &[Killed],
    addrs: &[String],
    database_url: &str,
    n: usize,
    rate: usize,
    seconds: usize,
) -> anyhow::Result<()> {
    let db = Database::connect(database_url).await?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let signed_up: Vec<anyhow::Result<(String, Subscriber)>> = stream::iter(0..n)
        .map(|i| {
            let (http, db, addr) = (&http, &db, &addrs[i % addrs.len()]);
            async move { sign_up(http, db, addr, i).await }
        })
        .buffered(SIGN_UP_CONCURRENCY)
        .collect()
        .await;
    let mut tokens = Vec::with_capacity(n);
    let mut subscribers = Vec::with_capacity(n);
    for s in signed_up {
        let (token, subscriber) = s?;
        tokens.push(token);
        subscribers.push(subscriber);
    }
    eprintln!(
        "{n} users signed up in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let rss_before: Vec<u64> = servers
        .iter()
        .map(|s| rss_kib(s.0.id()))
        .collect::<Result<_, _>>()?;
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let (connected_tx, mut connected) = mpsc::channel(64);
    for (i, token) in tokens.into_iter().enumerate() {
        tokio::spawn(listen(
            addrs[i % addrs.len()].clone(),
            token,
            arrivals_tx.clone(),
            connected_tx.clone(),
        ));
        // Keep the handshakes in flight bounded.
        if i >= 64 {
            connected
                .recv()
                .await
                .context("a subscriber task ended")??;
        }
    }
    drop(connected_tx);
    while let Some(ok) = connected.recv().await {
        ok?;
    }
    eprintln!("{n} subscribers connected");

    // Shuffle who gets the next event, so consecutive events (and the users
    // in one transaction) land on both instances and far apart in the table.
    let mut order: Vec<usize> = (0..n).collect();
    {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rng());
    }
    let subscribers: Arc<Vec<Subscriber>> = Arc::new({
        let mut by_index: Vec<Option<Subscriber>> = subscribers.into_iter().map(Some).collect();
        order
            .iter()
            .map(|&i| by_index[i].take().expect("each once"))
            .collect()
    });

    // Warm-up: one event for every subscriber, all of which must arrive.
    let warm = commit_events(&db, &subscribers, 0, n, rate).await?;
    let (_, missing, _) = gather(&mut arrivals, &warm, Duration::from_secs(30)).await;
    if missing > 0 {
        bail!("{missing} of {n} subscribers got no warm-up event: not every subscription is live");
    }
    let rss_after: Vec<u64> = servers
        .iter()
        .map(|s| rss_kib(s.0.id()))
        .collect::<Result<_, _>>()?;

    let total = rate * seconds;
    let began = Instant::now();
    let commits = commit_events(&db, &subscribers, n, total, rate).await?;
    let committed_in = began.elapsed().as_secs_f64();
    let (arrived, missing, doubled) =
        gather(&mut arrivals, &commits, Duration::from_secs(30)).await;
    // Where the slow ones were: p99 per second of commits, on stderr.
    let mut by_second: Vec<Vec<f64>> = vec![Vec::new(); seconds + 1];
    for (committed, ms) in &arrived {
        let second = committed.saturating_duration_since(began).as_secs() as usize;
        by_second[second.min(seconds)].push(*ms);
    }
    let per_second: Vec<String> = by_second
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            format!("{:.0}", percentile(&v, 0.99))
        })
        .collect();
    eprintln!("p99 (ms) by second of commit: {}", per_second.join(" "));
    let mut latencies: Vec<f64> = arrived.into_iter().map(|(_, ms)| ms).collect();
    latencies.sort_by(f64::total_cmp);

    println!(
        "subscribers: {n} (one connection each, {} per instance)",
        n / addrs.len()
    );
    println!(
        "events: {total} committed in {committed_in:.1} s ({:.0}/s, {PER_COMMIT} per transaction)",
        total as f64 / committed_in
    );
    println!(
        "arrived: {} (missing {missing}, twice {doubled})",
        latencies.len()
    );
    println!(
        "commit to client, ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (median {:.1})",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        latencies.last().copied().unwrap_or(f64::NAN),
        median(latencies.clone()),
    );
    for (i, (before, after)) in rss_before.iter().zip(&rss_after).enumerate() {
        println!(
            "instance {i}: {:.1} KiB resident per subscriber ({} KiB before the sockets, {} after)",
            after.saturating_sub(*before) as f64 / (n / addrs.len()) as f64,
            before,
            after
        );
    }
    if missing > 0 || doubled > 0 {
        bail!("{missing} events missing, {doubled} arrived twice");
    }
    Ok(())
}
