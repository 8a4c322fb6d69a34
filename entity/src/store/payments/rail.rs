//! Movements between one wallet and the payment rail: sandbox deposits,
//! card deposits the provider reported paid, withdrawals and their settlement.

use domain::events::TransactionChange;
use domain::{
    Amount, DomainError, Posting, TransactionKind, TransactionStatus, WithdrawalOutcome,
    transaction::ensure_settleable,
};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, QuerySelect, TransactionTrait};
use uuid::Uuid;

use crate::entities::transactions;
use crate::store::records::{MoneyOutcome, TransactionRecord};
use crate::store::risk::{self, NewAlert};
use crate::store::{StoreResult, events, inconsistent, limits, wallets};

use super::books::{
    NewTransaction, audit_money, insert_transaction, lock_exact, set_status, store_credited,
    transaction_updated, write_posting,
};
use super::{Checks, hold_alert, screen};

/// Credits a card deposit the payment provider reported paid, inside the
/// caller's transaction. The money was received, so it is booked even to a
/// frozen wallet (freezing stops spending it, not receiving it); tier limits
/// were checked when the deposit started.
pub(crate) async fn credit_card_deposit(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    wallet_id: Uuid,
    amount: Decimal,
) -> StoreResult<TransactionRecord> {
    let [wallet] = lock_exact::<1>(txn, [wallet_id]).await?;
    let amount = Amount::new(amount, wallet.currency)?;
    let posting = Posting::deposit(wallet.id, amount);
    let next = wallet.balances().apply(
        wallet.id,
        wallet.currency,
        domain::WalletStatus::Active,
        &posting,
    )?;
    let tx = insert_transaction(
        txn,
        NewTransaction {
            kind: TransactionKind::Deposit,
            status: TransactionStatus::Completed,
            amount,
            from_wallet_id: None,
            to_wallet_id: Some(wallet.id),
            memo: None,
            destination: None,
            initiated_by: user_id,
            original_id: None,
            risk: None,
        },
    )
    .await?;
    write_posting(txn, tx.id, &posting).await?;
    let before = wallet.balance();
    let wallet = store_credited(txn, tx.id, &wallet, next).await?;
    events::balance_updated(txn, &wallet, wallet.balance() - before, tx.id).await?;
    audit_money(txn, user_id, "wallet.card_deposit", &tx).await?;
    Ok(tx)
}

/// A movement between one wallet of the caller and the payment rail.
pub(super) struct SingleWallet {
    pub(super) kind: TransactionKind,
    pub(super) status: TransactionStatus,
    pub(super) posting: fn(Uuid, Amount) -> Posting,
    pub(super) destination: Option<String>,
    pub(super) action: &'static str,
}

pub(super) async fn move_single(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    wallet_id: Uuid,
    amount: Decimal,
    spec: SingleWallet,
    checks: Checks<'_>,
    blocked: &mut Option<NewAlert>,
) -> StoreResult<MoneyOutcome> {
    let owned = wallets::get_owned(txn, user_id, wallet_id).await?;
    let [wallet] = lock_exact::<1>(txn, [owned.id]).await?;
    let amount = Amount::new(amount, wallet.currency)?;
    let posting = (spec.posting)(wallet.id, amount);
    let next = wallet
        .balances()
        .apply(wallet.id, wallet.currency, wallet.status, &posting)?;
    // Money leaving is screened; a held withdrawal keeps its hold and is
    // not paid out until compliance releases it.
    let screened = spec.kind == TransactionKind::Withdrawal;
    let read = limits::check_reading(
        txn,
        checks.limits,
        &wallet,
        spec.kind,
        amount.value(),
        limits::Also {
            history: screened && checks.risk.needs_history(),
            lock_users: &[],
        },
    )
    .await?;
    let (assessment, held) = if screened {
        let assessment = risk::assess(
            txn,
            checks.risk,
            &wallet,
            spec.kind,
            amount.value(),
            None,
            read.history,
        )
        .await?;
        let held = screen(&assessment, user_id, spec.kind, amount, blocked)?;
        (Some(assessment), held)
    } else {
        (None, false)
    };
    let (from_wallet_id, to_wallet_id) = match spec.kind {
        TransactionKind::Deposit => (None, Some(wallet.id)),
        _ => (Some(wallet.id), None),
    };
    let tx = insert_transaction(
        txn,
        NewTransaction {
            kind: spec.kind,
            status: if held {
                TransactionStatus::Held
            } else {
                spec.status
            },
            amount,
            from_wallet_id,
            to_wallet_id,
            memo: None,
            destination: spec.destination,
            initiated_by: user_id,
            original_id: None,
            risk: assessment.as_ref(),
        },
    )
    .await?;
    write_posting(txn, tx.id, &posting).await?;
    let before = wallet.balance();
    let wallet = if spec.kind == TransactionKind::Deposit {
        store_credited(txn, tx.id, &wallet, next).await?
    } else {
        wallets::store_balances(txn, &wallet, next).await?
    };
    events::balance_updated(txn, &wallet, wallet.balance() - before, tx.id).await?;
    if held && let Some(assessment) = assessment {
        transaction_updated(txn, user_id, &tx, TransactionChange::Held, None, None).await?;
        hold_alert(txn, user_id, &tx, assessment).await?;
    }
    audit_money(txn, user_id, spec.action, &tx).await?;
    Ok(MoneyOutcome {
        transaction: tx,
        wallet,
        counterpart: None,
    })
}

/// Completes or fails a pending withdrawal (admin or payment rail), releasing
/// the hold. Returns the transaction and the owner's wallet.
pub async fn settle_withdrawal(
    db: &DatabaseConnection,
    actor: Option<Uuid>,
    transaction_id: Uuid,
    outcome: WithdrawalOutcome,
) -> StoreResult<MoneyOutcome> {
    let txn = db.begin().await?;
    let settled = settle_withdrawal_in(&txn, actor, transaction_id, outcome).await?;
    txn.commit().await?;
    Ok(settled)
}

/// [`settle_withdrawal`] inside the caller's transaction.
pub(crate) async fn settle_withdrawal_in(
    txn: &impl ConnectionTrait,
    actor: Option<Uuid>,
    transaction_id: Uuid,
    outcome: WithdrawalOutcome,
) -> StoreResult<MoneyOutcome> {
    let first_look = transactions::Entity::find_by_id(transaction_id)
        .one(txn)
        .await?
        .ok_or_else(|| DomainError::not_found("transaction"))?;
    let wallet_id = first_look
        .from_wallet_id
        .ok_or_else(|| DomainError::bad_input("only withdrawals can be settled"))?;
    let [wallet] = lock_exact::<1>(txn, [wallet_id]).await?;
    if actor == Some(wallet.user_id) {
        // Separation of duties: staff never settle their own pay-outs.
        return Err(DomainError::forbidden("nobody may settle their own withdrawal").into());
    }
    // Re-read under the wallet lock: every settlement takes it first.
    let tx = TransactionRecord::try_from(
        transactions::Entity::find_by_id(transaction_id)
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or_else(|| inconsistent("transaction vanished"))?,
    )?;
    ensure_settleable(tx.kind, tx.status)?;
    let amount = Amount::new(tx.amount, tx.currency)?;
    let posting = match outcome {
        WithdrawalOutcome::Completed => Posting::settle_hold(wallet.id, amount),
        WithdrawalOutcome::Failed => Posting::release_hold(wallet.id, amount),
    };
    // Settlement proceeds on a frozen wallet: the money already left the
    // available balance when it was held.
    let next = wallet.balances().apply(
        wallet.id,
        wallet.currency,
        domain::WalletStatus::Active,
        &posting,
    )?;
    write_posting(txn, tx.id, &posting).await?;
    let tx = set_status(txn, &tx, outcome.final_status()).await?;
    let before = wallet.balance();
    let wallet = match outcome {
        WithdrawalOutcome::Completed => wallets::store_balances(txn, &wallet, next).await?,
        WithdrawalOutcome::Failed => store_credited(txn, tx.id, &wallet, next).await?,
    };
    let delta = wallet.balance() - before;
    events::balance_updated(txn, &wallet, delta, tx.id).await?;
    // The pay-out account reference stays in the database, out of the
    // outbox and Redis.
    let settled = domain::events::WithdrawalSettled {
        transaction: TransactionRecord {
            destination: None,
            ..tx.clone()
        },
    };
    events::append(
        txn,
        wallet.user_id,
        domain::EventBody::WithdrawalSettled(settled),
    )
    .await?;
    audit_money(
        txn,
        actor.unwrap_or(wallet.user_id),
        "withdrawal.settle",
        &tx,
    )
    .await?;
    Ok(MoneyOutcome {
        transaction: tx,
        wallet,
        counterpart: None,
    })
}
