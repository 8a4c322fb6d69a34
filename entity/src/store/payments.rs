//! Money movements: deposits, withdrawals, transfers and settlement. Each runs
//! in one database transaction that claims nothing twice, locks the wallets
//! in a fixed order, lets the domain decide, writes balanced ledger lines, the
//! new balances (version-checked), the transaction, outbox events and an
//! audit record, and stores the idempotent result. What people are told
//! about it (in-app, e-mail, push) the notifier derives from those events.

use domain::events::{BalanceUpdated, TransactionChange, TransactionMoved, TransactionUpdated};
use domain::limits::TierLimits;
use domain::risk::{Assessment, RiskDecision};
use domain::{
    Amount, Balances, DomainError, Email, EntryAccount, ErrorCode, EventBody, Fingerprint,
    IdempotencyKey, Posting, TransactionKind, TransactionStatus, WithdrawalOutcome,
    transaction::ensure_settleable,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait, TransactionTrait,
};
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::entities::{ledger_entries, transactions};
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::idempotency::{self, Claim, KeyPolicy};
use crate::store::records::{MoneyOutcome, TransactionRecord, WalletRecord};
use crate::store::risk::{self, NewAlert, RiskContext};
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreError, StoreResult, events, inconsistent, limits, now, users, wallets};

/// How many times a money transaction runs when the database keeps
/// breaking deadlocks with it.
const TRIES: u32 = 3;

/// Who receives a transfer.
#[derive(Debug, Clone)]
pub enum Recipient {
    /// A wallet by id.
    Wallet(Uuid),
    /// The recipient's wallet in the sender's currency, found by e-mail.
    Email(Email),
}

/// A money mutation as the API validated it. Amounts are exact decimals;
/// their scale is checked against the wallet's currency once it is loaded.
#[derive(Debug, Clone)]
pub enum MoneyCommand {
    /// Funding through the sandbox payment rail.
    Deposit {
        /// The caller's wallet.
        wallet_id: Uuid,
        /// Positive amount.
        amount: Decimal,
    },
    /// A pay-out, held until the rail settles it.
    Withdraw {
        /// The caller's wallet.
        wallet_id: Uuid,
        /// Positive amount.
        amount: Decimal,
        /// Where the rail pays to (account reference).
        destination: String,
    },
    /// Between two wallets of the same currency.
    Transfer {
        /// The caller's wallet.
        from_wallet_id: Uuid,
        /// The receiver.
        to: Recipient,
        /// Positive amount.
        amount: Decimal,
        /// Note for the receiver.
        memo: Option<String>,
    },
    /// Between two of the caller's wallets, at a quote's rate.
    Exchange {
        /// The caller's quote.
        quote_id: Uuid,
    },
    /// Pays a payment request made to the caller: a transfer from the
    /// caller's wallet in its currency to the requester's.
    PayRequest {
        /// The request.
        request_id: Uuid,
    },
    /// Staff: reverses a completed transfer or deposit.
    Reverse {
        /// The original movement.
        transaction_id: Uuid,
        /// Why, shown to the parties.
        reason: String,
        /// Whether a shortfall may be placed as the receiver's debt.
        allow_debt: bool,
    },
    /// Staff: refunds part of a card deposit through the provider.
    Refund {
        /// The deposit.
        transaction_id: Uuid,
        /// Positive amount, at most what is left to refund.
        amount: Decimal,
    },
}

/// What a money mutation is checked against besides the balances.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    /// Tier limits.
    pub limits: &'a TierLimits,
    /// Risk rules and the session asking.
    pub risk: RiskContext<'a>,
}

impl MoneyCommand {
    /// The operation name stored with the idempotency key.
    pub fn operation(&self) -> &'static str {
        match self {
            MoneyCommand::Deposit { .. } => "deposit",
            MoneyCommand::Withdraw { .. } => "withdraw",
            MoneyCommand::Transfer { .. } => "transfer",
            MoneyCommand::Exchange { .. } => "exchange",
            MoneyCommand::PayRequest { .. } => "pay_request",
            MoneyCommand::Reverse { .. } => "reverse",
            MoneyCommand::Refund { .. } => "refund",
        }
    }

    /// The fingerprint of the normalized input.
    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = |d: &Decimal| domain::money::to_canonical(*d);
        let input = match self {
            MoneyCommand::Deposit { wallet_id, amount } => {
                json!({ "walletId": wallet_id, "amount": canonical(amount) })
            }
            MoneyCommand::Withdraw {
                wallet_id,
                amount,
                destination,
            } => json!({
                "walletId": wallet_id,
                "amount": canonical(amount),
                "destination": destination,
            }),
            MoneyCommand::Transfer {
                from_wallet_id,
                to,
                amount,
                memo,
            } => json!({
                "fromWalletId": from_wallet_id,
                "toWalletId": match to { Recipient::Wallet(id) => Some(id), Recipient::Email(_) => None },
                "toEmail": match to { Recipient::Email(e) => Some(e.as_str()), Recipient::Wallet(_) => None },
                "amount": canonical(amount),
                "memo": memo,
            }),
            MoneyCommand::Exchange { quote_id } => json!({ "quoteId": quote_id }),
            MoneyCommand::PayRequest { request_id } => json!({ "requestId": request_id }),
            MoneyCommand::Reverse {
                transaction_id,
                reason,
                allow_debt,
            } => json!({ "id": transaction_id, "reason": reason, "allowDebt": allow_debt }),
            MoneyCommand::Refund {
                transaction_id,
                amount,
            } => json!({ "id": transaction_id, "amount": canonical(amount) }),
        };
        Fingerprint::of(self.operation(), &input)
    }
}

/// The outcome of a money mutation and whether it was replayed from its key.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The result (first result, when replayed).
    pub outcome: MoneyOutcome,
    /// True when the idempotency key replayed an earlier result.
    pub replayed: bool,
}

/// What claiming a money mutation's idempotency key found.
#[derive(Debug)]
pub enum Claimed {
    /// The key already completed this very request: its first result.
    Replayed(Box<Executed>),
    /// The key is ours; nothing has moved yet.
    Fresh(FreshClaim),
}

/// A claimed key whose work has not run: [`FreshClaim::run`] it, or
/// [`FreshClaim::release`] it when a check made after the claim refuses
/// (so that only fresh work meets that check, never a replay).
#[derive(Debug)]
pub struct FreshClaim {
    lease: idempotency::Lease,
}

/// Claims the idempotency key of a money mutation.
pub async fn claim(
    db: &DatabaseConnection,
    user_id: Uuid,
    key: &IdempotencyKey,
    command: &MoneyCommand,
    policy: KeyPolicy,
) -> StoreResult<Claimed> {
    let fingerprint = command.fingerprint();
    match idempotency::claim(db, user_id, key, command.operation(), &fingerprint, policy).await? {
        Claim::Replay(stored) => {
            let outcome: MoneyOutcome = serde_json::from_value(stored)
                .map_err(|e| inconsistent(format!("stored idempotent result: {e}")))?;
            Ok(Claimed::Replayed(Box::new(Executed {
                outcome,
                replayed: true,
            })))
        }
        Claim::Fresh(lease) => Ok(Claimed::Fresh(FreshClaim { lease })),
    }
}

impl FreshClaim {
    /// Moves the money in one transaction that also completes the key,
    /// within the user's tier limits and risk rules. A movement the risk
    /// rules block leaves an alert, written after the refusal rolled back.
    pub async fn run(
        self,
        db: &DatabaseConnection,
        user_id: Uuid,
        command: &MoneyCommand,
        checks: Checks<'_>,
    ) -> StoreResult<Executed> {
        let lease = &self.lease;
        let mut blocked: Option<NewAlert>;
        let mut tries = 1;
        let attempt = loop {
            blocked = None;
            let attempt = async {
                let txn = db.begin().await?;
                let mut writes = Writes::new(&txn);
                let outcome =
                    apply(&txn, &mut writes, user_id, command, checks, &mut blocked).await?;
                let stored = serde_json::to_value(&outcome)
                    .map_err(|e| inconsistent(format!("serializing result: {e}")))?;
                idempotency::stage_complete(&mut writes, lease, stored);
                writes.flush(&txn).await?;
                txn.commit().await?;
                Ok::<_, StoreError>(outcome)
            }
            .instrument(super::transaction_span(db, command.operation()))
            .await;
            match attempt {
                // The database chose this transaction to break a deadlock
                // and rolled it back whole: the key is still ours, so the
                // work runs again rather than failing a valid request.
                Err(err) if err.lost_a_deadlock() && tries < TRIES => {
                    tracing::warn!(error = %err, attempt = tries, "money transaction lost a deadlock; running it again");
                    tries += 1;
                }
                attempt => break attempt,
            }
        };
        match attempt {
            Ok(outcome) => Ok(Executed {
                outcome,
                replayed: false,
            }),
            Err(err) => {
                // Nothing moved: forget the claim so the client may retry the key.
                self.release(db).await;
                if let Some(alert) = blocked
                    && let Err(e) = risk::record_alert(db, &alert).await
                {
                    tracing::error!(error = %e, user.id = %user_id, "writing a risk alert failed");
                }
                Err(err)
            }
        }
    }

    /// Forgets the claim without doing the work; a failure leaves a lease
    /// that expires.
    pub async fn release(self, db: &DatabaseConnection) {
        if let Err(err) = idempotency::release(db, &self.lease).await {
            tracing::warn!(error = %err, "could not release idempotency key; its lease will expire");
        }
    }
}

/// Runs a money mutation under an idempotency key.
pub async fn execute(
    db: &DatabaseConnection,
    user_id: Uuid,
    key: &IdempotencyKey,
    command: &MoneyCommand,
    policy: KeyPolicy,
    checks: Checks<'_>,
) -> StoreResult<Executed> {
    match claim(db, user_id, key, command, policy).await? {
        Claimed::Replayed(executed) => Ok(*executed),
        Claimed::Fresh(fresh) => fresh.run(db, user_id, command, checks).await,
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

/// A transfer as resolved: wallet ids, the amount, the note.
struct TransferOrder {
    from: Uuid,
    to: Uuid,
    amount: Decimal,
    memo: Option<String>,
}

/// Moves an amount between two wallets of one currency, within the limits
/// and the risk rules: a held transfer only freezes the sender's funds.
async fn transfer(
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

/// Exchanges at a quote: two balanced postings through the house FX
/// accounts, one per currency, the residue of rounding to the target's
/// scale booked to its rounding account.
async fn exchange(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    quote_id: Uuid,
) -> StoreResult<MoneyOutcome> {
    let quote = super::exchange::take(txn, user_id, quote_id).await?;
    let [a, b] = lock_exact::<2>(txn, [quote.from_wallet_id, quote.to_wallet_id]).await?;
    let (from, to) = if a.id == quote.from_wallet_id {
        (a, b)
    } else {
        (b, a)
    };
    if from.user_id != user_id || to.user_id != user_id {
        return Err(inconsistent("a quote names another user's wallet"));
    }
    let f = quote.figures;
    let amount = Amount::new(f.amount, from.currency)?;
    let received = Amount::new(f.received, to.currency)?;
    let out = Posting::exchange_out(from.id, amount, f.fee);
    let inn = Posting::exchange_in(to.id, received, f.gross);
    let from_next = from
        .balances()
        .apply(from.id, from.currency, from.status, &out)?;
    let to_next = to.balances().apply(to.id, to.currency, to.status, &inn)?;
    let tx = insert_transaction(
        txn,
        NewTransaction {
            kind: TransactionKind::Exchange,
            status: TransactionStatus::Completed,
            amount,
            from_wallet_id: Some(from.id),
            to_wallet_id: Some(to.id),
            memo: None,
            destination: None,
            initiated_by: user_id,
            original_id: None,
            risk: None,
        },
    )
    .await?;
    write_posting(txn, tx.id, &out).await?;
    write_posting(txn, tx.id, &inn).await?;
    let from = wallets::store_balances(txn, &from, from_next).await?;
    let to_before = to.balance();
    let to = store_credited(txn, tx.id, &to, to_next).await?;
    events::balance_updated(txn, &from, -amount.value(), tx.id).await?;
    events::balance_updated(txn, &to, to.balance() - to_before, tx.id).await?;
    super::exchange::mark_used(txn, quote.id, tx.id).await?;
    audit::record(
        txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "wallet.exchange",
            subject_type: "transaction",
            subject_id: Some(tx.id),
            details: json!({
                "quoteId": quote.id,
                "amount": domain::money::to_canonical(f.amount),
                "fee": domain::money::to_canonical(f.fee),
                "from": from.currency.code(),
                "to": to.currency.code(),
                "rate": domain::money::to_canonical(f.rate),
                "received": domain::money::to_canonical(f.received),
                "residue": domain::money::to_canonical(f.residue),
            }),
        },
    )
    .await?;
    Ok(MoneyOutcome {
        transaction: tx,
        wallet: from,
        counterpart: Some(to),
    })
}

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
struct SingleWallet {
    kind: TransactionKind,
    status: TransactionStatus,
    posting: fn(Uuid, Amount) -> Posting,
    destination: Option<String>,
    action: &'static str,
}

async fn move_single(
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

/// The wallet in the sender's currency of the user with this e-mail.
async fn email_recipient(
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
    let status = outcome.final_status();
    let at = now();
    transactions::Entity::update_many()
        .col_expr(transactions::Column::Status, Expr::value(status.as_str()))
        .col_expr(transactions::Column::UpdatedAt, Expr::value(at))
        .filter(transactions::Column::Id.eq(tx.id))
        .exec(txn)
        .await?;
    let tx = TransactionRecord {
        status,
        updated_at: at,
        ..tx
    };
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
