//! The embedded default's start: how long from `exec` until `/readyz`
//! answers 200, and the idle resident memory (VmRSS) two seconds later.
//!
//! Runs the server binary with nothing but `DATA_DIR` and a fixed port (no
//! `DATABASE_URL`, no `REDIS_URL`: SQLite and the in-process bus), first on
//! an empty data directory (migrations run) and then restarted on it, five
//! times each, and prints the medians. The targets: ready within 100 ms,
//! idle under 32 MB.
//!
//! Usage: `embedded_start <path to wallet-bff>` (a release build).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::{Killed, free_port, median, rss_kib};

const RUNS: usize = 5;

/// `GET /readyz` answered 200.
fn ready(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// One start on `dir`: milliseconds to ready, KiB resident when idle.
fn start(binary: &str, dir: &std::path::Path) -> anyhow::Result<(f64, u64)> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let began = Instant::now();
    let child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", dir)
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let server = Killed(child);
    while !ready(&addr) {
        if began.elapsed() > Duration::from_secs(30) {
            bail!("not ready within 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(server.0.id())?;
    drop(server);
    Ok((ms, rss))
}

fn main() -> anyhow::Result<()> {
    let binary = std::env::args()
        .nth(1)
        .context("usage: embedded_start <path to wallet-bff>")?;
    let (mut first, mut again, mut rss) = (vec![], vec![], vec![]);
    for run in 0..RUNS {
        let dir =
            std::env::temp_dir().join(format!("wallet-bff-embedded-{}-{run}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (ms, kib) = start(&binary, &dir)?;
        first.push(ms);
        rss.push(kib as f64 / 1024.0);
        let (ms, kib) = start(&binary, &dir)?;
        again.push(ms);
        rss.push(kib as f64 / 1024.0);
        std::fs::remove_dir_all(&dir)?;
    }
    println!("| embedded default, {RUNS} runs | median |");
    println!("|---|---|");
    println!(
        "| ready after start, empty data directory (migrations) | {:.0} ms |",
        median(first)
    );
    println!(
        "| ready after start, existing data directory | {:.0} ms |",
        median(again)
    );
    println!("| idle resident memory | {:.1} MB |", median(rss));
    Ok(())
}
