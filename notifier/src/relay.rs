//! The outbox relay.
//!
//! Each round takes a batch of unpublished events in one database
//! transaction, publishes them to the bus in per-user sequence order, marks
//! them published and commits. On PostgreSQL the round first takes a
//! transaction-scoped advisory lock, so when several relays run (one per API
//! instance) one of them publishes at a time: events are published once in
//! normal operation and a user's events stay in order. A relay that dies
//! mid-batch rolls back; the next round publishes the batch again (at least
//! once: consumers dedupe by event id and sequence).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use entity::store::events::{self, OUTBOX_CHANNEL, StoredEvent};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};
use subscriptions::{Bus, Event};
use tokio::sync::{Notify, watch};

/// Advisory lock key of the relay leader ("wbffrly").
const RELAY_LOCK_KEY: i64 = 0x0077_6266_6672_6c79;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// Events per round.
    pub batch_size: u64,
    /// PostgreSQL URL to `LISTEN` on; `None` polls only.
    pub listen_url: Option<String>,
}

/// Counters for health and metrics.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Events published since start.
    pub published: AtomicU64,
    /// Rounds that failed since start.
    pub failures: AtomicU64,
    /// Whether the last round succeeded.
    pub healthy: AtomicBool,
}

/// A running relay.
pub struct Relay {
    /// Its counters.
    pub stats: Arc<RelayStats>,
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl Relay {
    /// Starts the relay task.
    pub fn start(db: DatabaseConnection, bus: Bus, config: RelayConfig) -> Relay {
        let stats = Arc::new(RelayStats::default());
        stats.healthy.store(true, Ordering::Release);
        let (stop, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        if let Some(url) = config.listen_url.clone() {
            tokio::spawn(listen(url, wake.clone(), stop_rx.clone()));
        }
        let task = tokio::spawn(run(db, bus, config, stats.clone(), wake, stop_rx));
        Relay { stats, task, stop }
    }

    /// Stops after the batch in progress and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    db: DatabaseConnection,
    bus: Bus,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Drain everything there is, batch by batch.
        loop {
            if *stop.borrow() {
                return;
            }
            match round(&db, &bus, config.batch_size).await {
                Ok(published) => {
                    stats.healthy.store(true, Ordering::Release);
                    backoff = Duration::from_millis(100);
                    stats
                        .published
                        .fetch_add(published as u64, Ordering::Relaxed);
                    if (published as u64) < config.batch_size {
                        break;
                    }
                }
                Err(err) => {
                    stats.healthy.store(false, Ordering::Release);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %format!("{err:#}"), retry_in_ms = backoff.as_millis() as u64, "outbox relay round failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One batch; returns how many events were published.
async fn round(db: &DatabaseConnection, bus: &Bus, batch_size: u64) -> anyhow::Result<usize> {
    let txn = db.begin().await.context("beginning relay transaction")?;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let row = txn
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                format!("SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEY}) AS leader"),
            ))
            .await
            .context("taking the relay lock")?;
        let leader = row
            .map(|r| r.try_get::<bool>("", "leader"))
            .transpose()
            .context("reading the relay lock")?
            .unwrap_or(false);
        if !leader {
            // Another relay is publishing; it will get to these events.
            return Ok(0);
        }
    }
    let batch: Vec<StoredEvent> = events::unpublished(&txn, batch_size)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ids = Vec::with_capacity(batch.len());
    for e in &batch {
        bus.publish(&Event {
            id: e.id,
            user_id: e.user_id,
            sequence: e.sequence,
            topic: e.topic,
            payload: e.payload.clone(),
        })
        .await
        .with_context(|| format!("publishing event {}", e.id))?;
        ids.push(e.id);
    }
    events::mark_published(&txn, &ids)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    txn.commit().await.context("committing relay batch")?;
    Ok(batch.len())
}

/// Wakes the relay on every `NOTIFY`, reconnecting as needed.
async fn listen(url: String, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(mut l) => match l.listen(OUTBOX_CHANNEL).await {
                Ok(()) => l,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox LISTEN failed; polling meanwhile");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = stop.changed() => return }
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "outbox listener could not connect; polling meanwhile");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = stop.changed() => return }
            }
        };
        // Anything committed while we were not listening is picked up now.
        wake.notify_one();
        loop {
            tokio::select! {
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox listener lost its connection");
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}
