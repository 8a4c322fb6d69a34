//! Payment requests: made by one user to another, paid through the same
//! money path as a transfer (`MoneyCommand::PayRequest`, in the transfer's
//! transaction), declined, or left to expire. Both parties get a
//! `payment.request` event at each step.

use chrono::Duration;
use domain::events::{PaymentRequestChanged, RequestChange};
use domain::requests::{PaymentRequestRecord, RequestStatus, expiry};
use domain::{Amount, Currency, DomainError, Email, ErrorCode, EventBody, TransactionRecord};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::payment_requests;
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::{StoreResult, events, inconsistent, now, users, wallets};

/// A request as the requester made it.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Who is asked to pay.
    pub payer: Email,
    /// The amount (checked against the currency's scale).
    pub amount: rust_decimal::Decimal,
    /// Its currency.
    pub currency: Currency,
    /// A note for the payer.
    pub memo: Option<String>,
    /// How long it waits (the default when absent).
    pub ttl: Option<Duration>,
}

fn record(row: payment_requests::Model) -> StoreResult<PaymentRequestRecord> {
    let bad = |what: &str| inconsistent(format!("payment request {} {what}", row.id));
    Ok(PaymentRequestRecord {
        id: row.id,
        requester_id: row.requester_id,
        payer_id: row.payer_id,
        amount: row.amount.0.normalize(),
        currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
        memo: row.memo,
        status: RequestStatus::parse(&row.status).map_err(|_| bad("status"))?,
        transaction_id: row.transaction_id,
        expires_at: row.expires_at,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Tells both parties, in user-id order (as every multi-user event write).
async fn announce(
    txn: &impl ConnectionTrait,
    request: &PaymentRequestRecord,
    change: RequestChange,
) -> StoreResult<()> {
    let mut parties = [request.requester_id, request.payer_id];
    parties.sort();
    for user in parties {
        let body = PaymentRequestChanged {
            request: request.clone(),
            change,
        };
        events::append(txn, user, EventBody::PaymentRequest(body)).await?;
    }
    Ok(())
}

/// Makes a request: the requester needs a wallet in the currency, the payer
/// an account (`NOT_FOUND` otherwise, as for a transfer by e-mail).
pub async fn create(
    db: &DatabaseConnection,
    requester_id: Uuid,
    new: NewRequest,
) -> StoreResult<PaymentRequestRecord> {
    let amount = Amount::new(new.amount, new.currency)?;
    let at = now();
    let expires_at = expiry(at, new.ttl)?;
    let txn = db.begin().await?;
    let payer = users::find_row_by_email(&txn, &new.payer)
        .await?
        .filter(|u| u.closed_at.is_none())
        .ok_or_else(|| DomainError::not_found("payer"))?;
    if payer.id == requester_id {
        return Err(DomainError::bad_input("you cannot ask yourself for money").into());
    }
    let wallet = wallets::find_by_currency(&txn, requester_id, new.currency)
        .await?
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::NotFound,
                format!("open a {} wallet to receive the money first", new.currency),
            )
        })?;
    if wallet.status == domain::WalletStatus::Closed {
        return Err(DomainError::account_closed().into());
    }
    let row = payment_requests::Model {
        id: Uuid::now_v7(),
        requester_id,
        payer_id: payer.id,
        amount: Money(amount.value()),
        currency: new.currency.code().to_owned(),
        memo: new.memo,
        status: RequestStatus::Pending.as_str().to_owned(),
        transaction_id: None,
        expires_at,
        created_at: at,
        updated_at: at,
    };
    payment_requests::Entity::insert(payment_requests::ActiveModel::from(row.clone()))
        .exec_without_returning(&txn)
        .await?;
    let request = record(row)?;
    announce(&txn, &request, RequestChange::Created).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(requester_id),
            action: "payment_request.created",
            subject_type: "payment_request",
            subject_id: Some(request.id),
            details: json!({
                "payerId": request.payer_id,
                "amount": domain::money::to_canonical(request.amount),
                "currency": request.currency.code(),
            }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(request)
}

/// Locks a request the caller may pay now (inside the money transaction).
pub(crate) async fn lock_payable(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> StoreResult<PaymentRequestRecord> {
    let row = payment_requests::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| DomainError::not_found("payment request"))?;
    let request = record(row)?;
    request.ensure_answerable(user_id, now())?;
    Ok(request)
}

/// Marks a request paid by a transfer, in the transfer's transaction.
pub(crate) async fn mark_paid(
    txn: &impl ConnectionTrait,
    request: &PaymentRequestRecord,
    tx: &TransactionRecord,
) -> StoreResult<()> {
    let at = now();
    payment_requests::Entity::update_many()
        .col_expr(
            payment_requests::Column::Status,
            Expr::value(RequestStatus::Paid.as_str()),
        )
        .col_expr(payment_requests::Column::TransactionId, Expr::value(tx.id))
        .col_expr(payment_requests::Column::UpdatedAt, Expr::value(at))
        .filter(payment_requests::Column::Id.eq(request.id))
        .exec(txn)
        .await?;
    let paid = PaymentRequestRecord {
        status: RequestStatus::Paid,
        transaction_id: Some(tx.id),
        updated_at: at,
        ..request.clone()
    };
    announce(txn, &paid, RequestChange::Paid).await?;
    audit::record(
        txn,
        AuditRecord {
            actor_id: Some(request.payer_id),
            action: "payment_request.paid",
            subject_type: "payment_request",
            subject_id: Some(request.id),
            details: json!({ "transactionId": tx.id, "status": tx.status.as_str() }),
        },
    )
    .await
}

/// The payer declines a request.
pub async fn decline(
    db: &DatabaseConnection,
    user_id: Uuid,
    id: Uuid,
) -> StoreResult<PaymentRequestRecord> {
    let txn = db.begin().await?;
    let request = lock_payable(&txn, user_id, id).await?;
    let at = now();
    payment_requests::Entity::update_many()
        .col_expr(
            payment_requests::Column::Status,
            Expr::value(RequestStatus::Declined.as_str()),
        )
        .col_expr(payment_requests::Column::UpdatedAt, Expr::value(at))
        .filter(payment_requests::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    let declined = PaymentRequestRecord {
        status: RequestStatus::Declined,
        updated_at: at,
        ..request
    };
    announce(&txn, &declined, RequestChange::Declined).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "payment_request.declined",
            subject_type: "payment_request",
            subject_id: Some(id),
            details: json!({}),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(declined)
}

/// One request the caller is a party to.
pub async fn get(
    db: &DatabaseConnection,
    user_id: Uuid,
    id: Uuid,
) -> StoreResult<PaymentRequestRecord> {
    payment_requests::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|r| r.requester_id == user_id || r.payer_id == user_id)
        .map(record)
        .transpose()?
        .ok_or_else(|| DomainError::not_found("payment request").into())
}

/// The requests made to and by the user, newest first, with this status
/// (as of now: `EXPIRED` finds pending ones past their expiry); at most `limit`.
pub async fn list(
    db: &DatabaseConnection,
    user_id: Uuid,
    status: Option<RequestStatus>,
    limit: u64,
) -> StoreResult<Vec<PaymentRequestRecord>> {
    let at = now();
    let mut query = payment_requests::Entity::find().filter(
        Condition::any()
            .add(payment_requests::Column::RequesterId.eq(user_id))
            .add(payment_requests::Column::PayerId.eq(user_id)),
    );
    query = match status {
        None => query,
        Some(RequestStatus::Expired) => query
            .filter(payment_requests::Column::Status.eq(RequestStatus::Pending.as_str()))
            .filter(payment_requests::Column::ExpiresAt.lte(at)),
        Some(RequestStatus::Pending) => query
            .filter(payment_requests::Column::Status.eq(RequestStatus::Pending.as_str()))
            .filter(payment_requests::Column::ExpiresAt.gt(at)),
        Some(other) => query.filter(payment_requests::Column::Status.eq(other.as_str())),
    };
    query
        .order_by_desc(payment_requests::Column::CreatedAt)
        .order_by_desc(payment_requests::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(|row| {
            let r = record(row)?;
            Ok(PaymentRequestRecord {
                status: r.status_at(at),
                ..r
            })
        })
        .collect()
}

/// A request paid by a movement compliance rejected is open again (unless
/// it expired meanwhile, which reading it tells).
pub(crate) async fn reopen_paid_by(
    txn: &impl ConnectionTrait,
    transaction_id: Uuid,
) -> StoreResult<()> {
    payment_requests::Entity::update_many()
        .col_expr(
            payment_requests::Column::Status,
            Expr::value(RequestStatus::Pending.as_str()),
        )
        .col_expr(
            payment_requests::Column::TransactionId,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(payment_requests::Column::UpdatedAt, Expr::value(now()))
        .filter(payment_requests::Column::TransactionId.eq(transaction_id))
        .exec(txn)
        .await?;
    Ok(())
}
