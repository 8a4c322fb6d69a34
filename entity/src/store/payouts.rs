//! Payouts of withdrawals through the payment provider: which pending
//! withdrawals still need one, the payout recorded once submitted, and the
//! provider's verdict applied through the withdrawal's state machine (the
//! same one the admin's `settleWithdrawal` uses), so a payout settles once.

use domain::payments::CARD_CURRENCIES;
use domain::{DomainError, ErrorCode, TransactionKind, TransactionStatus, WithdrawalOutcome};
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{payouts, transactions};
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::deposits::EventOutcome;
use crate::store::{StoreError, StoreResult, now};

/// A withdrawal waiting for its payout.
#[derive(Debug, Clone)]
pub struct Due {
    /// The withdrawal.
    pub transaction_id: Uuid,
    /// Its amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: domain::Currency,
    /// Where to pay.
    pub destination: String,
}

/// Pending card-currency withdrawals without a payout, oldest first.
pub async fn due(db: &DatabaseConnection, limit: u64) -> StoreResult<Vec<Due>> {
    let submitted: Vec<Uuid> = payouts::Entity::find()
        .select_only()
        .column(payouts::Column::TransactionId)
        .into_tuple()
        .all(db)
        .await?;
    let rows: Vec<(Uuid, Money, String, Option<String>)> = transactions::Entity::find()
        .select_only()
        .column(transactions::Column::Id)
        .column(transactions::Column::Amount)
        .column(transactions::Column::Currency)
        .column(transactions::Column::Destination)
        .filter(transactions::Column::Kind.eq(TransactionKind::Withdrawal.as_str()))
        .filter(transactions::Column::Status.eq(TransactionStatus::Pending.as_str()))
        .filter(transactions::Column::Currency.is_in(CARD_CURRENCIES.map(|c| c.code())))
        .filter(transactions::Column::Id.is_not_in(submitted))
        .order_by_asc(transactions::Column::CreatedAt)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, amount, currency, destination)| {
            Some(Due {
                transaction_id: id,
                amount: amount.0,
                currency: domain::Currency::parse(&currency).ok()?,
                destination: destination.unwrap_or_default(),
            })
        })
        .collect())
}

/// Records a submitted payout (a second submission of the same withdrawal,
/// from another instance, changes nothing: the provider's idempotency key
/// made it the same payout).
pub async fn record(
    db: &DatabaseConnection,
    transaction_id: Uuid,
    provider_id: &str,
) -> StoreResult<()> {
    let at = now();
    payouts::Entity::insert(payouts::ActiveModel {
        transaction_id: Set(transaction_id),
        provider_id: Set(provider_id.to_owned()),
        status: Set("SUBMITTED".to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(payouts::Column::TransactionId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A payout event from the provider, authenticated and parsed.
#[derive(Debug, Clone)]
pub struct PayoutEvent {
    /// The provider's event id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// When the provider created it.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The provider's payout id.
    pub payout_id: String,
    /// Our withdrawal, from the payout's metadata: a webhook may come
    /// before the submission's answer was recorded.
    pub transaction_id: Option<Uuid>,
    /// Paid or failed.
    pub outcome: WithdrawalOutcome,
}

/// Applies a payout event once, in one transaction: the payment-log row
/// first (a concurrent redelivery waits on it and finds it `DUPLICATE`),
/// then the settlement through the withdrawal's state machine (a repeat or
/// an earlier manual settlement changes nothing).
pub async fn apply_event(db: &DatabaseConnection, event: PayoutEvent) -> StoreResult<EventOutcome> {
    let txn = db.begin().await?;
    let Some(log_id) =
        super::deposits::log_event(&txn, &event.event_id, &event.event_type, event.created_at)
            .await?
    else {
        txn.commit().await?;
        return Ok(EventOutcome::Duplicate);
    };
    let mut payout = payouts::Entity::find()
        .filter(payouts::Column::ProviderId.eq(&event.payout_id))
        .one(&txn)
        .await?;
    if payout.is_none()
        && let Some(id) = event.transaction_id
        && transactions::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .is_some_and(|t| t.kind == TransactionKind::Withdrawal.as_str())
    {
        // Submitted, but its answer not recorded yet: record it now.
        let at = now();
        let row = payouts::Model {
            transaction_id: id,
            provider_id: event.payout_id.clone(),
            status: "SUBMITTED".to_owned(),
            created_at: at,
            updated_at: at,
        };
        payouts::Entity::insert(payouts::ActiveModel::from(row.clone()))
            .on_conflict(
                OnConflict::column(payouts::Column::TransactionId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        payout = payouts::Entity::find_by_id(id).one(&txn).await?;
    }
    let outcome = match &payout {
        None => {
            audit::record(
                &txn,
                AuditRecord {
                    actor_id: None,
                    action: "payout.webhook_unknown_payout",
                    subject_type: "payout",
                    subject_id: None,
                    details: json!({ "providerId": event.payout_id, "type": event.event_type }),
                },
            )
            .await?;
            EventOutcome::UnknownPayout
        }
        Some(p) => {
            let settled = super::payments::rail::settle_withdrawal_in(
                &txn,
                None,
                p.transaction_id,
                event.outcome,
            )
            .await;
            match settled {
                Ok(_) => {
                    let status = match event.outcome {
                        WithdrawalOutcome::Completed => "PAID",
                        WithdrawalOutcome::Failed => "FAILED",
                    };
                    payouts::Entity::update_many()
                        .col_expr(payouts::Column::Status, Expr::value(status))
                        .col_expr(payouts::Column::UpdatedAt, Expr::value(now()))
                        .filter(payouts::Column::TransactionId.eq(p.transaction_id))
                        .exec(&txn)
                        .await?;
                    EventOutcome::Applied
                }
                // Settled before (a repeat, or by an admin): nothing to do.
                // The refusal wrote nothing, so the transaction goes on.
                Err(StoreError::Domain(DomainError {
                    code: ErrorCode::BadUserInput,
                    ..
                })) => EventOutcome::Unchanged,
                Err(e) => return Err(e),
            }
        }
    };
    super::deposits::set_outcome(&txn, log_id, payout.map(|p| p.transaction_id), outcome).await?;
    txn.commit().await?;
    Ok(outcome)
}
