//! Compliance decides movements the risk checks held: a released transfer
//! goes on to its recipient, a released withdrawal goes back to the payout
//! queue; a rejected one returns its frozen funds to the sender. Each
//! decision resolves the alert, tells the parties and is audited.

use domain::events::TransactionChange;
use domain::{
    Amount, DomainError, HoldDecision, Posting, TransactionKind, TransactionStatus, WalletStatus,
};
use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::entities::transactions;
use crate::store::audit::{self, AuditRecord};
use crate::store::payments::books::{
    set_status, stage_credited, stage_posting, store_credited, transaction_updated, write_posting,
};
use crate::store::payments::transfer::announce_transfer;
use crate::store::records::{MoneyOutcome, TransactionRecord};
use crate::store::writes::Writes;
use crate::store::{StoreResult, events, inconsistent, requests, risk, wallets};

/// Releases or rejects a held movement (compliance, never their own).
/// `wallet` in the result is the sender's.
pub async fn decide(
    db: &DatabaseConnection,
    officer: Uuid,
    transaction_id: Uuid,
    decision: HoldDecision,
    reason: &str,
) -> StoreResult<MoneyOutcome> {
    let txn = db.begin().await?;
    let first_look = transactions::Entity::find_by_id(transaction_id)
        .one(&txn)
        .await?
        .ok_or_else(|| DomainError::not_found("transaction"))?;
    let from_id = first_look
        .from_wallet_id
        .ok_or_else(|| DomainError::bad_input("this movement has no risk hold"))?;
    let ids: Vec<Uuid> = [Some(from_id), first_look.to_wallet_id]
        .into_iter()
        .flatten()
        .collect();
    let locked = wallets::lock_in_order(&txn, &ids).await?;
    let from = locked
        .iter()
        .find(|w| w.id == from_id)
        .cloned()
        .ok_or_else(|| inconsistent("locked sender missing"))?;
    if locked.iter().any(|w| w.user_id == officer) {
        return Err(DomainError::forbidden("nobody may decide a hold on their own money").into());
    }
    // Re-read under the wallet locks: every decision takes them first.
    let tx = TransactionRecord::try_from(
        transactions::Entity::find_by_id(transaction_id)
            .lock_exclusive()
            .one(&txn)
            .await?
            .ok_or_else(|| inconsistent("transaction vanished"))?,
    )?;
    if tx.status != TransactionStatus::Held {
        return Err(DomainError::bad_input(format!(
            "only held movements can be released or rejected; this one is {}",
            tx.status.as_str()
        ))
        .into());
    }
    let amount = Amount::new(tx.amount, tx.currency)?;
    let (resolution, change) = match decision {
        HoldDecision::Release => ("RELEASED", TransactionChange::Released),
        HoldDecision::Reject => ("REJECTED", TransactionChange::Rejected),
    };
    risk::resolve(&txn, tx.id, officer, resolution, reason).await?;
    let status = match (decision, tx.kind) {
        (HoldDecision::Release, TransactionKind::Transfer) => TransactionStatus::Completed,
        (HoldDecision::Release, _) => TransactionStatus::Pending,
        (HoldDecision::Reject, _) => TransactionStatus::Failed,
    };
    let tx = set_status(&txn, &tx, status).await?;
    // The funds were frozen when the hold began, so a wallet frozen since
    // does not stop the decision.
    let from_after = match (decision, tx.kind) {
        (HoldDecision::Release, TransactionKind::Transfer) => {
            let to = locked
                .iter()
                .find(|w| Some(w.id) == tx.to_wallet_id)
                .cloned()
                .ok_or_else(|| inconsistent("locked recipient missing"))?;
            let posting = Posting::release_held_transfer(from.id, to.id, amount);
            let from_next =
                from.balances()
                    .apply(from.id, from.currency, WalletStatus::Active, &posting)?;
            let to_next = to
                .balances()
                .apply(to.id, to.currency, to.status, &posting)?;
            let mut writes = Writes::new(&txn);
            stage_posting(&mut writes, tx.id, &posting);
            let from_after = wallets::stage(&mut writes, &from, from_next, from.debt);
            let to_after = stage_credited(&mut writes, tx.id, &to, to_next);
            announce_transfer(
                &txn,
                &mut writes,
                &from_after,
                &to_after,
                &tx,
                to_after.balance() - to.balance(),
            )
            .await?;
            writes.flush(&txn).await?;
            from_after
        }
        (HoldDecision::Release, _) => from.clone(),
        (HoldDecision::Reject, _) => {
            let posting = Posting::release_hold(from.id, amount);
            let next =
                from.balances()
                    .apply(from.id, from.currency, WalletStatus::Active, &posting)?;
            write_posting(&txn, tx.id, &posting).await?;
            let after = store_credited(&txn, tx.id, &from, next).await?;
            events::balance_updated(&txn, &after, after.balance() - from.balance(), tx.id).await?;
            requests::reopen_paid_by(&txn, tx.id).await?;
            after
        }
    };
    transaction_updated(&txn, from.user_id, &tx, change, None, Some(reason)).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(officer),
            action: match decision {
                HoldDecision::Release => "risk.hold_released",
                HoldDecision::Reject => "risk.hold_rejected",
            },
            subject_type: "transaction",
            subject_id: Some(tx.id),
            details: json!({ "reason": reason, "status": tx.status.as_str(), "kind": tx.kind.as_str() }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(MoneyOutcome {
        transaction: tx,
        wallet: from_after,
        counterpart: None,
    })
}
