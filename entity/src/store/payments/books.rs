//! The writes every movement shares: the transaction row, its ledger lines,
//! credited balances, `transaction.updated` notices and the audit record;
//! and the ledger's own sums that the books check compares wallets with.

use domain::events::{TransactionChange, TransactionUpdated};
use domain::risk::Assessment;
use domain::{
    Amount, Balances, EntryAccount, EventBody, Posting, TransactionKind, TransactionStatus,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{ledger_entries, transactions};
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::records::{TransactionRecord, WalletRecord};
use crate::store::risk;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreResult, events, inconsistent, now, wallets};

/// `transaction.updated` for one party of a movement.
pub(crate) async fn transaction_updated(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    tx: &TransactionRecord,
    change: TransactionChange,
    compensation: Option<&TransactionRecord>,
    reason: Option<&str>,
) -> StoreResult<()> {
    let strip = |t: &TransactionRecord| TransactionRecord {
        destination: None,
        ..t.clone()
    };
    let body = TransactionUpdated {
        transaction: strip(tx),
        change,
        compensation: compensation.map(strip),
        reason: reason.map(str::to_owned),
    };
    events::append(txn, user_id, EventBody::TransactionUpdated(body)).await?;
    Ok(())
}

/// Stores a wallet's balances after money arrived in it, repaying its debt
/// first (a posting of the same transaction to the debt account).
pub(crate) async fn store_credited(
    txn: &impl ConnectionTrait,
    transaction_id: Uuid,
    wallet: &WalletRecord,
    next: Balances,
) -> StoreResult<WalletRecord> {
    writes::at_once(txn, |w| stage_credited(w, transaction_id, wallet, next)).await
}

/// [`store_credited`] staged with the other writes of its transaction.
pub(crate) fn stage_credited(
    writes: &mut Writes,
    transaction_id: Uuid,
    wallet: &WalletRecord,
    next: Balances,
) -> WalletRecord {
    let repaid = wallet.debt.min(next.available);
    if repaid <= Decimal::ZERO {
        return wallets::stage(writes, wallet, next, wallet.debt);
    }
    let posting = Posting::repay_debt(wallet.id, wallet.currency, repaid);
    stage_posting(writes, transaction_id, &posting);
    let next = Balances {
        available: next.available - repaid,
        ..next
    };
    tracing::info!(wallet.id = %wallet.id, "incoming money repaid a debt");
    wallets::stage(writes, wallet, next, wallet.debt - repaid)
}

pub(crate) async fn lock_exact<const N: usize>(
    txn: &impl ConnectionTrait,
    ids: [Uuid; N],
) -> StoreResult<[WalletRecord; N]> {
    let locked = wallets::lock_in_order(txn, &ids).await?;
    locked
        .try_into()
        .map_err(|_| inconsistent("locked a different number of wallets"))
}

pub(crate) struct NewTransaction<'a> {
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    pub amount: Amount,
    pub from_wallet_id: Option<Uuid>,
    pub to_wallet_id: Option<Uuid>,
    pub memo: Option<String>,
    pub destination: Option<String>,
    pub initiated_by: Uuid,
    pub original_id: Option<Uuid>,
    pub risk: Option<&'a Assessment>,
}

pub(crate) async fn insert_transaction(
    txn: &impl ConnectionTrait,
    new: NewTransaction<'_>,
) -> StoreResult<TransactionRecord> {
    writes::at_once(txn, |w| stage_transaction(w, new)).await?
}

/// Moves a transaction to `status`; returns it as written.
pub(crate) async fn set_status(
    txn: &impl ConnectionTrait,
    tx: &TransactionRecord,
    status: TransactionStatus,
) -> StoreResult<TransactionRecord> {
    let at = now();
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(status.as_str()))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(at))
        .filter(transactions::Column::Id.eq(tx.id))
        .exec(txn)
        .await?;
    Ok(TransactionRecord {
        status,
        updated_at: at,
        ..tx.clone()
    })
}

/// Stages the transaction row; returns it as it will be written.
pub(crate) fn stage_transaction(
    writes: &mut Writes,
    new: NewTransaction<'_>,
) -> StoreResult<TransactionRecord> {
    let at = now();
    let row = transactions::Model {
        id: Uuid::now_v7(),
        kind: new.kind.as_str().to_owned(),
        status: new.status.as_str().to_owned(),
        amount: Money(new.amount.value()),
        currency: new.amount.currency().code().to_owned(),
        from_wallet_id: new.from_wallet_id,
        to_wallet_id: new.to_wallet_id,
        memo: new.memo,
        destination: new.destination,
        initiated_by: new.initiated_by,
        created_at: at,
        updated_at: at,
        original_id: new.original_id,
        risk_score: new.risk.map(|a| i32::try_from(a.score).unwrap_or(100)),
        risk_rules: new.risk.and_then(risk::rule_names),
    };
    writes.push(Write::new(
        transactions::Entity::insert(transactions::ActiveModel::from(row.clone()))
            .build(writes.backend()),
    ));
    TransactionRecord::try_from(row)
}

pub(crate) async fn write_posting(
    txn: &impl ConnectionTrait,
    transaction_id: Uuid,
    posting: &Posting,
) -> StoreResult<()> {
    writes::at_once(txn, |w| stage_posting(w, transaction_id, posting)).await
}

/// Stages the ledger lines of a posting.
pub(crate) fn stage_posting(writes: &mut Writes, transaction_id: Uuid, posting: &Posting) {
    let at = now();
    let rows = posting.lines().iter().map(|line| {
        let (wallet_id, account) = match &line.account {
            EntryAccount::Wallet { wallet_id, bucket } => {
                (Some(*wallet_id), bucket.as_str().to_owned())
            }
            EntryAccount::External(name) => (None, (*name).to_owned()),
        };
        ledger_entries::ActiveModel {
            id: Set(Uuid::now_v7()),
            transaction_id: Set(transaction_id),
            wallet_id: Set(wallet_id),
            account: Set(account),
            currency: Set(posting.currency().code().to_owned()),
            amount: Set(Money(line.amount)),
            created_at: Set(at),
        }
    });
    writes.push(Write::new(
        ledger_entries::Entity::insert_many(rows).build(writes.backend()),
    ));
}

pub(crate) async fn audit_money(
    txn: &impl ConnectionTrait,
    actor: Uuid,
    action: &str,
    tx: &TransactionRecord,
) -> StoreResult<()> {
    writes::at_once(txn, |w| stage_audit_money(w, actor, action, tx)).await
}

/// Stages the audit record of a movement.
pub(crate) fn stage_audit_money(
    writes: &mut Writes,
    actor: Uuid,
    action: &str,
    tx: &TransactionRecord,
) {
    audit::stage(
        writes,
        AuditRecord {
            actor_id: Some(actor),
            action,
            subject_type: "transaction",
            subject_id: Some(tx.id),
            details: json!({
                "kind": tx.kind,
                "status": tx.status,
                "amount": domain::money::to_canonical(tx.amount),
                "currency": tx.currency,
                "fromWalletId": tx.from_wallet_id,
                "toWalletId": tx.to_wallet_id,
            }),
        },
    );
}

/// The sum of a wallet's ledger lines per bucket (available, held): the
/// balances the wallet row must equal.
pub async fn ledger_balances(
    db: &impl ConnectionTrait,
    wallet_id: Uuid,
) -> StoreResult<(Decimal, Decimal)> {
    let lines: Vec<(String, Money)> = ledger_entries::Entity::find()
        .select_only()
        .column(ledger_entries::Column::Account)
        .column(ledger_entries::Column::Amount)
        .filter(ledger_entries::Column::WalletId.eq(wallet_id))
        .into_tuple()
        .all(db)
        .await?;
    let mut available = Decimal::ZERO;
    let mut held = Decimal::ZERO;
    for (account, amount) in lines {
        match account.as_str() {
            "AVAILABLE" => available += amount.0,
            "HELD" => held += amount.0,
            other => {
                return Err(inconsistent(format!(
                    "wallet ledger line on account {other}"
                )));
            }
        }
    }
    Ok((available.normalize(), held.normalize()))
}
