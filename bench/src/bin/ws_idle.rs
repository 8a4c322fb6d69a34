//! Memory per idle WebSocket subscriber.
//!
//! Starts the server binary (embedded SQLite, in a temporary directory) once
//! per measurement, opens N authenticated `graphql-transport-ws`
//! connections that each run one `balanceUpdated` subscription, and reads the
//! server's resident memory (VmRSS) before and after. The server as shipped
//! (its own WebSocket buffer sizes) and with tungstenite's 128 KiB buffers
//! run in the same invocation, so their ratio is what to compare. As
//! shipped it also measures the stages on the way, so
//! the difference between two is what that stage holds per connection: a
//! TCP connection that sent nothing (the socket and the HTTP connection's
//! task), a WebSocket that was acknowledged (the upgrade, the protocol's
//! buffers, our connection's task and its session registration), and the
//! subscription (the operation's stream and the hub's channel).
//!
//! Usage: `cargo run -p bench --bin ws_idle -- <path to wallet-bff> [connections]`

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use bench::{graphql_ws, graphql_ws_acked, rss_kib};
use serde_json::{Value, json};

struct Server {
    child: Child,
    addr: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The WebSocket buffer sizes a server runs with.
#[derive(Clone, Copy)]
enum Buffers {
    /// The server's defaults (`WS_READ_BUFFER_BYTES` and
    /// `WS_WRITE_BUFFER_BYTES` unset).
    Shipped,
    /// tungstenite's own defaults: 128 KiB each.
    Tungstenite,
}

fn start(binary: &str, buffers: Buffers) -> anyhow::Result<Server> {
    let dir = std::env::temp_dir().join(format!(
        "wallet-bff-bench-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    let mut command = Command::new(binary);
    command.env_clear();
    if let Buffers::Tungstenite = buffers {
        let size = (128 * 1024).to_string();
        command
            .env("WS_READ_BUFFER_BYTES", &size)
            .env("WS_WRITE_BUFFER_BYTES", &size);
    }
    let mut child = command
        .arg("serve")
        .env("DATA_DIR", &dir)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("JWT_SECRET", "bench-secret-bench-secret-bench-secret-00")
        .env("WS_KEEPALIVE_SECS", "3600")
        .env("WS_MAX_SUBSCRIPTIONS", "5")
        // Every connection comes from 127.0.0.1: the per-address limits would
        // cut the benchmark short.
        .env("RATE_LIMITS_ENABLED", "false")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut addr = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let addr = addr.context("the server did not print its address")?;
    Ok(Server { child, addr, dir })
}

async fn token(addr: &str) -> anyhow::Result<String> {
    let body: Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": "mutation { register(input: {email: \"bench@example.com\", password: \"bench password 123\", displayName: \"Bench\"}) { accessToken } }" }))
        .send()
        .await?
        .json()
        .await?;
    body["data"]["register"]["accessToken"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("register failed: {body}"))
}

/// How far each measured connection goes.
#[derive(Clone, Copy)]
enum Stage {
    /// Connected over TCP, nothing sent.
    Tcp,
    /// A WebSocket with its `connection_ack`, running nothing.
    Acked,
    /// Running one `balanceUpdated` subscription.
    Subscribed,
}

/// An open connection, kept until it is dropped.
type Held = Box<dyn std::any::Any + Send>;

async fn open(addr: &str, token: &str, stage: Stage) -> anyhow::Result<Held> {
    Ok(match stage {
        Stage::Tcp => Box::new(tokio::net::TcpStream::connect(addr).await?),
        Stage::Acked => Box::new(graphql_ws_acked(addr, token).await?),
        Stage::Subscribed => Box::new(
            graphql_ws(
                addr,
                token,
                "1",
                "subscription { balanceUpdated { sequence } }",
            )
            .await?,
        ),
    })
}

async fn measure(binary: &str, buffers: Buffers, n: usize, stage: Stage) -> anyhow::Result<f64> {
    let server = start(binary, buffers)?;
    let token = token(&server.addr).await?;
    // Warm up the allocator and the lazily built parts of the server.
    let warm: Vec<Held> = futures_util::future::try_join_all(
        (0..20).map(|_| open(&server.addr, &token, Stage::Subscribed)),
    )
    .await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.child.id())?;
    let mut sockets = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(100) {
        let count = 100.min(n - chunk * 100);
        let batch = futures_util::future::try_join_all(
            (0..count).map(|_| open(&server.addr, &token, stage)),
        )
        .await?;
        sockets.extend(batch);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.child.id())?;
    drop(sockets);
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .context("usage: ws_idle <path to wallet-bff> [connections]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let ours = measure(&binary, Buffers::Shipped, n, Stage::Subscribed).await?;
    let default = measure(&binary, Buffers::Tungstenite, n, Stage::Subscribed).await?;
    let tcp = measure(&binary, Buffers::Shipped, n, Stage::Tcp).await?;
    let acked = measure(&binary, Buffers::Shipped, n, Stage::Acked).await?;
    println!("idle subscribed WebSocket connections: {n}");
    println!(
        "as shipped (the server's WS_* defaults):            {ours:8.1} KiB RSS per connection"
    );
    println!(
        "tungstenite defaults (128 KiB read / 128 KiB write): {default:8.1} KiB RSS per connection"
    );
    if ours > 0.0 {
        println!("ratio default / ours: {:.1}x", default / ours);
    }
    println!("as shipped, by stage (KiB RSS per connection):");
    println!("  a TCP connection that sent nothing:   {tcp:8.1}");
    println!(
        "  + upgrade and connection_ack:         {:8.1}",
        acked - tcp
    );
    println!(
        "  + one balanceUpdated subscription:    {:8.1}",
        ours - acked
    );
    Ok(())
}
