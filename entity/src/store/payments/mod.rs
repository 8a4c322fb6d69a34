//! Money movements: deposits, withdrawals, transfers and settlement. Each runs
//! in one database transaction that claims nothing twice, locks the wallets
//! in a fixed order, lets the domain decide, writes balanced ledger lines, the
//! new balances (version-checked), the transaction, outbox events and an
//! audit record, and stores the idempotent result. What people are told
//! about it (in-app, e-mail, push) the notifier derives from those events.
//!
//! - [`transfer`](mod@transfer): between wallets of one currency, and what the parties are told;
//! - [`exchange`](mod@exchange): between two of the caller's wallets at a quote;
//! - [`rail`]: one wallet and the payment rail: deposits, withdrawals, their settlement;
//! - [`books`]: the writes every movement shares: the transaction row, its
//!   ledger lines, credited balances, the audit record.

pub(crate) mod books;
mod exchange;
pub(crate) mod rail;
pub(crate) mod transfer;

pub use books::ledger_balances;
use exchange::exchange;
pub use rail::settle_withdrawal;
use rail::{SingleWallet, move_single};
use transfer::{TransferOrder, email_recipient, transfer};

use domain::limits::TierLimits;
use domain::risk::{Assessment, RiskDecision};
use domain::step_up::TransferThresholds;
use domain::{
    Amount, DomainError, ErrorCode, IdempotencyKey, MoneyCommand, Posting, Recipient,
    TransactionKind, TransactionStatus,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tracing::Instrument;
use uuid::Uuid;

use crate::store::idempotency::{self, Holding, KeyPolicy};
use crate::store::records::{MoneyOutcome, TransactionRecord};
use crate::store::risk::{self, NewAlert, RiskContext};
use crate::store::writes::Writes;
use crate::store::{StoreError, StoreResult, inconsistent, wallets};

/// How many times a money transaction runs when the database keeps
/// breaking deadlocks with it.
const TRIES: u32 = 3;

/// What a money mutation is checked against besides the balances.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    /// Tier limits.
    pub limits: &'a TierLimits,
    /// Risk rules and the session asking.
    pub risk: RiskContext<'a>,
    /// The amounts from which a transfer needs a step-up, unless the
    /// request confirmed one (`None`).
    pub step_up: Option<&'a TransferThresholds>,
}

/// The outcome of a money mutation and whether it was replayed from its key.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The result (first result, when replayed).
    pub outcome: MoneyOutcome,
    /// True when the idempotency key replayed an earlier result.
    pub replayed: bool,
}

/// Runs a money mutation under an idempotency key: one transaction holds
/// the key, moves the money within the user's tier limits, risk rules and
/// step-up thresholds, and records the result to replay. A key that
/// already completed this very request replays its first result. A
/// movement the risk rules block leaves an alert, written after the
/// refusal rolled back; any other refusal leaves nothing, so the key can be
/// retried.
pub async fn execute(
    db: &DatabaseConnection,
    user_id: Uuid,
    key: &IdempotencyKey,
    command: &MoneyCommand,
    policy: KeyPolicy,
    checks: Checks<'_>,
) -> StoreResult<Executed> {
    let fingerprint = command.fingerprint();
    let mut blocked: Option<NewAlert>;
    let mut tries = 1;
    let attempt = loop {
        blocked = None;
        let attempt = async {
            let txn = db.begin().await?;
            let held = match idempotency::hold(
                &txn,
                user_id,
                key,
                command.operation(),
                &fingerprint,
                policy,
            )
            .await?
            {
                Holding::Fresh(held) => held,
                Holding::Replay(stored) => {
                    let outcome: MoneyOutcome = serde_json::from_value(stored)
                        .map_err(|e| inconsistent(format!("stored idempotent result: {e}")))?;
                    return Ok(Executed {
                        outcome,
                        replayed: true,
                    });
                }
            };
            let mut writes = Writes::new(&txn);
            let outcome = apply(&txn, &mut writes, user_id, command, checks, &mut blocked).await?;
            let stored = serde_json::to_value(&outcome)
                .map_err(|e| inconsistent(format!("serializing result: {e}")))?;
            idempotency::stage_record(&mut writes, held, stored);
            writes.flush(&txn).await?;
            txn.commit().await?;
            Ok::<_, StoreError>(Executed {
                outcome,
                replayed: false,
            })
        }
        .instrument(super::transaction_span(db, command.operation()))
        .await;
        match attempt {
            // The database chose this transaction to break a deadlock, or
            // another request wrote the key after it was read: it rolled
            // back whole, so it runs again rather than failing a valid
            // request (and then finds what became of the key).
            Err(err) if err.worth_running_again() && tries < TRIES => {
                tracing::warn!(error = %err, attempt = tries, "money transaction rolled back; running it again");
                tries += 1;
            }
            attempt => break attempt,
        }
    };
    match attempt {
        Err(StoreError::KeyTaken) => Err(idempotency::in_use().into()),
        Err(err) => {
            if let Some(alert) = blocked
                && let Err(e) = risk::record_alert(db, &alert).await
            {
                tracing::error!(error = %e, user.id = %user_id, "writing a risk alert failed");
            }
            Err(err)
        }
        done => done,
    }
}

/// Moves the money of `command`. Writes that depend on nothing read after
/// them go to `writes`, sent with the key's completion.
async fn apply(
    txn: &impl ConnectionTrait,
    writes: &mut Writes,
    user_id: Uuid,
    command: &MoneyCommand,
    checks: Checks<'_>,
    blocked: &mut Option<NewAlert>,
) -> StoreResult<MoneyOutcome> {
    match command {
        MoneyCommand::Deposit { wallet_id, amount } => {
            let spec = SingleWallet {
                kind: TransactionKind::Deposit,
                status: TransactionStatus::Completed,
                posting: Posting::deposit,
                destination: None,
                action: "wallet.deposit",
            };
            move_single(txn, user_id, *wallet_id, *amount, spec, checks, blocked).await
        }
        MoneyCommand::Withdraw {
            wallet_id,
            amount,
            destination,
        } => {
            let spec = SingleWallet {
                kind: TransactionKind::Withdrawal,
                status: TransactionStatus::Pending,
                posting: Posting::hold,
                destination: Some(destination.clone()),
                action: "wallet.withdraw",
            };
            move_single(txn, user_id, *wallet_id, *amount, spec, checks, blocked).await
        }
        MoneyCommand::Transfer {
            from_wallet_id,
            to,
            amount,
            memo,
        } => {
            let to = match to {
                // Both wallets are read by the lock; a missing one is
                // NOT_FOUND there.
                Recipient::Wallet(id) => *id,
                Recipient::Email(email) => {
                    let from = wallets::get_owned(txn, user_id, *from_wallet_id).await?;
                    email_recipient(txn, &from, email).await?
                }
            };
            let order = TransferOrder {
                from: *from_wallet_id,
                to,
                amount: *amount,
                memo: memo.clone(),
            };
            transfer(txn, writes, user_id, order, checks, blocked).await
        }
        MoneyCommand::Exchange { quote_id } => exchange(txn, user_id, *quote_id).await,
        MoneyCommand::PayRequest { request_id } => {
            let request = super::requests::lock_payable(txn, user_id, *request_id).await?;
            let from = wallets::find_by_currency(txn, user_id, request.currency)
                .await?
                .ok_or_else(|| {
                    DomainError::new(
                        ErrorCode::NotFound,
                        format!("you have no {} wallet to pay from", request.currency),
                    )
                })?;
            let to = wallets::find_by_currency(txn, request.requester_id, request.currency)
                .await?
                .ok_or_else(|| inconsistent("a payment request without the requester's wallet"))?;
            let order = TransferOrder {
                from: from.id,
                to: to.id,
                amount: request.amount,
                memo: request.memo.clone(),
            };
            let outcome = transfer(txn, writes, user_id, order, checks, blocked).await?;
            super::requests::mark_paid(txn, &request, &outcome.transaction).await?;
            Ok(outcome)
        }
        MoneyCommand::Reverse {
            transaction_id,
            reason,
            allow_debt,
        } => super::reversals::reverse(txn, user_id, *transaction_id, reason, *allow_debt).await,
        MoneyCommand::Refund {
            transaction_id,
            amount,
        } => super::reversals::refund(txn, user_id, *transaction_id, *amount).await,
    }
}

/// Applies the risk decision: `Ok(true)` to hold, `Ok(false)` to go
/// ahead, the refusal (with the alert to write after the rollback) to block.
fn screen(
    assessment: &Assessment,
    user_id: Uuid,
    kind: TransactionKind,
    amount: Amount,
    blocked: &mut Option<NewAlert>,
) -> StoreResult<bool> {
    match assessment.decision {
        RiskDecision::Allow => Ok(false),
        RiskDecision::Hold => Ok(true),
        RiskDecision::Block => {
            tracing::info!(user.id = %user_id, risk.score = assessment.score, "movement blocked by risk rules");
            *blocked = Some(NewAlert {
                user_id,
                transaction_id: None,
                kind,
                amount: amount.value(),
                currency: amount.currency(),
                assessment: assessment.clone(),
            });
            Err(assessment.refusal().into())
        }
    }
}

async fn hold_alert(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    tx: &TransactionRecord,
    assessment: Assessment,
) -> StoreResult<()> {
    tracing::info!(user.id = %user_id, tx.id = %tx.id, risk.score = assessment.score, "movement held by risk rules");
    risk::record_alert(
        txn,
        &NewAlert {
            user_id,
            transaction_id: Some(tx.id),
            kind: tx.kind,
            amount: tx.amount,
            currency: tx.currency,
            assessment,
        },
    )
    .await
}
