//! The books' invariants, checked on the database after a test moved money.

use std::collections::HashMap;

use entity::entities::{ledger_entries, transactions, wallets};
use rust_decimal::Decimal;
use sea_orm::{DatabaseConnection, EntityTrait};

/// Every posting sums to zero in its currency, every transaction has one,
/// every wallet equals its ledger (available and held) with no negative
/// available balance, and the debt account is minus the wallets' debts in
/// each currency.
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
}
