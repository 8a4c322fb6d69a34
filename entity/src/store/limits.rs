//! Tier limits against the books: what a wallet moved in the rolling window,
//! checked inside the money transaction (after the wallet's row is locked,
//! so concurrent movements of the same wallet are counted one after another
//! and cannot pass a limit together).

use chrono::{DateTime, Duration, DurationRound, Utc};
use domain::limits::{Allowance, COUNTED, KINDS, TierLimits, WINDOW_HOURS};
use domain::{DomainError, ErrorCode, KycStatus, TransactionKind, TransactionStatus, WalletRecord};
use rust_decimal::Decimal;
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::entities::{transactions, users};
use crate::money::Money;
use crate::store::events;
use crate::store::risk::{self, History};
use crate::store::{StoreResult, bind, inconsistent, now};

/// What the limits are checked against: the user's KYC level, whether
/// verification was refused (then no money moves until it is accepted),
/// and what each wallet moved per kind in the rolling window.
struct Usage {
    level: i32,
    refused: bool,
    used: Vec<(Uuid, TransactionKind, Decimal)>,
}

impl Usage {
    fn of(&self, wallet_id: Uuid, kind: TransactionKind) -> Decimal {
        self.used
            .iter()
            .find(|(w, k, _)| *w == wallet_id && *k == kind)
            .map_or(Decimal::ZERO, |(_, _, sum)| *sum)
    }
}

/// The user's KYC level, and whether verification was refused.
async fn standing(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<(i32, bool)> {
    let (level, status): (i32, String) = users::Entity::find_by_id(user_id)
        .select_only()
        .column(users::Column::KycLevel)
        .column(users::Column::KycStatus)
        .into_tuple()
        .one(db)
        .await?
        .ok_or_else(|| inconsistent(format!("user {user_id} vanished")))?;
    Ok((level, status == KycStatus::Rejected.as_str()))
}

/// Refuses `amount` of `kind` on a wallet when the user's tier does not
/// allow it in the rolling window. Inside a money transaction the wallet is
/// locked first; a card deposit checks when it starts.
pub async fn check(
    txn: &impl ConnectionTrait,
    limits: &TierLimits,
    wallet: &WalletRecord,
    kind: TransactionKind,
    amount: Decimal,
) -> StoreResult<()> {
    check_reading(txn, limits, wallet, kind, amount, Also::default())
        .await
        .map(drop)
}

/// What [`check_reading`] does beside reading the usage, in the same
/// statement on PostgreSQL, so that a movement's checks cost one round trip
/// while its wallets are locked.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Also<'a> {
    /// Read the wallet's risk [`History`].
    pub history: bool,
    /// Lock these users' rows, sorted and distinct, as the events' writes
    /// would (see [`events::lock_users_sql`]).
    pub lock_users: &'a [Uuid],
}

/// What [`check_reading`] read and took beside the usage.
#[derive(Debug, Default)]
pub(crate) struct AlsoRead {
    /// The wallet's risk history, when it was read here.
    pub history: Option<History>,
    /// Whether the users' rows are locked (PostgreSQL only).
    pub users_locked: bool,
}

/// [`check`], doing in the same statement on PostgreSQL what `also` asks.
pub(crate) async fn check_reading(
    txn: &impl ConnectionTrait,
    limits: &TierLimits,
    wallet: &WalletRecord,
    kind: TransactionKind,
    amount: Decimal,
    also: Also<'_>,
) -> StoreResult<AlsoRead> {
    let (usage, read) = usage(txn, wallet.user_id, &[wallet.id], also).await?;
    if usage.refused {
        return Err(DomainError::new(
            ErrorCode::KycRequired,
            "your identity verification was not accepted: money cannot move until it is",
        )
        .into());
    }
    limits.check(
        usage.level,
        kind,
        wallet.currency,
        amount,
        usage.of(wallet.id, kind),
    )?;
    Ok(read)
}

/// What every wallet of the user may still move, per kind.
pub async fn allowances(
    db: &impl ConnectionTrait,
    limits: &TierLimits,
    user_id: Uuid,
    wallets: &[WalletRecord],
) -> StoreResult<Vec<Allowance>> {
    let ids: Vec<Uuid> = wallets.iter().map(|w| w.id).collect();
    let (usage, _) = usage(db, user_id, &ids, Also::default()).await?;
    let mut out = Vec::with_capacity(wallets.len() * KINDS.len());
    for wallet in wallets {
        for kind in KINDS {
            let mut allowance = limits.allowance(
                usage.level,
                kind,
                wallet.currency,
                usage.of(wallet.id, kind),
            );
            if usage.refused {
                allowance.daily_remaining = Decimal::ZERO;
            }
            out.push(allowance);
        }
    }
    Ok(out)
}

/// The user's standing and the wallets' sums per (wallet, kind) over the
/// window: deposits count for the wallet credited, withdrawals and
/// transfers for the wallet debited. One query on PostgreSQL, which sums
/// exactly (in `NUMERIC`); SQLite's `SUM` would go through floating point,
/// so there the rows are summed here.
///
/// On PostgreSQL, in the same statement, what `also` asks of the first
/// wallet.
async fn usage(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    wallet_ids: &[Uuid],
    also: Also<'_>,
) -> StoreResult<(Usage, AlsoRead)> {
    let since = now() - Duration::hours(WINDOW_HOURS);
    if db.get_database_backend() == DatabaseBackend::Postgres
        && let Some(first) = wallet_ids.first()
    {
        return summed(db, user_id, wallet_ids, since, *first, also).await;
    }
    let (level, refused) = standing(db, user_id).await?;
    let usage = Usage {
        level,
        refused,
        used: used(db, wallet_ids, since).await?,
    };
    Ok((usage, AlsoRead::default()))
}

/// [`usage`]'s sums on SQLite.
async fn used(
    db: &impl ConnectionTrait,
    wallet_ids: &[Uuid],
    since: DateTime<Utc>,
) -> StoreResult<Vec<(Uuid, TransactionKind, Decimal)>> {
    if wallet_ids.is_empty() {
        return Ok(Vec::new());
    }
    type Row = (String, Option<Uuid>, Option<Uuid>, Money);
    let rows: Vec<Row> = transactions::Entity::find()
        .select_only()
        .column(transactions::Column::Kind)
        .column(transactions::Column::FromWalletId)
        .column(transactions::Column::ToWalletId)
        .column(transactions::Column::Amount)
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(transactions::Column::Kind.eq(TransactionKind::Deposit.as_str()))
                        .add(transactions::Column::ToWalletId.is_in(wallet_ids.to_vec())),
                )
                .add(
                    Condition::all()
                        .add(transactions::Column::Kind.is_in([
                            TransactionKind::Withdrawal.as_str(),
                            TransactionKind::Transfer.as_str(),
                        ]))
                        .add(transactions::Column::FromWalletId.is_in(wallet_ids.to_vec())),
                ),
        )
        .filter(transactions::Column::Status.is_in(COUNTED.map(TransactionStatus::as_str)))
        .filter(transactions::Column::CreatedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    let mut sums: Vec<(Uuid, TransactionKind, Decimal)> = Vec::new();
    for (kind, from, to, amount) in rows {
        let kind = TransactionKind::parse(&kind)
            .map_err(|_| inconsistent(format!("transaction kind {kind}")))?;
        let wallet = match kind {
            TransactionKind::Deposit => to,
            _ => from,
        }
        .ok_or_else(|| inconsistent("counted transaction without its wallet"))?;
        match sums.iter_mut().find(|(w, k, _)| *w == wallet && *k == kind) {
            Some((_, _, sum)) => *sum += amount.0,
            None => sums.push((wallet, kind, amount.0)),
        }
    }
    Ok(sums)
}

/// [`usage`] on PostgreSQL: the user's row joined to one row per (wallet,
/// kind) moved. The whole hours of the window come from the hourly buckets
/// of `limit_usage` (kept by a trigger, see the migration
/// `m20261204_000002_limit_usage`), the part of the hour the window starts
/// in from the movements themselves.
async fn summed(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    wallet_ids: &[Uuid],
    since: DateTime<Utc>,
    wallet_id: Uuid,
    also: Also<'_>,
) -> StoreResult<(Usage, AlsoRead)> {
    // The first whole hour of the window, bound as a value (the planner
    // then bounds the movements' index range by it).
    let edge = since
        .duration_trunc(Duration::hours(1))
        .map_err(|e| inconsistent(format!("the window's first hour: {e}")))?
        + Duration::hours(1);
    let mut values: Vec<sea_orm::Value> = vec![
        TransactionKind::Deposit.as_str().into(),
        TransactionKind::Withdrawal.as_str().into(),
        TransactionKind::Transfer.as_str().into(),
        since.into(),
        edge.into(),
        edge.naive_utc().into(),
    ];
    values.extend(COUNTED.map(|s| sea_orm::Value::from(s.as_str())));
    let user = format!("{}::uuid", bind(&mut values, user_id));
    let statuses = (7..7 + COUNTED.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let ids = wallet_ids
        .iter()
        .map(|id| format!("{}::uuid", bind(&mut values, *id)))
        .collect::<Vec<_>>()
        .join(", ");
    // The wallet's history, when asked, as rows of their own (`part` 1).
    let history = if also.history {
        format!(
            " UNION ALL SELECT 1, NULL, NULL, NULL, NULL, h.amount, h.created_at, NULL FROM ({}) h",
            risk::history_sql(wallet_id, &mut values)
        )
    } else {
        String::new()
    };
    // Referenced, so that it runs; materialized, so that it runs once.
    let locked = if also.lock_users.is_empty() {
        "WITH locked AS (SELECT NULL::uuid AS id WHERE false) ".to_owned()
    } else {
        format!(
            "WITH locked AS MATERIALIZED ({}) ",
            events::lock_users_sql(also.lock_users, &mut values)
        )
    };
    let sql = format!(
        "{locked}SELECT 0 AS part, owner.kyc_level, owner.kyc_status, s.kind, s.wallet_id, s.total, \
           NULL::timestamptz AS at, (SELECT count(*) FROM locked) AS locked FROM users owner \
         LEFT JOIN (SELECT kind, wallet_id, SUM(amount) AS total FROM ( \
           SELECT u.kind, u.wallet_id, u.amount FROM limit_usage u \
           WHERE u.wallet_id IN ({ids}) AND u.hour >= $6 \
           UNION ALL \
           SELECT t.kind, CASE WHEN t.kind = $1 THEN t.to_wallet_id ELSE t.from_wallet_id END, t.amount \
           FROM transactions t \
           WHERE ((t.kind = $1 AND t.to_wallet_id IN ({ids})) \
                  OR (t.kind IN ($2, $3) AND t.from_wallet_id IN ({ids}))) \
             AND t.status IN ({statuses}) \
             AND t.created_at >= $4 AND t.created_at < $5 \
         ) used GROUP BY 1, 2) s ON true \
         WHERE owner.id = {user}{history}"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut owner = None;
    let mut used = Vec::with_capacity(rows.len());
    let mut history = risk::History::new();
    for row in &rows {
        if row.try_get::<i32>("", "part")? == 1 {
            let amount: Money = row.try_get("", "total")?;
            history.push((amount.0, row.try_get("", "at")?));
            continue;
        }
        if owner.is_none() {
            let status: String = row.try_get("", "kyc_status")?;
            let locked: i64 = row.try_get("", "locked")?;
            owner = Some((row.try_get::<i32>("", "kyc_level")?, status, locked));
        }
        let Some(kind) = row.try_get::<Option<String>>("", "kind")? else {
            continue; // nothing moved
        };
        let kind = TransactionKind::parse(&kind)
            .map_err(|_| inconsistent(format!("transaction kind {kind}")))?;
        let wallet: Uuid = row.try_get("", "wallet_id")?;
        let total: Money = row.try_get("", "total")?;
        used.push((wallet, kind, total.0));
    }
    let (level, status, locked) =
        owner.ok_or_else(|| inconsistent(format!("user {user_id} vanished")))?;
    if locked != also.lock_users.len() as i64 {
        return Err(inconsistent(format!(
            "locked {locked} of {} users: a user is missing",
            also.lock_users.len()
        )));
    }
    let usage = Usage {
        level,
        refused: status == KycStatus::Rejected.as_str(),
        used,
    };
    // Newest first, whatever order the union returned them in.
    history.sort_by_key(|h| std::cmp::Reverse(h.1));
    let read = AlsoRead {
        history: also.history.then_some(history),
        users_locked: !also.lock_users.is_empty(),
    };
    Ok((usage, read))
}

/// Forgets usage buckets older than the window (PostgreSQL); returns how
/// many went.
pub async fn prune_usage(db: &impl ConnectionTrait) -> StoreResult<u64> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(0);
    }
    let res = db
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "DELETE FROM limit_usage WHERE hour < $1::timestamptz AT TIME ZONE 'UTC'",
            [(now() - Duration::hours(WINDOW_HOURS + 1)).into()],
        ))
        .await?;
    Ok(res.rows_affected())
}
