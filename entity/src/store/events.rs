//! The transactional outbox: events written in the transaction of the change
//! they describe, each with a per-user, strictly increasing sequence.

use domain::Topic;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{outbox_events, users};
use crate::store::records::{TransactionRecord, WalletRecord};
use crate::store::{StoreResult, inconsistent, now};

/// Takes the user's next event sequence. The row lock this update takes is
/// held until commit, so a user's sequences commit in order.
pub async fn next_sequence(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<i64> {
    let rows = users::Entity::update_many()
        .col_expr(
            users::Column::EventSeq,
            Expr::col(users::Column::EventSeq).add(1),
        )
        .filter(users::Column::Id.eq(user_id))
        .exec_with_returning(db)
        .await?;
    rows.first()
        .map(|u| u.event_seq)
        .ok_or_else(|| inconsistent(format!("no user {user_id} for event sequence")))
}

/// Writes one event to the outbox and returns its id and sequence.
pub async fn append(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    topic: Topic,
    body: serde_json::Value,
) -> StoreResult<(Uuid, i64)> {
    let sequence = next_sequence(db, user_id).await?;
    append_with_sequence(db, user_id, sequence, topic, body).await
}

/// Writes one event with a sequence already taken by [`next_sequence`] in
/// this transaction.
pub async fn append_with_sequence(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    sequence: i64,
    topic: Topic,
    body: serde_json::Value,
) -> StoreResult<(Uuid, i64)> {
    let id = Uuid::now_v7();
    let created_at = now();
    let mut payload = body;
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("id".into(), json!(id));
        obj.insert("sequence".into(), json!(sequence));
        obj.insert("userId".into(), json!(user_id));
        obj.insert("occurredAt".into(), json!(created_at));
    }
    outbox_events::Entity::insert(outbox_events::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        sequence: Set(sequence),
        topic: Set(topic.as_str().to_owned()),
        payload: Set(payload),
        created_at: Set(created_at),
        published_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    notify_relay(db).await?;
    Ok((id, sequence))
}

/// `balance.updated` for the owner of a wallet.
pub async fn balance_updated(
    db: &impl ConnectionTrait,
    wallet: &WalletRecord,
    delta: rust_decimal::Decimal,
    transaction_id: Uuid,
) -> StoreResult<()> {
    let body = json!({
        "walletId": wallet.id,
        "currency": wallet.currency,
        "balance": wallet.balance().normalize(),
        "availableBalance": wallet.available,
        "frozenBalance": wallet.frozen,
        "status": wallet.status,
        "version": wallet.version,
        "updatedAt": wallet.updated_at,
        "delta": delta.normalize(),
        "transactionId": transaction_id,
    });
    append(db, wallet.user_id, Topic::BalanceUpdated, body).await?;
    Ok(())
}

/// `transaction.received` for the receiving user of a transfer.
pub async fn transaction_received(
    db: &impl ConnectionTrait,
    receiver: Uuid,
    transaction: &TransactionRecord,
) -> StoreResult<()> {
    let body = json!({ "transaction": transaction });
    append(db, receiver, Topic::TransactionReceived, body).await?;
    Ok(())
}

/// The channel PostgreSQL relays `LISTEN` on; every outbox append notifies
/// it inside the writing transaction, so the notification fires at commit.
pub const OUTBOX_CHANNEL: &str = "wallet_bff_outbox";

async fn notify_relay(db: &impl ConnectionTrait) -> StoreResult<()> {
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute_unprepared(&format!("SELECT pg_notify('{OUTBOX_CHANNEL}', '')"))
            .await?;
    }
    Ok(())
}

/// A stored event, as the relay and replays read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Event id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Per-user sequence.
    pub sequence: i64,
    /// Topic.
    pub topic: Topic,
    /// Body (includes id, sequence, userId and occurredAt).
    pub payload: serde_json::Value,
}

impl TryFrom<outbox_events::Model> for StoredEvent {
    type Error = crate::StoreError;

    fn try_from(row: outbox_events::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            sequence: row.sequence,
            topic: Topic::parse(&row.topic)
                .map_err(|_| inconsistent(format!("outbox topic {}", row.topic)))?,
            payload: row.payload,
        })
    }
}

async fn load(
    db: &impl ConnectionTrait,
    select: sea_orm::Select<outbox_events::Entity>,
) -> StoreResult<Vec<StoredEvent>> {
    select
        .all(db)
        .await?
        .into_iter()
        .map(StoredEvent::try_from)
        .collect()
}

/// Events of one user and topic after a sequence, in order (replay).
pub async fn after_sequence(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    topic: Topic,
    after: i64,
    limit: u64,
) -> StoreResult<Vec<StoredEvent>> {
    let select = outbox_events::Entity::find()
        .filter(outbox_events::Column::UserId.eq(user_id))
        .filter(outbox_events::Column::Topic.eq(topic.as_str()))
        .filter(outbox_events::Column::Sequence.gt(after))
        .order_by_asc(outbox_events::Column::Sequence)
        .limit(limit);
    load(db, select).await
}

/// The last sequence handed out to a user (0 before the first event).
pub async fn current_sequence(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<i64> {
    Ok(users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map_or(0, |u| u.event_seq))
}

/// Unpublished events in per-user sequence order, for the relay. Ordered by
/// sequence, not by time: commit times come from the clocks of different
/// instances, but a user's sequences always commit in order, so when one is
/// visible every earlier one is too.
pub async fn unpublished(db: &impl ConnectionTrait, limit: u64) -> StoreResult<Vec<StoredEvent>> {
    let select = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .order_by_asc(outbox_events::Column::UserId)
        .order_by_asc(outbox_events::Column::Sequence)
        .limit(limit);
    load(db, select).await
}

/// Marks events as published.
pub async fn mark_published(db: &impl ConnectionTrait, ids: &[Uuid]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    outbox_events::Entity::update_many()
        .col_expr(outbox_events::Column::PublishedAt, Expr::value(Some(now())))
        .filter(outbox_events::Column::Id.is_in(ids.to_vec()))
        .exec(db)
        .await?;
    Ok(())
}

/// How far the relay is behind: unpublished events and the age in seconds of
/// the oldest one.
pub async fn backlog(db: &impl ConnectionTrait) -> StoreResult<(u64, f64)> {
    let pending = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(db)
        .await?;
    let oldest = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .order_by_asc(outbox_events::Column::CreatedAt)
        .one(db)
        .await?;
    let age = oldest.map_or(0.0, |e| {
        Ord::max((now() - e.created_at).num_milliseconds(), 0i64) as f64 / 1000.0
    });
    Ok((pending, age))
}
