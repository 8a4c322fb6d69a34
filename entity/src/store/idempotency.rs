//! Idempotency keys with Stripe / IETF `Idempotency-Key` semantics.
//!
//! - same key, same fingerprint, completed: the stored result is replayed;
//! - same key, other fingerprint: `IDEMPOTENCY_KEY_REUSED`;
//! - same key while another request works on it: `IDEMPOTENCY_KEY_IN_USE`;
//! - a refused or failed request leaves nothing behind, so the key can be
//!   retried; a crashed one is forgotten as soon as its holder is known to
//!   be gone.
//!
//! Two ways to hold a key while the work runs:
//!
//! - A money movement's work is one database transaction, which [`hold`]s
//!   its key first: on PostgreSQL a transaction-scoped advisory lock on the
//!   user and key, taken without waiting (another request holding it is in
//!   flight), and the key's row read. The result is written with the
//!   movement's other writes ([`stage_record`]), so key and money commit
//!   together, and a request that fails or dies (its connection with it)
//!   releases the lock at once. One write of the key's row, no commit of its
//!   own.
//! - Work with a call outside the database in it (a payment provider's
//!   intent) [`claim`]s its key in a short transaction of its own first: a
//!   row `IN_PROGRESS` with a lease (`locked_until`, which doubles as the
//!   claim token). The work's transaction [`complete`]s the key with the
//!   result if the lease is still ours; a refused request [`release`]s it,
//!   and a crashed one leaves a lease that expires, after which the key can
//!   be claimed again.
//!
//! Both read a key's row the same way, and a held key whose row shows a
//! live lease is in flight too.

use chrono::{DateTime, Duration, Utc};
use domain::{DomainError, ErrorCode, Fingerprint, IdempotencyKey};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect, QueryTrait, Statement,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entities::idempotency_keys as keys;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreError, StoreResult, inconsistent, now};

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
        let claimed = || Written {
            operation,
            fingerprint,
            at,
            status: IN_PROGRESS,
            locked_until: token,
            response: None,
        };
        let inserted = keys::Entity::insert(claimed().insert(id, user_id, key.as_str(), policy))
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
        let Some(row) = find(db, user_id, key).await? else {
            continue; // purged or released between the two statements
        };
        let found = match judge(&row, operation, fingerprint, at)? {
            Found::Replay(response) => return Ok(Claim::Replay(response)),
            found => found,
        };
        let update = claimed().take_over(&Seen::new(&row, &found), policy);
        if update.exec(db).await?.rows_affected == 1 {
            return Ok(Claim::Fresh(Lease { id: row.id, token }));
        }
    }
    Err(in_use().into())
}

/// A user's key's row, if the key was used.
async fn find(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    key: &IdempotencyKey,
) -> StoreResult<Option<keys::Model>> {
    Ok(keys::Entity::find()
        .filter(keys::Column::UserId.eq(user_id))
        .filter(keys::Column::Key.eq(key.as_str()))
        .one(db)
        .await?)
}

/// What a key's row says to a request that has its operation and
/// fingerprint, at `at`.
#[derive(Debug)]
enum Found {
    /// Past retention: the old use is forgotten and the key is free.
    Forgotten,
    /// Completed by this very request: its first result.
    Replay(serde_json::Value),
    /// Claimed by a request whose lease ran out (it crashed or timed out).
    Abandoned,
}

fn judge(
    row: &keys::Model,
    operation: &str,
    fingerprint: &Fingerprint,
    at: DateTime<Utc>,
) -> StoreResult<Found> {
    if row.expires_at <= at {
        return Ok(Found::Forgotten);
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
            .clone()
            .map(Found::Replay)
            .ok_or_else(|| inconsistent("completed idempotency key without response"));
    }
    if row.locked_until > at {
        return Err(in_use().into());
    }
    Ok(Found::Abandoned)
}

/// `IDEMPOTENCY_KEY_IN_USE`.
pub(crate) fn in_use() -> DomainError {
    DomainError::new(
        ErrorCode::IdempotencyKeyInUse,
        "a request with this idempotencyKey is still in progress; retry shortly",
    )
}

/// How a write leaves a key's row: for whom, and in which state.
struct Written<'a> {
    operation: &'a str,
    fingerprint: &'a Fingerprint,
    at: DateTime<Utc>,
    status: &'static str,
    locked_until: DateTime<Utc>,
    response: Option<serde_json::Value>,
}

impl Written<'_> {
    /// The new row of a free key.
    fn insert(self, id: Uuid, user_id: Uuid, key: &str, policy: KeyPolicy) -> keys::ActiveModel {
        keys::ActiveModel {
            id: Set(id),
            user_id: Set(user_id),
            key: Set(key.to_owned()),
            operation: Set(self.operation.to_owned()),
            fingerprint: Set(self.fingerprint.as_str().to_owned()),
            status: Set(self.status.to_owned()),
            locked_until: Set(self.locked_until),
            response: Set(self.response),
            created_at: Set(self.at),
            expires_at: Set(self.at + policy.retention),
        }
    }

    /// The update taking over the row of a forgotten or abandoned use, as
    /// long as nobody took it since it was read (its lease token, which
    /// every claim, takeover and completion changes, is the same). A
    /// forgotten use's retention starts again.
    fn take_over(self, seen: &Seen, policy: KeyPolicy) -> sea_orm::UpdateMany<keys::Entity> {
        let mut update = keys::Entity::update_many()
            .col_expr(keys::Column::LockedUntil, Expr::value(self.locked_until))
            .col_expr(keys::Column::Status, Expr::value(self.status))
            .col_expr(
                keys::Column::Fingerprint,
                Expr::value(self.fingerprint.as_str()),
            )
            .col_expr(keys::Column::Operation, Expr::value(self.operation))
            .col_expr(keys::Column::Response, Expr::value(self.response))
            .filter(keys::Column::Id.eq(seen.id))
            .filter(keys::Column::LockedUntil.eq(seen.locked_until));
        if seen.forgotten {
            update = update
                .col_expr(
                    keys::Column::ExpiresAt,
                    Expr::value(self.at + policy.retention),
                )
                .col_expr(keys::Column::CreatedAt, Expr::value(self.at));
        } else {
            update = update.filter(keys::Column::Status.eq(IN_PROGRESS));
        }
        update
    }
}

/// The row of an earlier use of a key, as a request that takes it over
/// read it.
#[derive(Debug)]
struct Seen {
    id: Uuid,
    /// Its lease token then.
    locked_until: DateTime<Utc>,
    /// Past retention (else abandoned).
    forgotten: bool,
}

impl Seen {
    fn new(row: &keys::Model, found: &Found) -> Self {
        Self {
            id: row.id,
            locked_until: row.locked_until,
            forgotten: matches!(found, Found::Forgotten),
        }
    }
}

/// A money movement's key, held by the transaction that will write its
/// result: [`stage_record`] that result with the movement's writes.
#[derive(Debug)]
pub struct Held {
    user_id: Uuid,
    key: String,
    operation: String,
    fingerprint: Fingerprint,
    policy: KeyPolicy,
    /// The row of an earlier use this one takes over.
    over: Option<Seen>,
}

/// What holding a key found.
#[derive(Debug)]
pub enum Holding {
    /// The key is free: the work runs and records its result.
    Fresh(Held),
    /// The key already completed this very request: its first result.
    Replay(serde_json::Value),
}

/// Inside a money movement's transaction, first: holds the key and reads
/// it. On PostgreSQL the transaction-scoped advisory lock of the user's key
/// is taken, if free, in the statement that reads the row; held by another
/// transaction, the key is in flight (`IDEMPOTENCY_KEY_IN_USE`) unless its
/// row already shows it completed. SQLite runs one transaction at a time,
/// so the read alone tells.
///
/// The read's snapshot may predate the lock by a moment, and so miss the
/// result of the request that held it and committed in that moment: the
/// result's write then finds the key taken ([`StoreError::KeyTaken`]), the
/// transaction rolls back, and running it again replays that result.
pub async fn hold(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    key: &IdempotencyKey,
    operation: &str,
    fingerprint: &Fingerprint,
    policy: KeyPolicy,
) -> StoreResult<Holding> {
    // SQLite's one transaction at a time holds every key it reads.
    let (held, row) = if txn.get_database_backend() == DatabaseBackend::Postgres {
        let found = txn
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock($1) AS held, k.* \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN idempotency_keys k ON k.user_id = $2 AND k.key = $3",
                [
                    lock_id(user_id, key).into(),
                    user_id.into(),
                    key.as_str().into(),
                ],
            ))
            .await?
            .ok_or_else(|| inconsistent("holding an idempotency key read no row"))?;
        let row = match found.try_get::<Option<Uuid>>("", "id")? {
            Some(_) => Some(keys::Model::from_query_result(&found, "")?),
            None => None,
        };
        (found.try_get::<bool>("", "held")?, row)
    } else {
        (true, find(txn, user_id, key).await?)
    };
    // A completed key replays (and another request's is refused) even
    // while a retry holds it.
    let over = match row {
        None => None,
        Some(row) => match judge(&row, operation, fingerprint, now())? {
            Found::Replay(response) => return Ok(Holding::Replay(response)),
            found => Some(Seen::new(&row, &found)),
        },
    };
    if !held {
        return Err(in_use().into());
    }
    Ok(Holding::Fresh(Held {
        user_id,
        key: key.as_str().to_owned(),
        operation: operation.to_owned(),
        fingerprint: fingerprint.clone(),
        policy,
        over,
    }))
}

/// The advisory lock of a user's key: the first 64 bits of a SHA-256 over
/// both, so that two keys share a lock about never.
fn lock_id(user_id: Uuid, key: &IdempotencyKey) -> i64 {
    let digest = Sha256::new()
        .chain_update(b"idempotency-key\0")
        .chain_update(user_id.as_bytes())
        .chain_update(key.as_str().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Inside the held key's transaction, with its last writes: the key
/// completed with the result to replay. A key written meanwhile by a
/// request that does not take the lock, or whose result the hold's read
/// missed, fails the batch with [`StoreError::KeyTaken`].
pub(crate) fn stage_record(writes: &mut Writes, held: Held, response: serde_json::Value) {
    let at = now();
    let written = Written {
        operation: &held.operation,
        fingerprint: &held.fingerprint,
        at,
        status: COMPLETED,
        // No lease: retention alone governs the purge.
        locked_until: at,
        response: Some(response),
    };
    let statement = match &held.over {
        None => keys::Entity::insert(written.insert(
            Uuid::now_v7(),
            held.user_id,
            &held.key,
            held.policy,
        ))
        .on_conflict(
            OnConflict::columns([keys::Column::UserId, keys::Column::Key])
                .do_nothing()
                .to_owned(),
        )
        .build(writes.backend()),
        Some(seen) => written.take_over(seen, held.policy).build(writes.backend()),
    };
    writes.push(Write::new(statement).expecting(1, |_| StoreError::KeyTaken));
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
fn stage_complete(writes: &mut Writes, lease: &Lease, response: serde_json::Value) {
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
