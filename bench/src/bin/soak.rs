//! Soak: many transfers through two instances while what they depend on
//! fails under them, then the books, the keys and the live events.
//!
//! The run owns everything it breaks: a private PostgreSQL cluster
//! (`initdb` and `pg_ctl` from `PG_BIN`, as the `postgres` OS user when run
//! as root, trust auth, a free port, its socket in the run's temp dir) and a
//! private `redis-server` (no persistence) on a free port. The shared
//! servers on 5432 and 6379 are never touched. Two release `wallet-bff
//! serve` instances run on them.
//!
//! The load: `transfers` transfers of 0.01 to 5.00 USD with fresh
//! idempotency keys between as many funded users as there are clients
//! (every tenth to one more user, the subscriber), plus one duplicate for
//! every nine, so 10 % of the requests: an earlier request again (one of
//! the last 2,000 sent, perhaps still running), same key and input, which
//! must answer the same transaction. `clients` clients send them, each
//! starting on one instance. A client retries a transport error, a 5xx,
//! `INTERNAL_SERVER_ERROR`, `IDEMPOTENCY_KEY_IN_USE` or `RATE_LIMITED` with
//! the same key on the other instance (as a load balancer would), backing
//! off from 50 ms to 1 s, for up to 120 s; every failed attempt is recorded
//! with its time. Any other error is a refusal and fails the run.
//!
//! On the way, by the share of requests done so the effects stand apart:
//! at 20 % Redis is killed and started again on its port 2 s later; at 35 %
//! the subscriber drops its socket; at 45 % the second instance gets
//! SIGKILL and is started again 2 s later; at 70 % PostgreSQL is stopped
//! (`-m fast`) and started 2 s later; at 85 % the subscriber drops its
//! socket again.
//!
//! The subscriber is the receiving user, on one WebSocket
//! (`graphql-transport-ws`) with `transactionReceived` and `balanceUpdated`
//! from `afterSequence: 0`. Whenever its socket drops or a stream ends, it
//! reconnects (the other instance when one fails) and resumes each stream
//! after the last sequence it saw.
//!
//! After the load the run waits (up to 15 min) until the outbox relay has
//! published every event, and prints how far behind it was (commit to
//! publish), then gives the subscriber a minute to catch up.
//!
//! Then, printed, and the run exits non-zero when one fails: money is
//! conserved (the balances sum to the deposits), every posting balances and
//! every wallet equals its ledger, every wallet holds what the planned
//! transfers leave it, each key made one transfer and every answer for a
//! key names that transfer (at most one of them not `replayed`), and the
//! subscriber saw every event of the outbox for it once, in order, with
//! balance deltas summing to its balance. Also printed: the failed attempts
//! and, per restart, how long requests failed (first failure to last) and
//! when the last request it hit was answered.
//!
//! Usage: `soak <wallet-bff> [transfers] [clients]` (100000, 200);
//! `bench/soak.sh` builds and runs it. Needs `initdb`/`pg_ctl` (Debian's
//! `postgresql`; `PG_BIN`, default `/usr/lib/postgresql/15/bin`) and
//! `redis-server`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{
    Killed, Socket, check_ledger, free_port, gql, percentile, register, scalar, start_redis,
};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter, Statement,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Each sender's deposit, in USD and in cents.
const FUNDING: &str = "1000000";
const FUNDING_CENTS: i64 = 100_000_000;
/// How long a client keeps retrying one request before it gives up.
const RETRY_FOR: Duration = Duration::from_secs(120);
/// One attempt's limit; a timed-out attempt is retried with the same key.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long Redis, the killed instance and PostgreSQL stay down, and the
/// subscriber stays away after dropping its socket.
const OUTAGE: Duration = Duration::from_secs(2);
/// A duplicate repeats one of this many latest fresh requests.
const DUPLICATE_WINDOW: usize = 2_000;
/// How long the relay may take to publish its backlog after the load.
const DRAIN: Duration = Duration::from_secs(900);
/// How long the subscriber may take to catch up after that.
const CATCH_UP: Duration = Duration::from_secs(60);
const DATABASE: &str = "soak";

const TRANSFER: &str = "mutation($k: String!, $i: TransferInput!) { transfer(idempotencyKey: $k, input: $i) { replayed transaction { id amount fromWalletId toWalletId } } }";
/// Error codes a client retries with the same key.
const RETRYABLE: [&str; 3] = [
    "INTERNAL_SERVER_ERROR",
    "IDEMPOTENCY_KEY_IN_USE",
    "RATE_LIMITED",
];

/// The lock's data, also after a panicking holder: a panic already fails
/// the run, and the data stays good for the report.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// splitmix64: the run's randomness, a pure function of the request, so a
/// duplicate re-derives the input of the request it repeats.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `u`th fresh transfer between `senders` users; user `senders` is the
/// subscriber, who receives every tenth.
#[derive(Clone, Copy, Debug)]
struct Planned {
    from: usize,
    to: usize,
    cents: i64,
}

fn planned(u: usize, senders: usize) -> Planned {
    let from = u % senders;
    let to = if u.is_multiple_of(10) {
        senders
    } else {
        (from + 1 + (mix(u as u64) % (senders as u64 - 1)) as usize) % senders
    };
    let cents = 1 + (mix(u as u64 ^ 0x5EED) % 500) as i64;
    Planned { from, to, cents }
}

/// `cents` as the API's decimal string: `1.05`.
fn amount(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// One request of the run: a fresh transfer or a repeat of one.
#[derive(Clone, Copy, Debug)]
enum Step {
    Fresh(usize),
    Duplicate(usize),
}

/// Every tenth request repeats an earlier fresh one, until there is one
/// duplicate per nine fresh transfers.
fn plan(transfers: usize) -> Vec<Step> {
    let duplicates = transfers / 9;
    let mut steps = Vec::with_capacity(transfers + duplicates);
    let (mut fresh, mut dups) = (0, 0);
    while fresh < transfers || dups < duplicates {
        let n = steps.len();
        if (n % 10 == 9 && dups < duplicates && fresh > 0) || fresh == transfers {
            let back = mix(n as u64) as usize % fresh.min(DUPLICATE_WINDOW);
            steps.push(Step::Duplicate(fresh - 1 - back));
            dups += 1;
        } else {
            steps.push(Step::Fresh(fresh));
            fresh += 1;
        }
    }
    steps
}

/// A registered user and its USD wallet.
struct User {
    id: String,
    token: String,
    wallet: String,
}

/// One failed attempt.
struct Failure {
    at_ms: u64,
    kind: String,
    /// The request was a duplicate (it may meet its original running).
    duplicate: bool,
}

/// One answered request.
struct Answer {
    /// The fresh transfer it is (or repeats).
    u: usize,
    duplicate: bool,
    tx: String,
    replayed: bool,
    /// The answer's amount and wallets are the request's.
    matches: bool,
    /// First attempt to answer.
    latency_ms: f64,
    /// When (since the load began) its first attempt failed because the
    /// service was unavailable, if one did.
    first_unavailable_ms: Option<u64>,
    /// When it was answered.
    answered_ms: u64,
}

/// What the clients, the chaos thread and the subscriber share.
struct Shared {
    started: Instant,
    /// The instances' addresses; a restarted instance gets a new one.
    addrs: RwLock<[String; 2]>,
    /// The next step of the plan to send.
    next: AtomicUsize,
    /// Steps finished: answered, refused or given up.
    done: AtomicUsize,
    failures: Mutex<Vec<Failure>>,
    answers: Mutex<Vec<Answer>>,
    /// Requests given up after [`RETRY_FOR`], with their last error.
    given_up: Mutex<Vec<String>>,
    /// Requests answered with an error no retry helps.
    refused: Mutex<Vec<String>>,
    /// Socket drops asked of the subscriber so far.
    drops: AtomicUsize,
}

impl Shared {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn addr(&self, instance: usize) -> String {
        self.addrs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(instance)
            .cloned()
            .unwrap_or_default()
    }
}

/// What one attempt came to.
enum Attempt {
    Answer {
        tx: String,
        replayed: bool,
        amount: String,
        from: String,
        to: String,
    },
    Retry(String),
    Refused(String),
}

async fn attempt(http: &reqwest::Client, addr: &str, token: &str, body: &Value) -> Attempt {
    let sent = http
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Attempt::Retry("timeout".into()),
        Err(_) => return Attempt::Retry("transport".into()),
    };
    let status = resp.status();
    let Ok(text) = resp.text().await else {
        return Attempt::Retry("transport".into());
    };
    if status.is_server_error() {
        return Attempt::Retry(format!("HTTP {}", status.as_u16()));
    }
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return Attempt::Refused(format!("HTTP {status}: {text}"));
    };
    if let Some(errors) = v.get("errors") {
        let code = errors[0]["extensions"]["code"]
            .as_str()
            .unwrap_or("NO_CODE");
        return if RETRYABLE.contains(&code) {
            Attempt::Retry(code.to_owned())
        } else {
            Attempt::Refused(format!("{code}: {errors}"))
        };
    }
    let t = &v["data"]["transfer"];
    let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match (t["transaction"]["id"].as_str(), t["replayed"].as_bool()) {
        (Some(id), Some(replayed)) => Attempt::Answer {
            tx: id.to_owned(),
            replayed,
            amount: field(&t["transaction"]["amount"]),
            from: field(&t["transaction"]["fromWalletId"]),
            to: field(&t["transaction"]["toWalletId"]),
        },
        _ => Attempt::Refused(format!("no transaction in {text}")),
    }
}

/// One client: takes the plan's next step until none is left, and sends
/// it until it is answered, starting on its own instance and switching on
/// every retry.
async fn client(
    shared: Arc<Shared>,
    http: reqwest::Client,
    users: Arc<Vec<User>>,
    steps: Arc<Vec<Step>>,
    c: usize,
) {
    let senders = users.len() - 1;
    let mut instance = c % 2;
    loop {
        let n = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(&step) = steps.get(n) else { return };
        let (u, duplicate) = match step {
            Step::Fresh(u) => (u, false),
            Step::Duplicate(u) => (u, true),
        };
        let p = planned(u, senders);
        let (from, to) = (&users[p.from], &users[p.to]);
        let body = json!({ "query": TRANSFER, "variables": { "k": format!("s-{u}"), "i": { "fromWalletId": from.wallet, "toWalletId": to.wallet, "amount": amount(p.cents) } } });
        let began = Instant::now();
        let mut first_unavailable_ms = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            match attempt(&http, &shared.addr(instance), &from.token, &body).await {
                Attempt::Answer {
                    tx,
                    replayed,
                    amount,
                    from: f,
                    to: t,
                } => {
                    let matches = Decimal::from_str_exact(&amount).ok()
                        == Some(Decimal::new(p.cents, 2))
                        && f == from.wallet
                        && t == to.wallet;
                    lock(&shared.answers).push(Answer {
                        u,
                        duplicate,
                        tx,
                        replayed,
                        matches,
                        latency_ms: began.elapsed().as_secs_f64() * 1e3,
                        first_unavailable_ms,
                        answered_ms: shared.ms(),
                    });
                    break;
                }
                Attempt::Retry(kind) => {
                    let at_ms = shared.ms();
                    let failure = Failure {
                        at_ms,
                        kind: kind.clone(),
                        duplicate,
                    };
                    if unavailable(&failure) {
                        first_unavailable_ms.get_or_insert(at_ms);
                    }
                    lock(&shared.failures).push(failure);
                    instance ^= 1;
                    if began.elapsed() > RETRY_FOR {
                        lock(&shared.given_up).push(format!("s-{u}: {kind}"));
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Attempt::Refused(why) => {
                    lock(&shared.refused).push(format!("s-{u}: {why}"));
                    break;
                }
            }
        }
        shared.done.fetch_add(1, Ordering::SeqCst);
    }
}

/// The private PostgreSQL cluster: where it lives and how to drive it.
#[derive(Clone, Debug)]
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    port: u16,
    /// Root runs the tools as the `postgres` OS user (`initdb` refuses root).
    as_postgres: bool,
}

impl Cluster {
    /// A new cluster under `dir/pg`, trust auth, not started.
    fn init(dir: &Path) -> anyhow::Result<Self> {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned()),
        );
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .context("running id -u")?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let home = dir.join("pg");
        std::fs::create_dir_all(&home).with_context(|| format!("creating {}", home.display()))?;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&home)
                .status()
                .context("running chown")?;
            if !status.success() {
                bail!("chown postgres {} failed", home.display());
            }
        }
        let cluster = Cluster {
            bin,
            data: home.join("data"),
            socket_dir: home.clone(),
            log: home.join("postgres.log"),
            port: free_port()?,
            as_postgres,
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        Ok(cluster)
    }

    /// Runs one of the cluster's tools, as `postgres` when needed.
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let status = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", path.display()))?;
        if !status.success() {
            bail!("{tool} {args:?} failed (log: {})", self.log.display());
        }
        Ok(())
    }

    fn start(&self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.socket_dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
    }

    fn stop(&self, mode: &str) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        )
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// Stops the cluster when the run ends, however it ends.
struct ClusterGuard(Cluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let _ = self.0.stop("immediate");
    }
}

/// `redis-server` on `port`, no persistence, once it accepts connections.
/// One thing done to the system during the load.
struct Event {
    name: &'static str,
    /// Whether requests may fail because of it (not the subscriber's drops).
    breaks: bool,
    at_ms: u64,
    /// From the kill or stop until it was back.
    outage_ms: u64,
}

/// The thread that breaks things, and owns what it breaks.
struct Chaos {
    shared: Arc<Shared>,
    total: usize,
    binary: String,
    cluster: Cluster,
    redis_port: u16,
    dir: PathBuf,
    servers: Vec<Killed>,
    redis: Option<Killed>,
    events: Vec<Event>,
}

impl Chaos {
    fn command(&self, instance: usize) -> Command {
        bench::load_server_command(
            &self.binary,
            &self.cluster.url(DATABASE),
            &format!("redis://127.0.0.1:{}", self.redis_port),
            &self.dir.join(format!("instance-{instance}")),
        )
    }

    /// Blocks until `share` of the requests are done.
    fn wait_for(&self, share: f64) {
        let target = (self.total as f64 * share) as usize;
        while self.shared.done.load(Ordering::SeqCst) < target {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn record(&mut self, name: &'static str, breaks: bool, at_ms: u64) {
        let outage_ms = self.shared.ms() - at_ms;
        println!(
            "  [{:7.1} s] {name} ({} of {} requests done){}",
            at_ms as f64 / 1e3,
            self.shared.done.load(Ordering::SeqCst),
            self.total,
            if breaks {
                format!(", back after {outage_ms} ms")
            } else {
                String::new()
            }
        );
        self.events.push(Event {
            name,
            breaks,
            at_ms,
            outage_ms,
        });
    }

    fn run(mut self) -> anyhow::Result<(Vec<Killed>, Option<Killed>, Vec<Event>)> {
        self.wait_for(0.20);
        let at = self.shared.ms();
        drop(self.redis.take());
        std::thread::sleep(OUTAGE);
        self.redis = Some(start_redis(self.redis_port, &self.dir)?);
        self.record("Redis killed and restarted", true, at);

        self.wait_for(0.35);
        self.shared.drops.fetch_add(1, Ordering::SeqCst);
        let at = self.shared.ms();
        self.record("subscriber drops its socket", false, at);

        self.wait_for(0.45);
        let at = self.shared.ms();
        if let Some(mut killed) = self.servers.pop() {
            killed.0.kill().context("SIGKILL to instance 2")?;
            drop(killed);
        }
        std::thread::sleep(OUTAGE);
        let (server, addr) =
            bench::start_server(self.command(1)).context("restarting instance 2")?;
        self.servers.push(server);
        self.shared
            .addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)[1] = addr;
        self.record("instance 2 SIGKILLed and restarted", true, at);

        self.wait_for(0.70);
        let at = self.shared.ms();
        self.cluster.stop("fast")?;
        std::thread::sleep(OUTAGE);
        self.cluster.start()?;
        self.record("PostgreSQL stopped (fast) and started", true, at);

        self.wait_for(0.85);
        self.shared.drops.fetch_add(1, Ordering::SeqCst);
        let at = self.shared.ms();
        self.record("subscriber drops its socket", false, at);
        Ok((self.servers, self.redis, self.events))
    }
}

/// What the subscriber saw of one stream.
#[derive(Default)]
struct Seen {
    last: i64,
    ids: HashSet<String>,
    duplicates: usize,
    out_of_order: usize,
    /// Sum of `delta` (`balanceUpdated`).
    delta_sum: Decimal,
}

impl Seen {
    fn record(&mut self, id: &str, sequence: i64, delta: Decimal) {
        if !self.ids.insert(id.to_owned()) {
            self.duplicates += 1;
            return;
        }
        if sequence <= self.last {
            self.out_of_order += 1;
        } else {
            self.last = sequence;
        }
        self.delta_sum += delta;
    }
}

#[derive(Default)]
struct Subscriber {
    received: Seen,
    balance: Seen,
    connections: usize,
    dropped_asked: usize,
    dropped_forced: usize,
    failed_connects: usize,
    resubscribed: usize,
    stream_errors: Vec<String>,
}

/// The subscriber's two streams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Received,
    Balance,
}

impl Stream {
    fn query(self, after: i64) -> String {
        match self {
            Stream::Received => format!(
                "subscription {{ transactionReceived(afterSequence: {after}) {{ id sequence transaction {{ id }} }} }}"
            ),
            Stream::Balance => format!(
                "subscription {{ balanceUpdated(afterSequence: {after}) {{ id sequence delta transactionId }} }}"
            ),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Stream::Received => "rx",
            Stream::Balance => "bal",
        }
    }
}

/// Why a socket ended.
enum Ended {
    Forced,
    Asked,
    Stopped,
}

async fn subscribe(ws: &mut Socket, id: &str, query: &str) -> bool {
    ws.send(Message::text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }).to_string(),
    ))
    .await
    .is_ok()
}

/// The subscriber: connects (to the second instance first), runs both
/// streams from the last sequence seen, drops its socket when asked, and
/// reconnects whenever the socket ends, until `stop`.
async fn subscriber(
    shared: Arc<Shared>,
    token: String,
    state: Arc<Mutex<Subscriber>>,
    stop: Arc<AtomicBool>,
) {
    let mut generation = 0usize;
    let mut prefer = 1usize;
    let mut handled_drops = 0;
    while !stop.load(Ordering::SeqCst) {
        generation += 1;
        let (rx_after, bal_after) = {
            let s = lock(&state);
            (s.received.last, s.balance.last)
        };
        let mut ids = [format!("rx-{generation}"), format!("bal-{generation}")];
        let addr = shared.addr(prefer);
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            bench::graphql_ws(&addr, &token, &ids[0], &Stream::Received.query(rx_after)),
        )
        .await;
        let mut ws = match connected {
            Ok(Ok(ws)) => ws,
            Ok(Err(_)) | Err(_) => {
                lock(&state).failed_connects += 1;
                prefer ^= 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if !subscribe(&mut ws, &ids[1], &Stream::Balance.query(bal_after)).await {
            continue;
        }
        lock(&state).connections += 1;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let ended = loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                        let id = v["id"].as_str().unwrap_or_default();
                        let stream = if id == ids[0] { Stream::Received } else if id == ids[1] { Stream::Balance } else { continue };
                        match v["type"].as_str() {
                            Some("next") => {
                                let payload = &v["payload"];
                                if let Some(errors) = payload.get("errors") {
                                    let mut text = errors.to_string();
                                    text.truncate(200);
                                    lock(&state).stream_errors.push(text);
                                }
                                let mut s = lock(&state);
                                let (event, seen) = match stream {
                                    Stream::Received => (&payload["data"]["transactionReceived"], &mut s.received),
                                    Stream::Balance => (&payload["data"]["balanceUpdated"], &mut s.balance),
                                };
                                if let (Some(eid), Some(seq)) = (event["id"].as_str(), event["sequence"].as_i64()) {
                                    let delta = event["delta"].as_str().and_then(|d| Decimal::from_str(d).ok()).unwrap_or_default();
                                    seen.record(eid, seq, delta);
                                }
                            }
                            Some("error" | "complete") => {
                                // The stream ended (an error during the outage): resume it.
                                if let Some(errors) = v.get("payload").filter(|_| v["type"] == "error") {
                                    let mut text = errors.to_string();
                                    text.truncate(200);
                                    lock(&state).stream_errors.push(text);
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                generation += 1;
                                let slot = usize::from(stream == Stream::Balance);
                                ids[slot] = format!("{}-{generation}", stream.prefix());
                                let after = {
                                    let mut s = lock(&state);
                                    s.resubscribed += 1;
                                    match stream { Stream::Received => s.received.last, Stream::Balance => s.balance.last }
                                };
                                if !subscribe(&mut ws, &ids[slot], &stream.query(after)).await {
                                    break Ended::Forced;
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break Ended::Forced,
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {
                    if stop.load(Ordering::SeqCst) {
                        let _ = ws.close(None).await;
                        break Ended::Stopped;
                    }
                    let asked = shared.drops.load(Ordering::SeqCst);
                    if asked > handled_drops {
                        handled_drops = asked;
                        let _ = ws.close(None).await;
                        break Ended::Asked;
                    }
                }
            }
        };
        match ended {
            Ended::Forced => {
                lock(&state).dropped_forced += 1;
                prefer ^= 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ended::Asked => {
                lock(&state).dropped_asked += 1;
                // Away long enough for events to pile up, then back on the
                // instance that is killed next.
                tokio::time::sleep(OUTAGE).await;
                prefer = 1;
            }
            Ended::Stopped => return,
        }
    }
}

/// Registers a user with a USD wallet, funded with [`FUNDING`] unless it is
/// the subscriber.
async fn user(http: &reqwest::Client, addr: &str, i: usize, fund: bool) -> anyhow::Result<User> {
    let account = register(http, addr, &format!("soak{i:04}"))
        .await
        .with_context(|| format!("registering user {i}"))?;
    let wallet = gql(
        http,
        addr,
        Some(&account.token),
        "mutation { openWallet(currency: \"USD\") { id } }",
        json!({}),
    )
    .await
    .with_context(|| format!("opening user {i}'s wallet"))?["openWallet"]["id"]
        .as_str()
        .context("no wallet id")?
        .to_owned();
    if fund {
        gql(
            http,
            addr,
            Some(&account.token),
            "mutation($i: DepositInput!) { deposit(input: $i, idempotencyKey: \"fund\") { wallet { id } } }",
            json!({ "i": { "walletId": wallet, "amount": FUNDING } }),
        )
        .await
        .with_context(|| format!("funding user {i}"))?;
    }
    Ok(User {
        id: account.id,
        token: account.token,
        wallet,
    })
}

/// The relay's lag over published events (`filter` narrows them): p50,
/// p99 and max of `published_at - created_at`.
async fn relay_lag(db: &DatabaseConnection, filter: &str) -> anyhow::Result<String> {
    text(
        db,
        &format!(
            "SELECT format('p50 %s s, p99 %s s, max %s s', \
               round(percentile_cont(0.5) WITHIN GROUP (ORDER BY e)::numeric, 2), \
               round(percentile_cont(0.99) WITHIN GROUP (ORDER BY e)::numeric, 2), \
               round(max(e)::numeric, 2)) \
             FROM (SELECT extract(epoch FROM published_at - created_at)::float8 AS e \
                   FROM outbox_events WHERE published_at IS NOT NULL {filter}) x"
        ),
    )
    .await
}

/// A text value of the first row of `sql`.
async fn text(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .with_context(|| format!("running {sql:?}"))?
        .with_context(|| format!("no row from {sql:?}"))?;
    Ok(row.try_get_by_index::<String>(0)?)
}

async fn decimal(db: &DatabaseConnection, sql: &str) -> anyhow::Result<Decimal> {
    let t = text(db, sql).await?;
    Decimal::from_str_exact(&t).with_context(|| format!("{t:?} from {sql:?}"))
}

/// The outbox's events for the subscriber, by topic: event ids.
async fn outbox(
    db: &DatabaseConnection,
    user_id: &str,
) -> anyhow::Result<HashMap<String, HashSet<String>>> {
    // Raw SQL: the table is read as the migrations made it, whatever the
    // entity crate of this checkout adds.
    let user = uuid::Uuid::parse_str(user_id).context("the subscriber's id")?;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id::text, topic FROM outbox_events WHERE user_id = '{user}'"),
        ))
        .await
        .context("reading the subscriber's outbox events")?;
    let mut by_topic: HashMap<String, HashSet<String>> = HashMap::new();
    for r in rows {
        let (id, topic) = (
            r.try_get_by_index::<String>(0)?,
            r.try_get_by_index::<String>(1)?,
        );
        by_topic.entry(topic).or_default().insert(id);
    }
    Ok(by_topic)
}

/// Whether an attempt failed because the service was unavailable (as
/// opposed to its key being held by an earlier attempt).
fn unavailable(f: &Failure) -> bool {
    f.kind != "IDEMPOTENCY_KEY_IN_USE"
}

/// `first to last` of `at`s as `+first ms .. +last ms (last - first ms)`
/// after `from`.
fn window(ats: impl Iterator<Item = u64> + Clone, from: u64) -> String {
    match (ats.clone().min(), ats.max()) {
        (Some(f), Some(l)) => format!("{} ms (+{} to +{} ms)", l - f, f - from, l - from),
        _ => "-".to_owned(),
    }
}

/// Prints the failed attempts per restart (each failure belongs to the
/// last restart before it): how long the service answered unavailable
/// (transport, timeout, 5xx, `INTERNAL_SERVER_ERROR`: first failure to last)
/// and, of the requests that met it, how many and when the last of them
/// was answered (their retries may then meet `IDEMPOTENCY_KEY_IN_USE` while
/// the failed attempt's lease runs). `IDEMPOTENCY_KEY_IN_USE` on a
/// duplicate is mostly a duplicate meeting its original still running.
fn failure_table(failures: &[Failure], events: &[Event], answers: &[Answer]) {
    println!(
        "| event | at | down for | failed attempts | unavailable: failing for (first to last, after the event) | requests hit: all answered by | kinds |"
    );
    println!("|---|---|---|---|---|---|---|");
    let breaking: Vec<&Event> = events.iter().filter(|e| e.breaks).collect();
    let mut spans = vec![("(before any event)".to_owned(), 0, 0, 0)];
    spans.extend(
        breaking
            .iter()
            .map(|e| (e.name.to_owned(), e.at_ms, e.outage_ms, e.at_ms)),
    );
    for (i, (name, at, down, from)) in spans.iter().enumerate() {
        let end = spans.get(i + 1).map_or(u64::MAX, |n| n.1);
        let mine: Vec<&Failure> = failures
            .iter()
            .filter(|f| f.at_ms >= *at && f.at_ms < end)
            .collect();
        let mut kinds: HashMap<String, usize> = HashMap::new();
        for f in &mine {
            let kind = if f.duplicate {
                format!("{} (duplicate)", f.kind)
            } else {
                f.kind.clone()
            };
            *kinds.entry(kind).or_default() += 1;
        }
        let mut kinds: Vec<_> = kinds.into_iter().collect();
        kinds.sort();
        let out = mine.iter().filter(|f| unavailable(f)).map(|f| f.at_ms);
        let hit: Vec<&Answer> = answers
            .iter()
            .filter(|a| a.first_unavailable_ms.is_some_and(|t| t >= *at && t < end))
            .collect();
        let recovered = hit
            .iter()
            .map(|a| a.answered_ms)
            .max()
            .map_or("-".to_owned(), |last| {
                format!("{} requests, +{} ms", hit.len(), last - from)
            });
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            if i == 0 {
                "-".to_owned()
            } else {
                format!("{:.1} s", *at as f64 / 1e3)
            },
            if i == 0 {
                "-".to_owned()
            } else {
                format!("{down} ms")
            },
            mine.len(),
            window(out, *from),
            recovered,
            kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// One invariant's verdict.
struct Verdict {
    ok: bool,
    what: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: soak <path to wallet-bff> [transfers] [clients]";
    let binary = args.next().context(usage)?;
    let transfers: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()
        .context(usage)?
        .unwrap_or(100_000);
    let clients: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()
        .context(usage)?
        .unwrap_or(200)
        .max(2);
    let senders = clients;

    let dir = std::env::temp_dir().join(format!("wallet-bff-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let cluster = Cluster::init(&dir).context("initdb of the private cluster")?;
    cluster.start().context("starting the private cluster")?;
    let cluster_guard = ClusterGuard(cluster.clone());
    {
        let admin = Database::connect(cluster.url("postgres"))
            .await
            .context("connecting to the private cluster")?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .context("creating the database")?;
        admin.close().await?;
    }
    let redis_port = free_port()?;
    let redis = start_redis(redis_port, &dir)?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let database_url = cluster.url(DATABASE);
    let (servers, addrs) = bench::start_instances(&binary, &database_url, &redis_url, &dir)?;
    println!(
        "soak: {transfers} transfers + {} duplicate retries from {clients} clients over 2 instances ({} and {}); \
         {senders} funded users + 1 subscriber; private PostgreSQL on 127.0.0.1:{}, Redis on 127.0.0.1:{redis_port}",
        transfers / 9,
        addrs[0],
        addrs[1],
        cluster.port
    );

    let http = reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")?;
    let setup = Instant::now();
    let registered: Vec<anyhow::Result<User>> = futures_util::stream::iter(0..=senders)
        .map(|i| user(&http, &addrs[i % 2], i, i < senders))
        .buffered(4)
        .collect()
        .await;
    let users: Vec<User> = registered.into_iter().collect::<anyhow::Result<_>>()?;
    let users = Arc::new(users);
    println!(
        "registered and funded {senders} users and the subscriber in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let steps = Arc::new(plan(transfers));
    let total = steps.len();
    let shared = Arc::new(Shared {
        started: Instant::now(),
        addrs: RwLock::new([addrs[0].clone(), addrs[1].clone()]),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        answers: Mutex::new(Vec::new()),
        given_up: Mutex::new(Vec::new()),
        refused: Mutex::new(Vec::new()),
        drops: AtomicUsize::new(0),
    });
    let sub_user = &users[senders];
    let sub_state = Arc::new(Mutex::new(Subscriber::default()));
    let sub_stop = Arc::new(AtomicBool::new(false));
    let sub_task = tokio::spawn(subscriber(
        shared.clone(),
        sub_user.token.clone(),
        sub_state.clone(),
        sub_stop.clone(),
    ));

    let chaos = Chaos {
        shared: shared.clone(),
        total,
        binary: binary.clone(),
        cluster: cluster.clone(),
        redis_port,
        dir: dir.clone(),
        servers,
        redis: Some(redis),
        events: Vec::new(),
    };
    let chaos = std::thread::spawn(move || chaos.run());
    let progress = {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                println!(
                    "  [{:7.1} s] {} of {total} requests done, {} failed attempts so far",
                    shared.started.elapsed().as_secs_f64(),
                    shared.done.load(Ordering::SeqCst),
                    lock(&shared.failures).len()
                );
            }
        })
    };
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(client(
                shared.clone(),
                http.clone(),
                users.clone(),
                steps.clone(),
                c,
            ))
        })
        .collect();
    for t in tasks {
        t.await.context("a client panicked")?;
    }
    let load_secs = shared.started.elapsed().as_secs_f64();
    progress.abort();
    let (servers, redis, events) = tokio::task::spawn_blocking(move || chaos.join())
        .await
        .context("joining the chaos thread")?
        .map_err(|_| anyhow::anyhow!("the chaos thread panicked"))??;

    // The relay drains its backlog, then the subscriber catches up with
    // what the outbox holds for it.
    let db = Database::connect(&database_url)
        .await
        .context("connecting for the checks")?;
    const UNPUBLISHED: &str = "SELECT count(*) FROM outbox_events WHERE published_at IS NULL";
    let backlog = scalar(&db, UNPUBLISHED).await?;
    let sub_backlog = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL AND user_id = '{}'",
            uuid::Uuid::parse_str(&sub_user.id).context("the subscriber's id")?
        ),
    )
    .await?;
    let draining = Instant::now();
    let mut left = backlog;
    while left > 0 && draining.elapsed() < DRAIN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        left = scalar(&db, UNPUBLISHED).await?;
    }
    println!(
        "relay: {backlog} events unpublished when the load ended ({sub_backlog} of them the subscriber's), {left} left {:.1} s later",
        draining.elapsed().as_secs_f64()
    );
    println!(
        "relay lag, commit to publish: all events {}; the subscriber's {}",
        relay_lag(&db, "").await?,
        relay_lag(
            &db,
            &format!("AND user_id = '{}'", uuid::Uuid::parse_str(&sub_user.id)?)
        )
        .await?
    );
    let expected = outbox(&db, &sub_user.id).await?;
    let empty = HashSet::new();
    let want_rx = expected.get("transaction.received").unwrap_or(&empty);
    let want_bal = expected.get("balance.updated").unwrap_or(&empty);
    let caught_up = Instant::now();
    loop {
        let done = {
            let s = lock(&sub_state);
            want_rx.is_subset(&s.received.ids) && want_bal.is_subset(&s.balance.ids)
        };
        if done || caught_up.elapsed() > CATCH_UP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up_ms = caught_up.elapsed().as_millis();
    sub_stop.store(true, Ordering::SeqCst);
    sub_task.await.context("the subscriber panicked")?;

    // What the clients saw.
    let failures = std::mem::take(&mut *lock(&shared.failures));
    let answers = std::mem::take(&mut *lock(&shared.answers));
    let given_up = std::mem::take(&mut *lock(&shared.given_up));
    let refused = std::mem::take(&mut *lock(&shared.refused));
    let mut latencies: Vec<f64> = answers.iter().map(|a| a.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "load: {total} requests in {load_secs:.1} s ({:.0}/s), {} answered; latency with retries p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms",
        total as f64 / load_secs,
        answers.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for f in &failures {
        *kinds.entry(f.kind.as_str()).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    println!(
        "failed attempts (each retried with its key): {} ({}); requests given up after {} s: {}; refused: {}",
        failures.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        RETRY_FOR.as_secs(),
        given_up.len(),
        refused.len()
    );
    for r in refused.iter().chain(given_up.iter()).take(5) {
        println!("  e.g. {r}");
    }
    failure_table(&failures, &events, &answers);

    let mut verdicts = Vec::new();
    let mut check = |ok: bool, what: String| verdicts.push(Verdict { ok, what });

    check(
        refused.is_empty() && given_up.is_empty(),
        format!(
            "every request answered: {} refused, {} given up",
            refused.len(),
            given_up.len()
        ),
    );

    // Money.
    let balances = decimal(&db, "SELECT coalesce(sum(balance), 0)::text FROM wallets").await?;
    let deposits = decimal(
        &db,
        "SELECT coalesce(sum(amount), 0)::text FROM transactions WHERE kind = 'DEPOSIT' AND status = 'COMPLETED'",
    )
    .await?;
    let funded = Decimal::new(FUNDING_CENTS, 2) * Decimal::from(senders as u64);
    check(
        balances == deposits && deposits == funded,
        format!(
            "money conserved: sum of balances {} = sum of deposits {} = {senders} x {FUNDING}",
            balances.normalize(),
            deposits.normalize()
        ),
    );
    let ledger = check_ledger(&db).await;
    check(
        ledger.is_ok(),
        match &ledger {
            Ok(()) => "every ledger posting balances, every transaction has one, every wallet equals its ledger".to_owned(),
            Err(e) => format!("ledger: {e:#}"),
        },
    );

    // Every wallet holds what the planned transfers leave it.
    if given_up.is_empty() && refused.is_empty() {
        let mut expected = vec![FUNDING_CENTS; senders + 1];
        expected[senders] = 0;
        for u in 0..transfers {
            let p = planned(u, senders);
            expected[p.from] -= p.cents;
            expected[p.to] += p.cents;
        }
        let by_wallet: HashMap<&str, usize> = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.wallet.as_str(), i))
            .collect();
        let mut differ = 0;
        for w in entity::entities::wallets::Entity::find()
            .all(&db)
            .await
            .context("reading the wallets")?
        {
            let Some(&i) = by_wallet.get(w.id.to_string().as_str()) else {
                differ += 1;
                continue;
            };
            if w.balance.0 != Decimal::new(expected[i], 2) {
                differ += 1;
            }
        }
        check(
            differ == 0,
            format!(
                "every wallet equals the plan (funding minus sent plus received): {differ} of {} differ",
                users.len()
            ),
        );
    }

    // Each key applied once, and every answer names its key's transfer.
    let made = scalar(
        &db,
        "SELECT count(*) FROM transactions WHERE kind = 'TRANSFER'",
    )
    .await?;
    let completed = scalar(
        &db,
        "SELECT count(*) FROM idempotency_keys WHERE key LIKE 's-%' AND status = 'COMPLETED'",
    )
    .await?;
    let distinct = scalar(&db, "SELECT count(DISTINCT response->'transaction'->>'id') FROM idempotency_keys WHERE key LIKE 's-%' AND status = 'COMPLETED'").await?;
    let joined = scalar(&db, "SELECT count(*) FROM idempotency_keys k JOIN transactions t ON t.id = (k.response->'transaction'->>'id')::uuid AND t.kind = 'TRANSFER' WHERE k.key LIKE 's-%' AND k.status = 'COMPLETED'").await?;
    let unfinished = scalar(
        &db,
        "SELECT count(*) FROM idempotency_keys WHERE key LIKE 's-%' AND status <> 'COMPLETED'",
    )
    .await?;
    let all_keys = given_up.is_empty() && refused.is_empty();
    check(
        made == completed
            && completed == distinct
            && distinct == joined
            && (!all_keys || completed == transfers as i64),
        format!(
            "each key applied once: {completed} completed keys of {transfers}, {made} transfers, {distinct} distinct transfers named by the keys, {joined} of them found; {unfinished} keys unfinished"
        ),
    );
    let stored: HashMap<String, String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT key, response->'transaction'->>'id' FROM idempotency_keys WHERE key LIKE 's-%' AND status = 'COMPLETED'",
        ))
        .await
        .context("reading the keys")?
        .into_iter()
        .map(|r| Ok((r.try_get_by_index::<String>(0)?, r.try_get_by_index::<String>(1)?)))
        .collect::<Result<_, sea_orm::DbErr>>()?;
    let (mut wrong_tx, mut wrong_shape, mut fresh_twice) = (0, 0, 0);
    let mut fresh_answers: HashMap<usize, usize> = HashMap::new();
    let (mut dup_answers, mut dup_replayed) = (0, 0);
    for a in &answers {
        if stored.get(&format!("s-{}", a.u)) != Some(&a.tx) {
            wrong_tx += 1;
        }
        if !a.matches {
            wrong_shape += 1;
        }
        if !a.replayed {
            let n = fresh_answers.entry(a.u).or_default();
            *n += 1;
            if *n == 2 {
                fresh_twice += 1;
            }
        }
        if a.duplicate {
            dup_answers += 1;
            dup_replayed += usize::from(a.replayed);
        }
    }
    check(
        wrong_tx == 0 && wrong_shape == 0 && fresh_twice == 0,
        format!(
            "replays: {dup_answers} duplicates answered ({dup_replayed} replayed, the rest raced their original), \
             {} answers in all; {wrong_tx} name another transaction than their key's, {wrong_shape} another amount or wallet, \
             {fresh_twice} keys answered as new twice",
            answers.len()
        ),
    );

    // The subscriber against the outbox.
    let sub = std::mem::take(&mut *lock(&sub_state));
    let sub_balance = entity::entities::wallets::Entity::find()
        .filter(entity::entities::wallets::Column::UserId.eq(uuid::Uuid::parse_str(&sub_user.id)?))
        .one(&db)
        .await?
        .context("the subscriber's wallet")?
        .balance
        .0;
    let to_sub = planned_to_subscriber(transfers, senders);
    for (name, seen, want) in [
        ("transactionReceived", &sub.received, want_rx),
        ("balanceUpdated", &sub.balance, want_bal),
    ] {
        let missing = want.difference(&seen.ids).count();
        let extra = seen.ids.difference(want).count();
        let counts_ok = !all_keys || want.len() == to_sub;
        let sum_ok = name != "balanceUpdated" || seen.delta_sum == sub_balance;
        check(
            missing == 0
                && extra == 0
                && seen.duplicates == 0
                && seen.out_of_order == 0
                && counts_ok
                && sum_ok,
            format!(
                "subscriber {name}: {} events in the outbox (transfers to it: {to_sub}), {} received; {missing} missed, {extra} not in the outbox, {} twice, {} out of order{}",
                want.len(),
                seen.ids.len(),
                seen.duplicates,
                seen.out_of_order,
                if name == "balanceUpdated" {
                    format!(
                        "; deltas sum to {} = balance {}",
                        seen.delta_sum.normalize(),
                        sub_balance.normalize()
                    )
                } else {
                    String::new()
                }
            ),
        );
    }
    check(
        sub.dropped_asked + sub.dropped_forced >= 1,
        format!(
            "subscriber reconnected: {} connections, {} drops asked, {} forced, {} failed connects, {} streams resumed on the socket, {} stream errors, caught up {catch_up_ms} ms after the wait for the relay",
            sub.connections,
            sub.dropped_asked,
            sub.dropped_forced,
            sub.failed_connects,
            sub.resubscribed,
            sub.stream_errors.len()
        ),
    );
    for e in sub.stream_errors.iter().take(3) {
        println!("  subscriber stream error e.g.: {e}");
    }
    db.close().await?;

    println!("invariants:");
    for v in &verdicts {
        println!("  [{}] {}", if v.ok { "ok" } else { "FAILED" }, v.what);
    }
    drop(servers);
    drop(redis);
    drop(cluster_guard);
    let failed = verdicts.iter().filter(|v| !v.ok).count();
    if failed > 0 {
        println!("data kept for inspection in {}", dir.display());
        bail!("{failed} invariants failed");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// How many planned transfers go to the subscriber.
fn planned_to_subscriber(transfers: usize, senders: usize) -> usize {
    (0..transfers)
        .filter(|&u| planned(u, senders).to == senders)
        .count()
}
