//! The delivery workers: a pool of tasks of their own, apart from the relay,
//! so a slow or dead SMTP server never delays the live path, and workers of
//! their own per channel, so it never delays in-app notifications or push. Each takes due
//! deliveries under a lease (the in-app workers are also handed what the
//! relay planned, already under one: [`HandOff`]), renders the event, hands it to its channel and
//! records the outcome: sent, failed with the next attempt time (exponential
//! backoff, full jitter, at least the `Retry-After` asked for), or dead after
//! the last attempt.
//!
//! # Delivery guarantee
//! A delivery is recorded before anything is sent and marked sent right
//! after its channel accepted it. In-app notifications are written with
//! their mark in one transaction: exactly once. An e-mail (or push) can be
//! sent twice only when the instance dies, or loses its database, in the
//! window between the SMTP server's acceptance and the commit of the mark
//! (one round trip to the database); its lease (`NOTIFY_LEASE_SECS`) then
//! runs out and another worker sends it again, with the same `Message-ID`.
//! The lease is renewed right before each send, and a delivery whose claim
//! was lost meanwhile is not sent, so slow earlier sends of a batch cannot
//! make a second worker send the same message.
//! Nothing is lost: a delivery stays due until it is marked sent or dead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::notify::{AfterFailure, RetryPolicy};
use domain::{Envelope, EventBody};
use entity::store::deliveries::{self, Claimed, DeliveryRecord};
use entity::store::users;
use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::channels::{Batched, Channel, Delivered, SendError};
use crate::templates::{self, Context};

/// How the workers run.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Worker tasks in this process.
    pub workers: usize,
    /// Deliveries a worker takes at once.
    pub batch: u64,
    /// How long a taken delivery belongs to its worker.
    pub lease: Duration,
    /// How often idle workers look for due work when nothing wakes them.
    pub poll_interval: Duration,
    /// Retries and dead letters.
    pub retry: RetryPolicy,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Deliveries the channels accepted.
    pub sent: AtomicU64,
    /// Attempts that failed and will be retried.
    pub retried: AtomicU64,
    /// Deliveries that became dead letters.
    pub dead: AtomicU64,
    /// In-app deliveries the relay handed over as it planned them, which
    /// no claim had to take.
    pub handed: AtomicU64,
}

/// Deliveries a worker of a batched channel (in-app) takes at once, by a
/// claim or from the hand-off (the rounds that waited merged): the more of
/// a user's notices one statement writes, the fewer statements. A worker
/// kept busy by hand-offs claims only once a poll interval, so a claim
/// takes as many as a hand-off, or a backlog left to the claims outgrows
/// the workers.
const BATCHED: usize = 512;

/// Relay rounds whose in-app deliveries may wait, handed over, for this
/// instance's in-app workers; when they are all taken, a round plans its
/// in-app deliveries for a claim instead: a backlog waits in the database,
/// for claims, in order. A round whose lease ran out while it waited is
/// left to them too. (With room for 256 rounds, the soak's overloaded
/// workers let whole rounds wait out their 60 s lease.)
const HANDED_ROUNDS: usize = 32;

/// In-app deliveries handed by the relay to this instance's in-app workers
/// as it plans them, so that no claim has to take them: the relay writes
/// them already taken ([`Planned::taken_until`]), and after its commit
/// passes them over with their events. One update per delivery (its mark)
/// instead of two.
#[derive(Debug, Clone)]
pub struct HandOff {
    tx: mpsc::Sender<Round>,
    lease: chrono::Duration,
}

/// One relay round's handed-over deliveries.
#[derive(Debug)]
struct Round {
    /// When their lease ends: after it, a claim may have taken them.
    until: chrono::DateTime<chrono::Utc>,
    taken: Vec<Claimed>,
}

/// Room for one relay round's in-app deliveries, reserved before the round
/// plans them.
pub struct HandOffSlot<'a> {
    permit: mpsc::Permit<'a, Round>,
    /// When the lease of the deliveries planned taken ends.
    pub taken_until: chrono::DateTime<chrono::Utc>,
}

impl HandOff {
    /// Room for a round, if the workers are not already that far behind.
    pub fn reserve(&self) -> Option<HandOffSlot<'_>> {
        let permit = self.tx.try_reserve().ok()?;
        Some(HandOffSlot {
            permit,
            taken_until: entity::store::now() + self.lease,
        })
    }
}

impl HandOffSlot<'_> {
    /// Passes the round's taken deliveries to the workers, once the round
    /// committed them.
    pub fn hand(self, taken: Vec<Claimed>) {
        if !taken.is_empty() {
            self.permit.send(Round {
                until: self.taken_until,
                taken,
            });
        }
    }
}

/// The receiving end of the [`HandOff`], shared by the in-app workers.
type Handed = Arc<Mutex<mpsc::Receiver<Round>>>;

/// The running worker pool.
pub struct Deliverer {
    /// Wakes idle workers (the relay calls it after planning).
    pub wake: Arc<Notify>,
    /// Counters.
    pub stats: Arc<DeliveryStats>,
    /// Where the relay hands in-app deliveries over (when this instance
    /// runs in-app workers).
    pub hand_off: Option<HandOff>,
    handed: Option<Handed>,
    db: DatabaseConnection,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

/// One worker serves one channel, so in-app notifications never wait behind
/// a slow SMTP server or FCM.
struct Worker {
    db: DatabaseConnection,
    channel: Arc<dyn Channel>,
    config: DeliveryConfig,
    stats: Arc<DeliveryStats>,
    wake: Arc<Notify>,
    /// Deliveries the relay handed over (the batched, in-app, channel's).
    handed: Option<Handed>,
    cancel: CancellationToken,
}

impl Deliverer {
    /// Starts `config.workers` workers for these channels; they stop when
    /// `cancel` is cancelled, after the delivery in hand.
    pub fn start(
        db: DatabaseConnection,
        channels: Vec<Arc<dyn Channel>>,
        config: DeliveryConfig,
        cancel: CancellationToken,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        let stats = Arc::new(DeliveryStats::default());
        let tracker = TaskTracker::new();
        let (mut hand_off, mut handed) = (None, None);
        for channel in channels {
            // In-app deliveries are one quick transaction per batch.
            let count = match channel.kind() {
                domain::notify::Channel::InApp => (config.workers / 4).max(1),
                _ => config.workers.max(1),
            };
            let mut own = None;
            if channel.kind() == domain::notify::Channel::InApp {
                let (tx, rx) = mpsc::channel(HANDED_ROUNDS);
                hand_off = Some(HandOff {
                    tx,
                    lease: lease(&config),
                });
                own = Some(Arc::new(Mutex::new(rx)));
                handed.clone_from(&own);
            }
            let worker = Arc::new(Worker {
                db: db.clone(),
                channel,
                config: config.clone(),
                stats: stats.clone(),
                wake: wake.clone(),
                handed: own,
                cancel: cancel.clone(),
            });
            for _ in 0..count {
                tracker.spawn(worker.clone().run());
            }
        }
        tracker.close();
        Self {
            wake,
            stats,
            hand_off,
            handed,
            db,
            cancel,
            tracker,
        }
    }

    /// Stops the workers and waits for them. Call it after the relay
    /// stopped: deliveries handed over but not yet delivered are given
    /// back, due at once, for whichever instance runs next.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.wait().await;
        let Some(handed) = self.handed else { return };
        let mut handed = handed.lock().await;
        handed.close();
        while let Some(round) = handed.recv().await {
            for claimed in round.taken {
                if let Err(err) =
                    deliveries::unclaim(&self.db, &claimed.delivery, chrono::Duration::zero()).await
                {
                    tracing::warn!(delivery.id = %claimed.delivery.id, error = %err, "giving a delivery back failed; its lease will run out");
                }
            }
        }
    }
}

/// `first` and the handed-over rounds waiting after it, up to
/// [`BATCHED`] deliveries.
fn with_waiting(handed: &mut mpsc::Receiver<Round>, first: Round) -> Vec<Round> {
    let mut count = first.taken.len();
    let mut rounds = vec![first];
    while count < BATCHED {
        match handed.try_recv() {
            Ok(more) => {
                count += more.taken.len();
                rounds.push(more);
            }
            Err(_) => break,
        }
    }
    rounds
}

/// The deliveries of `rounds` still under their lease at `now`, and how
/// many others are left to the claims.
fn still_ours(rounds: Vec<Round>, now: chrono::DateTime<chrono::Utc>) -> (Vec<Claimed>, usize) {
    let (mut ours, mut expired) = (Vec::new(), 0);
    for round in rounds {
        if round.until > now {
            ours.extend(round.taken);
        } else {
            expired += round.taken.len();
        }
    }
    (ours, expired)
}

/// The lease under which a worker holds what it took.
fn lease(config: &DeliveryConfig) -> chrono::Duration {
    chrono::Duration::from_std(config.lease).unwrap_or_else(|_| chrono::Duration::seconds(60))
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        let mut claimed_at = tokio::time::Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            if let Some(batch) = self.next_handed() {
                self.process_handed(batch).await;
                // What waits for a claim (planned while the hand-off was
                // full, or left by a dead instance) is looked for at least
                // once a poll interval, however busy the hand-off keeps us.
                if claimed_at.elapsed() < self.config.poll_interval {
                    continue;
                }
            }
            claimed_at = tokio::time::Instant::now();
            let lease = self.lease();
            let channels = [self.channel.kind()];
            let size = if self.channel.batched() {
                self.config.batch.max(BATCHED as u64)
            } else {
                self.config.batch
            };
            let batch = match deliveries::claim_due(&self.db, size, lease, &channels).await {
                Ok(batch) => {
                    backoff = Duration::from_millis(200);
                    batch
                }
                Err(err) => {
                    tracing::warn!(error = %err, "taking due deliveries failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    Some(batch) = self.handed() => self.process_handed(batch).await,
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = self.cancel.cancelled() => return,
                }
                continue;
            }
            if self.channel.batched() {
                self.process_batch(batch).await;
                continue;
            }
            let mut batch = batch.into_iter();
            while let Some(claimed) = batch.next() {
                // A delivery in hand is finished (its send is bounded by
                // the channel's timeout); the rest of the batch is given
                // back untried, for another worker or instance.
                if self.cancel.is_cancelled() {
                    for rest in std::iter::once(claimed).chain(batch) {
                        if let Err(err) =
                            deliveries::unclaim(&self.db, &rest.delivery, chrono::Duration::zero())
                                .await
                        {
                            tracing::warn!(delivery.id = %rest.delivery.id, error = %err, "giving a delivery back failed; its lease will run out");
                        }
                    }
                    return;
                }
                self.process(claimed).await;
            }
        }
    }

    fn lease(&self) -> chrono::Duration {
        lease(&self.config)
    }

    /// A batch the relay handed over, if one waits.
    fn next_handed(&self) -> Option<Vec<Round>> {
        let mut handed = self.handed.as_ref()?.try_lock().ok()?;
        let first = handed.try_recv().ok()?;
        Some(with_waiting(&mut handed, first))
    }

    /// The next batch the relay hands over; never, for a worker that is not
    /// handed any, or once the hand-off closed.
    async fn handed(&self) -> Option<Vec<Round>> {
        let Some(handed) = &self.handed else {
            return std::future::pending().await;
        };
        let mut handed = handed.lock().await;
        let first = handed.recv().await?;
        Some(with_waiting(&mut handed, first))
    }

    /// One delivery, traced as part of the trace of the change its event
    /// announces.
    async fn process(&self, claimed: Claimed) {
        let span = span(&claimed);
        let Claimed {
            delivery, event, ..
        } = claimed;
        self.deliver(delivery, event).instrument(span).await;
    }

    /// Rounds the relay handed over, those whose lease ran out while they
    /// waited left to the claims.
    async fn process_handed(&self, rounds: Vec<Round>) {
        let (batch, expired) = still_ours(rounds, entity::store::now());
        if expired > 0 {
            tracing::warn!(
                deliveries = expired,
                "handed-over in-app deliveries waited out their lease; left to the claims"
            );
        }
        self.stats
            .handed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if !batch.is_empty() {
            self.process_batch(batch).await;
        }
    }

    /// A batch of a [batched](Channel::batched) channel: the other parties'
    /// names read once, each message rendered in its delivery's span, the
    /// whole batch handed over at once, each outcome recorded in its span.
    async fn process_batch(&self, batch: Vec<Claimed>) {
        let ids: Vec<uuid::Uuid> = batch
            .iter()
            .filter_map(|c| counterparty(c.event.user_id, &c.event.body))
            .collect();
        let names = match users::display_names(&self.db, &ids).await {
            Ok(names) => names,
            Err(err) => {
                tracing::warn!(error = %err, "loading the counterparties' names failed");
                Default::default()
            }
        };
        let spans: Vec<tracing::Span> = batch.iter().map(span).collect();
        let items = batch
            .iter()
            .zip(&spans)
            .map(|(c, span)| {
                let ctx = Context {
                    counterparty: counterparty(c.event.user_id, &c.event.body)
                        .and_then(|id| names.get(&id).cloned()),
                    recipient: Some(c.event.user_id),
                };
                span.in_scope(|| Batched {
                    delivery: &c.delivery,
                    message: templates::render(&c.event.body, c.event.occurred_at, &ctx),
                    trace_parent: entity::trace::current(),
                })
            })
            .collect();
        let outcomes = self.channel.deliver_batch(items).await;
        for ((claimed, span), outcome) in batch.iter().zip(spans).zip(outcomes) {
            self.record(&claimed.delivery, outcome)
                .instrument(span)
                .await;
        }
    }

    async fn deliver(&self, delivery: DeliveryRecord, event: Envelope) {
        // Earlier sends of the batch took time: renew the claim, and send
        // nothing if another worker took it meanwhile (no duplicate).
        match deliveries::extend_lease(&self.db, &delivery, self.lease()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery.id = %delivery.id, "delivery claim expired before its turn; left to its new owner");
                return;
            }
            Err(err) => {
                tracing::warn!(delivery.id = %delivery.id, error = %err, "renewing a delivery claim failed; its lease will run out");
                return;
            }
        }
        let ctx = self.context(event.user_id, &event.body).await;
        let outcome = match templates::render(&event.body, event.occurred_at, &ctx) {
            Some(message) => self.channel.deliver(&delivery, &message).await,
            // Nothing to tell: done.
            None => Ok(Delivered::Accepted),
        };
        self.record(&delivery, outcome).await;
    }

    /// Records what became of a delivery: sent, retried later with backoff,
    /// or a dead letter.
    async fn record(&self, delivery: &DeliveryRecord, outcome: Result<Delivered, SendError>) {
        let recorded = match outcome {
            Ok(Delivered::Accepted) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                deliveries::mark_sent(&self.db, delivery).await
            }
            Ok(Delivered::Recorded) => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Ok(Delivered::ClaimLost) => Ok(false),
            Err(SendError::TargetGone(reason)) => {
                tracing::info!(delivery.id = %delivery.id, channel = delivery.channel.as_str(), reason = %reason, "delivery cancelled: its target is gone");
                deliveries::mark_cancelled(&self.db, delivery, &reason).await
            }
            Err(err) => {
                let (reason, after, permanent) = match &err {
                    SendError::Retry { reason, after } => (reason.as_str(), *after, false),
                    SendError::Permanent(reason) | SendError::TargetGone(reason) => {
                        (reason.as_str(), None, true)
                    }
                };
                let attempt = u32::try_from(delivery.attempts).unwrap_or(u32::MAX);
                let decision = if permanent {
                    AfterFailure::GiveUp
                } else {
                    self.config
                        .retry
                        .after_failure(attempt, rand::random::<f64>(), after)
                };
                match decision {
                    AfterFailure::RetryIn(delay) => {
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(delivery.id = %delivery.id, channel = delivery.channel.as_str(), attempt, retry_in_ms = delay.as_millis() as u64, error = reason, "delivery failed; will retry");
                        let due = entity::store::now()
                            + chrono::Duration::from_std(delay).unwrap_or_default();
                        deliveries::mark_failed(&self.db, delivery, reason, Some(due)).await
                    }
                    AfterFailure::GiveUp => {
                        self.stats.dead.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(delivery.id = %delivery.id, channel = delivery.channel.as_str(), attempt, error = reason, "delivery is a dead letter");
                        deliveries::mark_failed(&self.db, delivery, reason, None).await
                    }
                }
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(delivery.id = %delivery.id, "delivery claim lost to another worker (lease expired)");
            }
            Err(err) => {
                // The lease runs out and the delivery is taken again.
                tracing::error!(delivery.id = %delivery.id, error = %err, "recording a delivery outcome failed");
            }
        }
    }

    /// Who the event is for, and the other party's display name (for
    /// transfers and payment requests).
    async fn context(&self, recipient: uuid::Uuid, body: &EventBody) -> Context {
        let base = Context {
            counterparty: None,
            recipient: Some(recipient),
        };
        let Some(id) = counterparty(recipient, body) else {
            return base;
        };
        match users::display_names(&self.db, &[id]).await {
            Ok(mut names) => Context {
                counterparty: names.remove(&id),
                ..base
            },
            Err(err) => {
                tracing::warn!(error = %err, "loading the counterparty's name failed");
                base
            }
        }
    }
}

/// The other party of an event for `recipient` (transfers and payment
/// requests), whose display name the message shows.
fn counterparty(recipient: uuid::Uuid, body: &EventBody) -> Option<uuid::Uuid> {
    match body {
        EventBody::TransactionReceived(m) | EventBody::TransactionSent(m) => m.counterparty_id,
        EventBody::PaymentRequest(c) if c.request.payer_id == recipient => {
            Some(c.request.requester_id)
        }
        EventBody::PaymentRequest(c) => Some(c.request.payer_id),
        _ => None,
    }
}

/// The span of one delivery, in the trace of the change its event announces.
fn span(claimed: &Claimed) -> tracing::Span {
    let channel = claimed.delivery.channel.as_str();
    let span = tracing::info_span!(
        "notify.deliver",
        otel.name = %format_args!("deliver {}", channel.to_ascii_lowercase()),
        otel.kind = "producer",
        notification.channel = channel,
        notification.topic = claimed.event.topic().as_str(),
        notification.attempt = claimed.delivery.attempts,
    );
    entity::trace::continue_from(&span, claimed.trace_parent.as_deref());
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use domain::events::KycStatusChanged;
    use domain::notify::Channel;
    use entity::store::deliveries::Planned;

    fn claimed(at: DateTime<Utc>) -> Claimed {
        let user_id = uuid::Uuid::now_v7();
        let event = Envelope {
            id: uuid::Uuid::now_v7(),
            user_id,
            sequence: 1,
            occurred_at: at,
            body: EventBody::KycStatusChanged(KycStatusChanged {
                status: domain::KycStatus::Approved,
                level: 1,
                reason: None,
            }),
        };
        let planned = Planned {
            id: uuid::Uuid::now_v7(),
            event_id: event.id,
            user_id,
            channel: Channel::InApp,
            target: String::new(),
            taken_until: Some(at),
        };
        Claimed {
            delivery: planned.taken(at),
            event,
            trace_parent: None,
        }
    }

    fn round(until: DateTime<Utc>, n: usize) -> Round {
        Round {
            until,
            taken: (0..n).map(|_| claimed(until)).collect(),
        }
    }

    #[tokio::test]
    async fn waiting_rounds_are_taken_together_up_to_the_batch_and_expired_ones_left() {
        let now = Utc::now();
        let (tx, mut rx) = mpsc::channel(HANDED_ROUNDS);
        let live = now + chrono::Duration::seconds(30);
        tx.send(round(live, 300)).await.expect("send");
        tx.send(round(now - chrono::Duration::seconds(1), 100))
            .await
            .expect("send");
        tx.send(round(live, 200)).await.expect("send");
        tx.send(round(live, 5)).await.expect("send");
        let first = rx.try_recv().expect("first");
        // 300 + 100 + 200 reach the batch: the fourth round waits.
        let rounds = with_waiting(&mut rx, first);
        assert_eq!(
            rounds.iter().map(|r| r.taken.len()).collect::<Vec<_>>(),
            vec![300, 100, 200]
        );
        let (ours, expired) = still_ours(rounds, now);
        assert_eq!((ours.len(), expired), (500, 100));
        let rest = rx.try_recv().expect("the fourth round");
        assert_eq!(rest.taken.len(), 5);
    }
}
