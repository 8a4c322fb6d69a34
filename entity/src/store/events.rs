//! The transactional outbox: events written in the transaction of the change
//! they describe, each with a per-user, strictly increasing sequence.

use domain::Topic;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
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
    let id = Uuid::now_v7();
    let sequence = next_sequence(db, user_id).await?;
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
