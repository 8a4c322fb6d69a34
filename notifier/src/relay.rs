//! The outbox relay.
//!
//! Each round takes a batch of unpublished events in one database
//! transaction, publishes them to the bus in per-user sequence order, marks
//! them published and commits. On PostgreSQL the round first takes a
//! transaction-scoped advisory lock (and reads nothing without it), then
//! reads the batch in a statement of its own, whose snapshot includes the
//! marks of the relay that held the lock before; so when several relays
//! run (one per API instance) one of them publishes at a time: events are
//! published once in normal operation and a user's events stay in order.
//! A relay that dies mid-batch rolls back; the next round publishes the
//! batch again (at least once: consumers dedupe by event id and sequence).
//!
//! In the same transaction the relay plans each event's deliveries (see
//! [`crate::plan`]) and, once it committed, wakes the delivery workers. The
//! in-app ones it writes already taken and hands to this instance's in-app
//! workers with their events ([`HandOff`]), so no claim has to take them. It
//! never waits for a delivery: e-mail and push run in their own pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use entity::store::deliveries::{self, Claimed};
use entity::store::events::{self, OUTBOX_CHANNEL};
use sea_orm::{DatabaseConnection, TransactionTrait};
use subscriptions::{Bus, Outgoing, Payload};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::deliver::HandOff;
use crate::plan::Planner;

/// Advisory lock key of the relay leader ("wbffrly").
const RELAY_LOCK_KEY: i64 = 0x0077_6266_6672_6c79;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Poll interval when no notification arrives.
    pub poll_interval: Duration,
    /// While events keep coming, how long they gather after a round before
    /// the next: a round costs a transaction and a handful of statements
    /// whatever it carries, so under load fewer, fuller rounds cost less
    /// per event (at most this much later on the bus).
    pub gather: Duration,
    /// Events per round.
    pub batch_size: u64,
    /// PostgreSQL URL to `LISTEN` on; `None` polls only.
    pub listen_url: Option<String>,
    /// Which deliveries events get.
    pub planner: Planner,
    /// Wakes the delivery workers after a batch planned deliveries.
    pub wake_deliveries: Option<Arc<Notify>>,
    /// This instance's in-app workers, to hand the in-app deliveries a
    /// batch plans to, rather than leave them for a claim.
    pub hand_off: Option<HandOff>,
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
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Relay {
    /// Starts the relay task; it stops when `cancel` is cancelled, after the
    /// batch in progress.
    pub fn start(
        db: DatabaseConnection,
        bus: Bus,
        config: RelayConfig,
        cancel: CancellationToken,
    ) -> Relay {
        let stats = Arc::new(RelayStats::default());
        stats.healthy.store(true, Ordering::Release);
        let wake = Arc::new(Notify::new());
        let tracker = TaskTracker::new();
        if let Some(url) = config.listen_url.clone() {
            tracker.spawn(listen(url, wake.clone(), cancel.clone()));
        }
        tracker.spawn(run(db, bus, config, stats.clone(), wake, cancel.clone()));
        tracker.close();
        Relay {
            stats,
            cancel,
            tracker,
        }
    }

    /// Stops after the batch in progress and waits for it.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
    }
}

async fn run(
    db: DatabaseConnection,
    bus: Bus,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Drain everything there is, batch by batch; then whether events
        // were coming.
        let flowing = loop {
            if stop.is_cancelled() {
                return;
            }
            match round(&db, &bus, &config).await {
                Ok((published, to_claim)) => {
                    // Handed-over deliveries wake their workers themselves.
                    if to_claim > 0
                        && let Some(workers) = &config.wake_deliveries
                    {
                        workers.notify_waiters();
                    }
                    stats.healthy.store(true, Ordering::Release);
                    backoff = Duration::from_millis(100);
                    stats
                        .published
                        .fetch_add(published as u64, Ordering::Relaxed);
                    if (published as u64) < config.batch_size {
                        break published > 0;
                    }
                }
                Err(err) => {
                    stats.healthy.store(false, Ordering::Release);
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %format!("{err:#}"), retry_in_ms = backoff.as_millis() as u64, "outbox relay round failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        if flowing && !config.gather.is_zero() {
            // Events are coming: let the next ones gather for a moment and
            // take them in one round (a lone event after a quiet spell
            // still goes at once).
            tokio::select! {
                _ = tokio::time::sleep(config.gather) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// One batch; returns how many events were published and how many
/// deliveries were planned for a claim (not handed over).
async fn round(
    db: &DatabaseConnection,
    bus: &Bus,
    config: &RelayConfig,
) -> anyhow::Result<(usize, usize)> {
    let txn = db.begin().await.context("beginning relay transaction")?;
    // Empty when another relay is publishing: it will get to these events.
    let batch = events::unpublished_as_leader(&txn, config.batch_size, RELAY_LOCK_KEY)
        .await
        .context("reading unpublished events")?;
    if batch.is_empty() {
        return Ok((0, 0));
    }
    // Publish the whole batch first, in one round trip: the live path never
    // waits for planning.
    let mut ids = Vec::with_capacity(batch.len());
    let mut published = Vec::with_capacity(batch.len());
    let mut outgoing = Vec::with_capacity(batch.len());
    for row in batch {
        // Joins the trace of the transaction that wrote the event.
        let span = tracing::info_span!(
            "outbox.publish",
            otel.name = %format_args!("publish {}", row.topic),
            otel.kind = "producer",
            messaging.destination.name = %row.topic,
        );
        entity::trace::continue_from(&span, row.trace_parent.as_deref());
        ids.push(row.id);
        match row.envelope {
            Ok(envelope) => {
                let envelope = Arc::new(envelope);
                // Version-0 rows come from the release that wrote its
                // in-app notifications with the change: planning them would
                // notify twice.
                if row.version >= 1 {
                    published.push((envelope.clone(), row.trace_parent.clone()));
                }
                outgoing.push(Outgoing {
                    payload: Payload::Event(envelope),
                    span,
                });
            }
            // A newer release wrote it (rolling deploy): pass it on as is.
            Err(err) if err.is_from_newer_release() => outgoing.push(Outgoing {
                payload: Payload::Wire {
                    topic: row.topic,
                    wire: row.wire,
                },
                span,
            }),
            // No release can read it; holding it back would hold back every
            // later event. Logged with its id for investigation.
            Err(err) => {
                tracing::error!(event.id = %row.id, topic = %row.topic, error = %err, "unreadable outbox event skipped");
            }
        }
    }
    bus.publish_all(&outgoing)
        .await
        .with_context(|| format!("publishing a batch of {} events", outgoing.len()))?;
    drop(outgoing);
    let refs: Vec<&domain::Envelope> = published.iter().map(|(e, _)| e.as_ref()).collect();
    let mut planned = config
        .planner
        .plan(&txn, &refs)
        .await
        .context("planning deliveries")?;
    let at = entity::store::now();
    let slot = config.hand_off.as_ref().and_then(HandOff::reserve);
    let mut taken = Vec::new();
    if let Some(slot) = &slot {
        let by_id: HashMap<_, _> = published.iter().map(|(e, t)| (e.id, (e, t))).collect();
        for p in planned
            .iter_mut()
            .filter(|p| p.channel == domain::notify::Channel::InApp)
        {
            let Some((event, trace_parent)) = by_id.get(&p.event_id) else {
                continue;
            };
            p.taken_until = Some(slot.taken_until);
            taken.push(Claimed {
                delivery: p.taken(at),
                event: event.as_ref().clone(),
                trace_parent: (*trace_parent).clone(),
            });
        }
    }
    deliveries::plan_with_published(&txn, &planned, &ids, at)
        .await
        .context("marking events published and planning their deliveries")?;
    txn.commit().await.context("committing relay batch")?;
    let handed = taken.len();
    if let Some(slot) = slot {
        slot.hand(taken);
    }
    Ok((ids.len(), planned.len() - handed))
}

/// Wakes the relay on every `NOTIFY`, reconnecting as needed.
async fn listen(url: String, wake: Arc<Notify>, stop: CancellationToken) {
    use sea_orm::sqlx::postgres::PgListener;
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(mut l) => match l.listen(OUTBOX_CHANNEL).await {
                Ok(()) => l,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox LISTEN failed; polling meanwhile");
                    tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = stop.cancelled() => return }
                }
            },
            Err(err) => {
                tracing::warn!(error = %err, "outbox listener could not connect; polling meanwhile");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = stop.cancelled() => return }
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
                _ = stop.cancelled() => return,
            }
        }
    }
}
