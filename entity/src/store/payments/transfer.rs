//! Transfers between two wallets of one currency: resolved, checked,
//! written, and announced to both parties.

use domain::events::{BalanceUpdated, TransactionChange, TransactionMoved};
use domain::{
    Amount, DomainError, Email, ErrorCode, EventBody, Posting, TransactionKind, TransactionStatus,
};
use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::store::records::{MoneyOutcome, TransactionRecord, WalletRecord};
use crate::store::risk::{self, NewAlert};
use crate::store::writes::Writes;
use crate::store::{StoreError, StoreResult, events, limits, users, wallets};

use super::books::{
    NewTransaction, lock_exact, stage_audit_money, stage_credited, stage_posting,
    stage_transaction, transaction_updated,
};
use super::{Checks, hold_alert, screen};

/// A transfer as resolved: wallet ids, the amount, the note.
pub(super) struct TransferOrder {
    pub(super) from: Uuid,
    pub(super) to: Uuid,
    pub(super) amount: Decimal,
    pub(super) memo: Option<String>,
}

/// Moves an amount between two wallets of one currency, within the limits,
/// the risk rules and the step-up thresholds: a held transfer only freezes
/// the sender's funds.
pub(super) async fn transfer(
    txn: &impl ConnectionTrait,
    writes: &mut Writes,
    user_id: Uuid,
    order: TransferOrder,
    checks: Checks<'_>,
    blocked: &mut Option<NewAlert>,
) -> StoreResult<MoneyOutcome> {
    if order.to == order.from {
        return Err(DomainError::bad_input("cannot transfer to the same wallet").into());
    }
    let [from, to] = match lock_exact::<2>(txn, [order.from, order.to]).await {
        Err(StoreError::Domain(e)) if e.code == ErrorCode::NotFound => {
            // Say which: the sender's own wallet, or the recipient's.
            wallets::get_owned(txn, user_id, order.from).await?;
            return Err(DomainError::not_found("recipient wallet").into());
        }
        locked => locked?,
    };
    if from.user_id != user_id {
        // Other users' wallet ids reveal nothing.
        return Err(DomainError::not_found("wallet").into());
    }
    let amount = Amount::new(order.amount, from.currency)?;
    if let Some(thresholds) = checks.step_up {
        thresholds.check(amount)?;
    }
    let posting = Posting::transfer(from.id, to.id, amount);
    let from_next = from
        .balances()
        .apply(from.id, from.currency, from.status, &posting)?;
    let to_next = to
        .balances()
        .apply(to.id, to.currency, to.status, &posting)
        .map_err(|e| match e.code {
            // Whether someone else's wallet is frozen is not the sender's business.
            ErrorCode::WalletFrozen | ErrorCode::AccountClosed => {
                tracing::info!(wallet.id = %to.id, "transfer refused: receiving wallet cannot receive");
                DomainError::forbidden("the recipient cannot receive this transfer")
            }
            ErrorCode::CurrencyMismatch => DomainError::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "the receiving wallet holds {}, not {}",
                    to.currency, from.currency
                ),
            ),
            _ => e,
        })?;
    // The users' rows are locked with the checks, in the order the events'
    // writes lock them (the two users' sequences are taken at the end).
    let mut users = [from.user_id, to.user_id];
    users.sort_unstable();
    let users: &[Uuid] = if users[0] == users[1] { &[] } else { &users };
    let read = limits::check_reading(
        txn,
        checks.limits,
        &from,
        TransactionKind::Transfer,
        amount.value(),
        limits::Also {
            history: checks.risk.needs_history(),
            lock_users: users,
        },
    )
    .await?;
    if read.users_locked {
        writes.users_locked(users);
    }
    let assessment = risk::assess(
        txn,
        checks.risk,
        &from,
        TransactionKind::Transfer,
        amount.value(),
        Some(to.id),
        read.history,
    )
    .await?;
    let held = screen(
        &assessment,
        user_id,
        TransactionKind::Transfer,
        amount,
        blocked,
    )?;
    let tx = stage_transaction(
        writes,
        NewTransaction {
            kind: TransactionKind::Transfer,
            status: if held {
                TransactionStatus::Held
            } else {
                TransactionStatus::Completed
            },
            amount,
            from_wallet_id: Some(from.id),
            to_wallet_id: Some(to.id),
            memo: order.memo,
            destination: None,
            initiated_by: user_id,
            original_id: None,
            risk: Some(&assessment),
        },
    )?;
    if held {
        // Only the sender's funds move, into the frozen bucket; the
        // recipient hears of it once compliance releases it.
        let hold = Posting::hold(from.id, amount);
        let from_next = from
            .balances()
            .apply(from.id, from.currency, from.status, &hold)?;
        stage_posting(writes, tx.id, &hold);
        let from = wallets::stage(writes, &from, from_next, from.debt);
        events::balance_updated(txn, &from, Decimal::ZERO, tx.id).await?;
        transaction_updated(txn, from.user_id, &tx, TransactionChange::Held, None, None).await?;
        hold_alert(txn, user_id, &tx, assessment).await?;
        stage_audit_money(writes, user_id, "wallet.transfer_held", &tx);
        return Ok(MoneyOutcome {
            transaction: tx,
            wallet: from,
            counterpart: None,
        });
    }
    stage_posting(writes, tx.id, &posting);
    let from = wallets::stage(writes, &from, from_next, from.debt);
    let received = stage_credited(writes, tx.id, &to, to_next);
    let to_delta = received.balance() - to.balance();
    announce_transfer(txn, writes, &from, &received, &tx, to_delta).await?;
    stage_audit_money(writes, user_id, "wallet.transfer", &tx);
    Ok(MoneyOutcome {
        transaction: tx,
        wallet: from,
        counterpart: None,
    })
}

/// The events of a completed transfer: both balances, and the sent and
/// received notices when two users are involved, written in one go (see
/// [`events::append_all`] for the lock order) with the other `writes`.
pub(crate) async fn announce_transfer(
    txn: &impl ConnectionTrait,
    writes: &mut Writes,
    from: &WalletRecord,
    to: &WalletRecord,
    tx: &TransactionRecord,
    to_delta: Decimal,
) -> StoreResult<()> {
    let mut all = vec![(
        from.user_id,
        EventBody::BalanceUpdated(BalanceUpdated::of(from, -tx.amount, tx.id)),
    )];
    if to.user_id != from.user_id {
        all.push((
            from.user_id,
            EventBody::TransactionSent(TransactionMoved {
                transaction: tx.clone(),
                counterparty_id: Some(to.user_id),
            }),
        ));
    }
    all.push((
        to.user_id,
        EventBody::BalanceUpdated(BalanceUpdated::of(to, to_delta, tx.id)),
    ));
    if to.user_id != from.user_id {
        all.push((
            to.user_id,
            EventBody::TransactionReceived(TransactionMoved {
                transaction: tx.clone(),
                counterparty_id: Some(from.user_id),
            }),
        ));
    }
    events::stage_all(txn, writes, all).await
}

/// The wallet in the sender's currency of the user with this e-mail.
pub(super) async fn email_recipient(
    txn: &impl ConnectionTrait,
    from: &WalletRecord,
    email: &Email,
) -> StoreResult<Uuid> {
    let user = users::find_row_by_email(txn, email)
        .await?
        .ok_or_else(|| DomainError::not_found("recipient"))?;
    let wallet = wallets::find_by_currency(txn, user.id, from.currency)
        .await?
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::NotFound,
                format!("the recipient has no {} wallet", from.currency),
            )
        })?;
    Ok(wallet.id)
}
