//! Subscriptions: replay from storage after `afterSequence`, then live events
//! from the bus, with no gap and no duplicate.
//!
//! The stream subscribes to the bus *before* it reads storage, and drops any
//! live event whose sequence it has already passed. Every event committed
//! before the storage read is in the replay; every later one is published
//! after the bus subscription exists. A user's sequences commit in order (the
//! sequence comes from a row lock held to commit), so a live event never
//! overtakes a missing earlier one. When the bus reconnects after a failure
//! the stream reads the gap from storage itself; a subscriber too slow for
//! its buffer is ended with `LIMIT_EXCEEDED` and `afterSequence` to resume.
//! A replay from before the events still kept (`OUTBOX_RETENTION_SECS`) is
//! ended with `REPLAY_UNAVAILABLE`: the client refetches its state instead of
//! silently missing events.

use async_graphql::{Context, ErrorExtensions, ID, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use std::sync::Arc;

use domain::{DomainError, Envelope, ErrorCode, EventBody, Role, Topic};
use entity::store::events;
use futures_util::Stream;
use subscriptions::{Audience, Filter, Interrupted};
use uuid::Uuid;

use super::scalars::Money;
use super::types::{Transaction, Wallet};
use super::{parse_id, parts};
use crate::error::{ApiError, Result, coded};
use crate::state::AppState;

/// Events replayed per storage read.
const REPLAY_PAGE: u64 = 500;
/// Users whose last sequence an all-users stream remembers for dedupe.
const MAX_TRACKED_USERS: usize = 100_000;

/// A change of a wallet's balances.
#[derive(SimpleObject, Debug, Clone)]
pub struct BalanceUpdate {
    /// Event id (dedupe by it).
    pub id: ID,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// The wallet after the change.
    pub wallet: Wallet,
    /// Change of the total balance (negative for money out; 0 for holds).
    pub delta: Money,
    /// The transaction that caused it.
    pub transaction_id: ID,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
}

/// Money received from another user.
#[derive(SimpleObject, Debug, Clone)]
pub struct TransactionEvent {
    /// Event id (dedupe by it).
    pub id: ID,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// The transfer.
    pub transaction: Transaction,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
}

/// A change of the user's KYC status.
#[derive(SimpleObject, Debug, Clone)]
pub struct KycStatusEvent {
    /// Event id (dedupe by it).
    pub id: ID,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// New status.
    pub status: super::kyc::KycStatus,
    /// KYC level reached.
    pub level: i32,
    /// Reviewer's reason (rejections).
    pub reason: Option<String>,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
}

/// What happened to a movement after it was made.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::events::TransactionChange")]
pub enum TransactionChange {
    /// The risk checks held it: its funds are set aside pending review.
    Held,
    /// Compliance released it: it went through.
    Released,
    /// Compliance rejected it: its funds are available again.
    Rejected,
    /// Staff reversed it; `compensation` is the reversal.
    Reversed,
    /// Part of a card deposit was refunded; `compensation` is the refund.
    Refunded,
}

/// A movement of the caller that changed after it was made.
#[derive(SimpleObject, Debug, Clone)]
pub struct TransactionUpdate {
    /// Event id (dedupe by it).
    pub id: ID,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// The movement as it is now.
    pub transaction: Transaction,
    /// What happened.
    pub change: TransactionChange,
    /// The reversal or refund, when there is one.
    pub compensation: Option<Transaction>,
    /// The reason staff gave.
    pub reason: Option<String>,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
}

/// What happened to a payment request.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::events::RequestChange")]
pub enum PaymentRequestChange {
    /// It was made.
    Created,
    /// The payer paid it.
    Paid,
    /// The payer declined it.
    Declined,
}

/// A payment request made to or by the caller, made or answered.
#[derive(SimpleObject, Debug, Clone)]
pub struct PaymentRequestUpdate {
    /// Event id (dedupe by it).
    pub id: ID,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// The request (the other party's name is in `paymentRequests`).
    pub request_id: ID,
    /// What happened.
    pub change: PaymentRequestChange,
    /// Status after the change.
    pub status: super::requests::PaymentRequestStatus,
    /// The amount.
    pub amount: Money,
    /// Whether the caller is the payer.
    pub direction: super::requests::RequestDirection,
    /// The transfer that paid it.
    pub transaction_id: Option<ID>,
    /// When the change was committed.
    pub occurred_at: DateTime<Utc>,
}

fn transaction_update(e: &Envelope) -> Result<TransactionUpdate> {
    let EventBody::TransactionUpdated(u) = &e.body else {
        return Err(unexpected(e));
    };
    Ok(TransactionUpdate {
        id: ID(e.id.to_string()),
        sequence: e.sequence,
        transaction: u.transaction.clone().into(),
        change: u.change.into(),
        compensation: u.compensation.clone().map(Into::into),
        reason: u.reason.clone(),
        occurred_at: e.occurred_at,
    })
}

fn payment_request_update(e: &Envelope) -> Result<PaymentRequestUpdate> {
    let EventBody::PaymentRequest(c) = &e.body else {
        return Err(unexpected(e));
    };
    let r = &c.request;
    Ok(PaymentRequestUpdate {
        id: ID(e.id.to_string()),
        sequence: e.sequence,
        request_id: ID(r.id.to_string()),
        change: c.change.into(),
        status: r.status.into(),
        amount: Money::of(r.amount, r.currency),
        direction: if r.payer_id == e.user_id {
            super::requests::RequestDirection::Incoming
        } else {
            super::requests::RequestDirection::Outgoing
        },
        transaction_id: r.transaction_id.map(|t| ID(t.to_string())),
        occurred_at: e.occurred_at,
    })
}

/// A body of another topic than the stream's: the hub routes by topic, so
/// this is a bug, reported as an internal error.
fn unexpected(e: &Envelope) -> ApiError {
    ApiError::internal(anyhow::anyhow!(
        "event {} of topic {} in the wrong stream",
        e.id,
        e.topic().as_str()
    ))
}

fn balance_update(e: &Envelope) -> Result<BalanceUpdate> {
    let EventBody::BalanceUpdated(b) = &e.body else {
        return Err(unexpected(e));
    };
    Ok(BalanceUpdate {
        id: ID(e.id.to_string()),
        sequence: e.sequence,
        wallet: b.wallet(e.user_id).into(),
        delta: Money::of(b.delta, b.currency),
        transaction_id: ID(b.transaction_id.to_string()),
        occurred_at: e.occurred_at,
    })
}

fn transaction_event(e: &Envelope) -> Result<TransactionEvent> {
    let (EventBody::TransactionReceived(moved) | EventBody::TransactionSent(moved)) = &e.body
    else {
        return Err(unexpected(e));
    };
    Ok(TransactionEvent {
        id: ID(e.id.to_string()),
        sequence: e.sequence,
        transaction: moved.transaction.clone().into(),
        occurred_at: e.occurred_at,
    })
}

fn kyc_event(e: &Envelope) -> Result<KycStatusEvent> {
    let EventBody::KycStatusChanged(k) = &e.body else {
        return Err(unexpected(e));
    };
    Ok(KycStatusEvent {
        id: ID(e.id.to_string()),
        sequence: e.sequence,
        status: k.status.into(),
        level: k.level,
        reason: k.reason.clone(),
        occurred_at: e.occurred_at,
    })
}

fn notification(e: &Envelope) -> Result<super::notifications::Notification> {
    let EventBody::NotificationCreated(n) = &e.body else {
        return Err(unexpected(e));
    };
    Ok(n.notification.clone().into())
}

/// Replay-then-live stream of one user's events of one topic.
///
/// Every subscription holds its stream for as long as it runs, at the size
/// of its largest await: the storage reads are boxed so that the idle wait
/// for a live event is what stays (a few hundred bytes, not kilobytes of
/// query futures per subscriber; BENCHMARKS.md).
fn user_events(
    state: AppState,
    user_id: Uuid,
    topic: Topic,
    after: Option<i64>,
) -> impl Stream<Item = Result<Arc<Envelope>>> {
    async_stream::stream! {
        let filter = Filter { topic, audience: Audience::User(user_id) };
        let mut shutdown = state.live.shutdown.subscribe();
        let mut live = state.bus.subscribe(filter);
        let mut last = match after {
            Some(a) => a,
            None => match Box::pin(events::current_sequence(&state.db, user_id)).await {
                Ok(seq) => seq,
                Err(e) => { yield Err(ApiError::from(e)); return; }
            },
        };
        let mut replay = after.is_some();
        loop {
            if replay {
                loop {
                    let from = last;
                    let page = match Box::pin(events::after_sequence(&state.db, user_id, topic, from, REPLAY_PAGE)).await {
                        Ok(p) => p,
                        Err(e) => { yield Err(ApiError::from(e)); return; }
                    };
                    // Checked after the read: events after `from` pruned
                    // before it (or while it ran) would be missing from the
                    // page. Say so rather than skip them.
                    match Box::pin(events::pruned_through(&state.db, user_id)).await {
                        Ok(gone) if from < gone => {
                            yield Err(coded(ErrorCode::ReplayUnavailable, format!(
                                "events up to sequence {gone} are no longer kept; refetch the state, then subscribe without afterSequence"
                            )).extend_with(|_, ext| ext.set("keptAfterSequence", gone)).into());
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => { yield Err(ApiError::from(e)); return; }
                    }
                    let full = page.len() as u64 == REPLAY_PAGE;
                    for e in page {
                        last = e.sequence;
                        yield Ok(Arc::new(e));
                    }
                    if !full { break; }
                }
                replay = false;
            }
            let next = tokio::select! {
                n = live.next() => n,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match next {
                Some(Ok(event)) => {
                    if event.sequence <= last {
                        continue; // already replayed, or delivered twice
                    }
                    last = event.sequence;
                    yield Ok(event);
                }
                Some(Err(Interrupted::Resync)) => {
                    live = state.bus.subscribe(filter);
                    // Spread the replays of all streams after a bus reconnect.
                    let jitter = rand::random_range(0..500u64);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                    replay = true;
                }
                Some(Err(Interrupted::Lagged)) => {
                    yield Err(coded(ErrorCode::LimitExceeded, format!(
                        "this subscription fell behind and was ended; resubscribe with afterSequence: {last}"
                    )).extend_with(|_, ext| ext.set("afterSequence", last)).into());
                    return;
                }
                None => return,
            }
        }
    }
}

/// Everyone's events of one topic (staff dashboards): live only.
fn all_events(state: AppState, topic: Topic) -> impl Stream<Item = Result<Arc<Envelope>>> {
    async_stream::stream! {
        let mut shutdown = state.live.shutdown.subscribe();
        let mut live = state.bus.subscribe(Filter { topic, audience: Audience::All });
        let mut seen: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
        loop {
            let next = tokio::select! {
                n = live.next() => n,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match next {
                Some(Ok(event)) => {
                    if seen.len() >= MAX_TRACKED_USERS {
                        // Bounded memory; at worst a redelivered event repeats.
                        seen.clear();
                    }
                    let last = seen.entry(event.user_id).or_insert(0);
                    if event.sequence <= *last { continue; }
                    *last = event.sequence;
                    yield Ok(event);
                }
                Some(Err(Interrupted::Resync)) => {
                    // Everyone's events cannot be replayed by sequence: say so.
                    yield Err(coded(
                        ErrorCode::LimitExceeded,
                        "events may have been missed while the event bus reconnected; reload and resubscribe",
                    ).into());
                    return;
                }
                Some(Err(Interrupted::Lagged)) => {
                    yield Err(coded(ErrorCode::LimitExceeded, "this subscription fell behind and was ended; resubscribe").into());
                    return;
                }
                None => return,
            }
        }
    }
}

/// The caller's events of one topic, converted for GraphQL.
fn own_events<T: Send + 'static>(
    ctx: &Context<'_>,
    topic: Topic,
    after: Option<i64>,
    convert: fn(&Envelope) -> Result<T>,
) -> Result<impl Stream<Item = Result<T>> + use<T>> {
    let (state, viewer) = parts(ctx)?;
    let user = viewer.require_user()?;
    check_after(after)?;
    let events = user_events(state.clone(), user.id, topic, after);
    Ok(futures_util::StreamExt::map(events, move |e| {
        e.and_then(|e| convert(&e))
    }))
}

fn check_after(after: Option<i64>) -> Result<(), DomainError> {
    match after {
        Some(a) if a < 0 => Err(DomainError::bad_input("afterSequence must not be negative")),
        _ => Ok(()),
    }
}

/// Live events.
#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Balance changes of the caller's wallets (or one wallet). With
    /// `afterSequence`, the events after it are replayed first. Staff with the
    /// admin role may pass `allUsers: true` to watch every wallet (live only).
    async fn balance_updated(
        &self,
        ctx: &Context<'_>,
        wallet_id: Option<ID>,
        after_sequence: Option<i64>,
        all_users: Option<bool>,
    ) -> Result<impl Stream<Item = Result<BalanceUpdate>> + use<>> {
        let (state, viewer) = parts(ctx)?;
        let state = state.clone();
        check_after(after_sequence)?;
        let events: std::pin::Pin<Box<dyn Stream<Item = Result<Arc<Envelope>>> + Send>> =
            if all_users == Some(true) {
                viewer.require_role(Role::Admin)?;
                Box::pin(all_events(state.clone(), Topic::BalanceUpdated))
            } else {
                let user = viewer.require_user()?;
                Box::pin(user_events(
                    state.clone(),
                    user.id,
                    Topic::BalanceUpdated,
                    after_sequence,
                ))
            };
        let wallet = match wallet_id {
            Some(id) => {
                let user = viewer.require_user()?;
                let id = parse_id(&id, "walletId")?;
                Some(
                    Box::pin(entity::store::wallets::get_owned(&state.db, user.id, id))
                        .await?
                        .id,
                )
            }
            None => None,
        };
        Ok(async_stream::stream! {
            futures_util::pin_mut!(events);
            while let Some(item) = futures_util::StreamExt::next(&mut events).await {
                match item {
                    Ok(e) => {
                        if let Some(w) = wallet
                            && !matches!(&e.body, EventBody::BalanceUpdated(b) if b.wallet_id == w)
                        {
                            continue;
                        }
                        yield balance_update(&e);
                    }
                    Err(err) => { yield Err(err); return; }
                }
            }
        })
    }

    /// Money received from other users.
    async fn transaction_received(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<TransactionEvent>> + use<>> {
        own_events(
            ctx,
            Topic::TransactionReceived,
            after_sequence,
            transaction_event,
        )
    }

    /// Transfers that left the caller's wallets, as they commit: the
    /// sender's confirmation (`transactionReceived` is the receiver's). With
    /// `afterSequence`, the events after it are replayed first.
    async fn transaction_sent(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<TransactionEvent>> + use<>> {
        own_events(
            ctx,
            Topic::TransactionSent,
            after_sequence,
            transaction_event,
        )
    }

    /// In-app notifications as they are created.
    async fn notification_created(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<super::notifications::Notification>> + use<>> {
        own_events(
            ctx,
            Topic::NotificationCreated,
            after_sequence,
            notification,
        )
    }

    /// Changes of the caller's KYC status.
    async fn kyc_status(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<KycStatusEvent>> + use<>> {
        own_events(ctx, Topic::KycStatus, after_sequence, kyc_event)
    }

    /// The caller's movements that changed after they were made: held by
    /// the risk checks, released or rejected by compliance, reversed,
    /// refunded.
    async fn transaction_updated(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<TransactionUpdate>> + use<>> {
        own_events(
            ctx,
            Topic::TransactionUpdated,
            after_sequence,
            transaction_update,
        )
    }

    /// Payment requests made to or by the caller, as they are made, paid or
    /// declined.
    async fn payment_request_updated(
        &self,
        ctx: &Context<'_>,
        after_sequence: Option<i64>,
    ) -> Result<impl Stream<Item = Result<PaymentRequestUpdate>> + use<>> {
        own_events(
            ctx,
            Topic::PaymentRequest,
            after_sequence,
            payment_request_update,
        )
    }
}
