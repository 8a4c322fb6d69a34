//! Idempotency keys with Stripe / IETF `Idempotency-Key` semantics.
//!
//! A request first *claims* its key in a short transaction of its own: a row
//! `IN_PROGRESS` with a lease (`locked_until`, which doubles as the claim
//! token). The work transaction then moves the money and [`complete`]s the
//! key with the result if the lease is still ours, so the result and the
//! money commit together.
//!
//! - same key, same fingerprint, completed: the stored result is replayed;
//! - same key, other fingerprint: `IDEMPOTENCY_KEY_REUSED`;
//! - same key while the lease of another request runs: `IDEMPOTENCY_KEY_IN_USE`;
//! - a refused or failed request [`release`]s its claim, so nothing is
//!   remembered for a request that moved no money; a crashed one leaves a
//!   lease that expires, after which the key can be claimed again.

use chrono::{DateTime, Duration, Utc};
use domain::{DomainError, ErrorCode, Fingerprint, IdempotencyKey};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};
use uuid::Uuid;

use crate::entities::idempotency_keys as keys;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreResult, inconsistent, now};

const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";

/// How long keys are kept and how long a claim may run.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    /// Keys are kept at least this long after first use.
    pub retention: Duration,
    /// A claim not completed within this time may be taken over.
    pub lease: Duration,
}

/// A claimed key that this request now works on.
#[derive(Debug, Clone)]
pub struct Lease {
    id: Uuid,
    token: DateTime<Utc>,
}

/// What claiming a key found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The key is ours to work on.
    Fresh(Lease),
    /// The key already completed with this stored result.
    Replay(serde_json::Value),
}

/// Claims `key` for `operation` with the request's fingerprint.
pub async fn claim(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    key: &IdempotencyKey,
    operation: &str,
    fingerprint: &Fingerprint,
    policy: KeyPolicy,
) -> StoreResult<Claim> {
    // A few rounds cover the races between insert, takeover and purge.
    for _ in 0..3 {
        let at = now();
        let token = at + policy.lease;
        let id = Uuid::now_v7();
        let inserted = keys::Entity::insert(keys::ActiveModel {
            id: Set(id),
            user_id: Set(user_id),
            key: Set(key.as_str().to_owned()),
            operation: Set(operation.to_owned()),
            fingerprint: Set(fingerprint.as_str().to_owned()),
            status: Set(IN_PROGRESS.to_owned()),
            locked_until: Set(token),
            response: Set(None),
            created_at: Set(at),
            expires_at: Set(at + policy.retention),
        })
        .on_conflict(
            OnConflict::columns([keys::Column::UserId, keys::Column::Key])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        if inserted == 1 {
            // The key was free: the row is ours, as written.
            return Ok(Claim::Fresh(Lease { id, token }));
        }
        let row = keys::Entity::find()
            .filter(keys::Column::UserId.eq(user_id))
            .filter(keys::Column::Key.eq(key.as_str()))
            .one(db)
            .await?;
        let Some(row) = row else {
            continue; // purged or released between the two statements
        };
        if row.expires_at <= at {
            // Past retention: the old use is forgotten; start over with ours.
            if take_over(
                db,
                &row,
                fingerprint,
                operation,
                at,
                token,
                Some(at + policy.retention),
            )
            .await?
            {
                return Ok(Claim::Fresh(Lease { id: row.id, token }));
            }
            continue;
        }
        if row.fingerprint != fingerprint.as_str() || row.operation != operation {
            return Err(DomainError::new(
                ErrorCode::IdempotencyKeyReused,
                "this idempotencyKey was already used with a different request",
            )
            .into());
        }
        if row.status == COMPLETED {
            return row
                .response
                .map(Claim::Replay)
                .ok_or_else(|| inconsistent("completed idempotency key without response"));
        }
        if row.locked_until > at {
            return Err(DomainError::new(
                ErrorCode::IdempotencyKeyInUse,
                "a request with this idempotencyKey is still in progress; retry shortly",
            )
            .into());
        }
        // The previous holder's lease ran out (it crashed or timed out).
        if take_over(db, &row, fingerprint, operation, at, token, None).await? {
            return Ok(Claim::Fresh(Lease { id: row.id, token }));
        }
    }
    Err(DomainError::new(
        ErrorCode::IdempotencyKeyInUse,
        "a request with this idempotencyKey is still in progress; retry shortly",
    )
    .into())
}

async fn take_over(
    db: &impl ConnectionTrait,
    row: &keys::Model,
    fingerprint: &Fingerprint,
    operation: &str,
    at: DateTime<Utc>,
    token: DateTime<Utc>,
    new_expiry: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let mut update = keys::Entity::update_many()
        .col_expr(keys::Column::LockedUntil, Expr::value(token))
        .col_expr(keys::Column::Status, Expr::value(IN_PROGRESS))
        .col_expr(keys::Column::Fingerprint, Expr::value(fingerprint.as_str()))
        .col_expr(keys::Column::Operation, Expr::value(operation))
        .filter(keys::Column::Id.eq(row.id))
        .filter(keys::Column::LockedUntil.eq(row.locked_until));
    if let Some(expiry) = new_expiry {
        update = update
            .col_expr(keys::Column::ExpiresAt, Expr::value(expiry))
            .col_expr(keys::Column::CreatedAt, Expr::value(at))
            .col_expr(
                keys::Column::Response,
                Expr::value(Option::<serde_json::Value>::None),
            );
    } else {
        update = update.filter(keys::Column::Status.eq(IN_PROGRESS));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}

/// Inside the work transaction, last: stores the result to replay, if the
/// lease is still ours. A lease that ran out and was taken over meanwhile
/// (the work outlived it) fails the transaction, which rolls back, so only
/// the new holder's work can commit; one that ran out untaken is kept.
/// Checking here rather than locking the row first saves a round trip: a
/// takeover of a live transaction's key then waits for this update, and
/// finds the key completed.
pub async fn complete(
    db: &impl ConnectionTrait,
    lease: &Lease,
    response: serde_json::Value,
) -> StoreResult<()> {
    writes::at_once(db, |w| stage_complete(w, lease, response)).await
}

/// [`complete`] staged with the other writes of the work's transaction.
pub(crate) fn stage_complete(writes: &mut Writes, lease: &Lease, response: serde_json::Value) {
    let done = keys::Entity::update_many()
        .col_expr(keys::Column::Status, Expr::value(COMPLETED))
        // The lease ends with the request, so retention alone governs the purge.
        .col_expr(keys::Column::LockedUntil, Expr::value(now()))
        .col_expr(keys::Column::Response, Expr::value(Some(response)))
        .filter(keys::Column::Id.eq(lease.id))
        .filter(keys::Column::Status.eq(IN_PROGRESS))
        .filter(keys::Column::LockedUntil.eq(lease.token));
    writes.push(Write::new(done.build(writes.backend())).expecting(1, |_| {
        DomainError::new(
            ErrorCode::IdempotencyKeyInUse,
            "the idempotencyKey's lease expired and another request took it over",
        )
        .into()
    }));
}

/// Forgets a claim whose request moved no money, so the key can be retried.
pub async fn release(db: &impl ConnectionTrait, lease: &Lease) -> StoreResult<()> {
    keys::Entity::delete_many()
        .filter(keys::Column::Id.eq(lease.id))
        .filter(keys::Column::LockedUntil.eq(lease.token))
        .filter(keys::Column::Status.eq(IN_PROGRESS))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes keys past their retention whose lease has ended (completed keys,
/// and claims abandoned by requests that were cancelled); returns how many.
pub async fn purge_expired(db: &impl ConnectionTrait, limit: u64) -> StoreResult<u64> {
    let at = now();
    let expired: Vec<Uuid> = keys::Entity::find()
        .select_only()
        .column(keys::Column::Id)
        .filter(keys::Column::ExpiresAt.lt(at))
        .filter(keys::Column::LockedUntil.lt(at))
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let res = keys::Entity::delete_many()
        .filter(keys::Column::Id.is_in(expired))
        .filter(keys::Column::ExpiresAt.lt(at))
        .filter(keys::Column::LockedUntil.lt(at))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
