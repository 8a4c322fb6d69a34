//! The books' invariants, checked on the database after a test moved money.

use std::collections::HashMap;

use chrono::Timelike;
use entity::entities::{ledger_entries, transactions, wallets};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, Statement};

/// Every posting sums to zero in its currency, every transaction has one,
/// every wallet equals its ledger (available and held) with no negative
/// available balance, the debt account is minus the wallets' debts in
/// each currency, and (PostgreSQL) the tier limits' hourly usage buckets
/// equal what the movements add up to.
pub async fn assert_balanced(db: &DatabaseConnection) {
    let lines = ledger_entries::Entity::find()
        .all(db)
        .await
        .expect("ledger lines");
    let mut per_tx: HashMap<(uuid::Uuid, String), Decimal> = HashMap::new();
    let mut debts: HashMap<String, Decimal> = HashMap::new();
    for l in &lines {
        *per_tx
            .entry((l.transaction_id, l.currency.clone()))
            .or_default() += l.amount.0;
        if l.account == domain::ledger::DEBT_ACCOUNT {
            *debts.entry(l.currency.clone()).or_default() += l.amount.0;
        }
    }
    for ((tx, currency), sum) in &per_tx {
        assert!(
            sum.is_zero(),
            "transaction {tx} does not balance in {currency}: {sum}"
        );
    }
    let txs = transactions::Entity::find().all(db).await.expect("txs");
    for t in &txs {
        assert!(
            per_tx.keys().any(|(id, _)| *id == t.id),
            "transaction {} ({} {}) has no posting",
            t.id,
            t.kind,
            t.status
        );
    }
    let all = wallets::Entity::find().all(db).await.expect("wallets");
    let mut owed: HashMap<String, Decimal> = HashMap::new();
    for w in &all {
        let (available, held) = entity::store::payments::ledger_balances(db, w.id)
            .await
            .expect("ledger");
        assert_eq!(
            available,
            w.available.0.normalize(),
            "wallet {} available",
            w.id
        );
        assert_eq!(held, w.frozen.0.normalize(), "wallet {} held", w.id);
        assert!(w.available.0 >= Decimal::ZERO, "wallet {} overdrawn", w.id);
        assert!(
            w.frozen.0 >= Decimal::ZERO,
            "wallet {} frozen below zero",
            w.id
        );
        assert!(w.debt.0 >= Decimal::ZERO, "wallet {} debt below zero", w.id);
        assert_eq!(w.balance.0, w.available.0 + w.frozen.0);
        *owed.entry(w.currency.clone()).or_default() += w.debt.0;
    }
    for (currency, total) in owed {
        let booked = debts.get(&currency).copied().unwrap_or_default();
        assert_eq!(
            booked, -total,
            "the {currency} debt account against the wallets' debts"
        );
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        assert_usage_matches(db, &txs).await;
    }
}

/// The buckets the trigger keeps against the movements, summed here by the
/// domain's rules (`KINDS`, `COUNTED`) per wallet, kind and UTC hour.
async fn assert_usage_matches(db: &DatabaseConnection, txs: &[transactions::Model]) {
    use domain::limits::{COUNTED, KINDS};
    use domain::{TransactionKind, TransactionStatus};
    type Bucket = (uuid::Uuid, String, chrono::NaiveDateTime);
    let mut expected: HashMap<Bucket, Decimal> = HashMap::new();
    for t in txs {
        let kind = TransactionKind::parse(&t.kind).expect("kind");
        let status = TransactionStatus::parse(&t.status).expect("status");
        if !KINDS.contains(&kind) || !COUNTED.contains(&status) {
            continue;
        }
        let wallet = match kind {
            TransactionKind::Deposit => t.to_wallet_id,
            _ => t.from_wallet_id,
        }
        .expect("a counted movement has its wallet");
        let hour = t
            .created_at
            .naive_utc()
            .with_minute(0)
            .and_then(|h| h.with_second(0))
            .and_then(|h| h.with_nanosecond(0))
            .expect("hour");
        *expected.entry((wallet, t.kind.clone(), hour)).or_default() += t.amount.0;
    }
    expected.retain(|_, v| !v.is_zero());
    let rows = db
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT wallet_id, kind, hour, amount FROM limit_usage WHERE amount <> 0",
        ))
        .await
        .expect("usage buckets");
    let kept: HashMap<Bucket, Decimal> = rows
        .iter()
        .map(|r| {
            (
                (
                    r.try_get("", "wallet_id").expect("wallet"),
                    r.try_get("", "kind").expect("kind"),
                    r.try_get("", "hour").expect("hour"),
                ),
                r.try_get::<Decimal>("", "amount")
                    .expect("amount")
                    .normalize(),
            )
        })
        .collect();
    let expected: HashMap<Bucket, Decimal> = expected
        .into_iter()
        .map(|(k, v)| (k, v.normalize()))
        .collect();
    assert_eq!(kept, expected, "limit_usage against the movements");
}
