//! Staff undo money: a reversal books a compensating posting for a
//! completed transfer or deposit (the original becomes `REVERSED`); a
//! refund pays part of a card deposit back to its source through the
//! payment provider. Both run as money commands (idempotent under the
//! staff member's key, audited) and tell every party.
//!
//! A reversal the receiver's balance cannot cover is refused, unless staff
//! place the shortfall as a debt: the house advances it from the debt
//! account, the wallet records what its owner owes, and money arriving
//! there repays it first. A refund holds its amount until the provider's
//! webhook says it went through (the hold leaves the books) or failed (the
//! hold is released), as a payout does.

use domain::events::TransactionChange;
use domain::payments::IntentStatus;
use domain::transaction::ensure_reversible;
use domain::{
    Amount, DomainError, ErrorCode, Posting, TransactionKind, TransactionStatus, WalletStatus,
};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{payment_intents, refunds, transactions};
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::deposits::EventOutcome;
use crate::store::payments::books::{
    NewTransaction, audit_money, insert_transaction, lock_exact, set_status, store_credited,
    transaction_updated, write_posting,
};
use crate::store::records::{MoneyOutcome, TransactionRecord};
use crate::store::{StoreResult, events, inconsistent, now, wallets};

async fn lock_original(txn: &impl ConnectionTrait, id: Uuid) -> StoreResult<TransactionRecord> {
    TransactionRecord::try_from(
        transactions::Entity::find_by_id(id)
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or_else(|| DomainError::not_found("transaction"))?,
    )
}

/// The card payment a deposit came from, if it came from one.
async fn intent_of(
    txn: &impl ConnectionTrait,
    deposit_id: Uuid,
) -> StoreResult<Option<payment_intents::Model>> {
    Ok(payment_intents::Entity::find()
        .filter(payment_intents::Column::TransactionId.eq(deposit_id))
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// Reverses a completed transfer or deposit. `wallet` in the result is the
/// wallet the money was taken back from; `counterpart` the sender's, for a
/// transfer.
pub(crate) async fn reverse(
    txn: &impl ConnectionTrait,
    actor: Uuid,
    original_id: Uuid,
    reason: &str,
    allow_debt: bool,
) -> StoreResult<MoneyOutcome> {
    let original = lock_original(txn, original_id).await?;
    ensure_reversible(original.kind, original.status)?;
    let payer_id = original
        .to_wallet_id
        .ok_or_else(|| inconsistent("a completed transfer or deposit without its receiver"))?;
    let payee_id = match original.kind {
        TransactionKind::Transfer => Some(
            original
                .from_wallet_id
                .ok_or_else(|| inconsistent("a transfer without its sender"))?,
        ),
        _ => None,
    };
    if original.kind == TransactionKind::Deposit
        && let Some(intent) = intent_of(txn, original.id).await?
        && !intent.refunded.0.is_zero()
    {
        return Err(DomainError::bad_input(
            "part of this deposit was refunded: refund the rest instead of reversing it",
        )
        .into());
    }
    let ids: Vec<Uuid> = [Some(payer_id), payee_id].into_iter().flatten().collect();
    let locked = wallets::lock_in_order(txn, &ids).await?;
    if locked.iter().any(|w| w.user_id == actor) {
        return Err(DomainError::forbidden("nobody may reverse their own money").into());
    }
    let payer = locked
        .iter()
        .find(|w| w.id == payer_id)
        .cloned()
        .ok_or_else(|| inconsistent("locked payer missing"))?;
    let payee = payee_id.and_then(|id| locked.iter().find(|w| w.id == id).cloned());
    let amount = Amount::new(original.amount, original.currency)?;
    let shortfall = (amount.value() - payer.available).max(Decimal::ZERO);
    if !shortfall.is_zero() && !allow_debt {
        return Err(DomainError::new(
            ErrorCode::InsufficientFunds,
            "the wallet's available balance does not cover the reversal; place the shortfall as a debt to go ahead",
        )
        .with_detail("shortfall", domain::money::to_canonical(shortfall))
        .into());
    }
    let posting = Posting::claw_back(payer.id, payee.as_ref().map(|w| w.id), amount, shortfall);
    // Staff act on frozen wallets too: a reversal is how money leaves one.
    let payer_next =
        payer
            .balances()
            .apply(payer.id, payer.currency, WalletStatus::Active, &posting)?;
    let reversal = insert_transaction(
        txn,
        NewTransaction {
            kind: TransactionKind::Reversal,
            status: TransactionStatus::Completed,
            amount,
            from_wallet_id: Some(payer.id),
            to_wallet_id: payee.as_ref().map(|w| w.id),
            memo: None,
            destination: None,
            initiated_by: actor,
            original_id: Some(original.id),
            risk: None,
        },
    )
    .await?;
    write_posting(txn, reversal.id, &posting).await?;
    let payer_after = wallets::store(txn, &payer, payer_next, payer.debt + shortfall).await?;
    let payee_after = match &payee {
        Some(w) => {
            let next = w
                .balances()
                .apply(w.id, w.currency, WalletStatus::Active, &posting)?;
            Some(store_credited(txn, reversal.id, w, next).await?)
        }
        None => None,
    };
    let original = set_status(txn, &original, TransactionStatus::Reversed).await?;
    // Every party's events, in user-id order.
    let mut parties: Vec<(&domain::WalletRecord, Decimal)> =
        vec![(&payer_after, payer_after.balance() - payer.balance())];
    if let (Some(after), Some(before)) = (&payee_after, &payee) {
        parties.push((after, after.balance() - before.balance()));
    }
    parties.sort_by_key(|(w, _)| w.user_id);
    let mut told = Vec::new();
    for (wallet, delta) in parties {
        events::balance_updated(txn, wallet, delta, reversal.id).await?;
        if !told.contains(&wallet.user_id) {
            told.push(wallet.user_id);
            transaction_updated(
                txn,
                wallet.user_id,
                &original,
                TransactionChange::Reversed,
                Some(&reversal),
                Some(reason),
            )
            .await?;
        }
    }
    audit::record(
        txn,
        AuditRecord {
            actor_id: Some(actor),
            action: "transaction.reversed",
            subject_type: "transaction",
            subject_id: Some(original.id),
            details: json!({
                "reversalId": reversal.id,
                "reason": reason,
                "amount": domain::money::to_canonical(amount.value()),
                "currency": amount.currency().code(),
                "debt": domain::money::to_canonical(shortfall),
            }),
        },
    )
    .await?;
    Ok(MoneyOutcome {
        transaction: reversal,
        wallet: payer_after,
        counterpart: payee_after,
    })
}

/// Starts refunding `amount` of a card deposit: the amount is held in the
/// wallet and a pending `REFUND` waits for the provider. `wallet` in the
/// result is the deposit's wallet.
pub(crate) async fn refund(
    txn: &impl ConnectionTrait,
    actor: Uuid,
    deposit_id: Uuid,
    amount: Decimal,
) -> StoreResult<MoneyOutcome> {
    let deposit = lock_original(txn, deposit_id).await?;
    if deposit.kind != TransactionKind::Deposit {
        return Err(DomainError::bad_input("only deposits can be refunded").into());
    }
    if deposit.status != TransactionStatus::Completed {
        return Err(DomainError::bad_input(format!(
            "only completed deposits can be refunded; this one is {}",
            deposit.status.as_str()
        ))
        .into());
    }
    let intent = intent_of(txn, deposit.id)
        .await?
        .filter(|i| i.status == IntentStatus::Succeeded.as_str())
        .ok_or_else(|| {
            DomainError::bad_input("only card deposits are refunded through the provider")
        })?;
    let wallet_id = deposit
        .to_wallet_id
        .ok_or_else(|| inconsistent("a deposit without its wallet"))?;
    let [wallet] = lock_exact::<1>(txn, [wallet_id]).await?;
    if wallet.user_id == actor {
        return Err(DomainError::forbidden("nobody may refund their own deposit").into());
    }
    let amount = Amount::new(amount, wallet.currency)?;
    let refundable = intent.amount.0 - intent.refunded.0;
    if amount.value() > refundable {
        return Err(DomainError::bad_input(format!(
            "at most {} {} of this deposit can still be refunded",
            domain::money::to_canonical(refundable),
            wallet.currency
        ))
        .into());
    }
    let hold = Posting::hold(wallet.id, amount);
    let next = wallet
        .balances()
        .apply(wallet.id, wallet.currency, WalletStatus::Active, &hold)?;
    let refund = insert_transaction(
        txn,
        NewTransaction {
            kind: TransactionKind::Refund,
            status: TransactionStatus::Pending,
            amount,
            from_wallet_id: Some(wallet.id),
            to_wallet_id: None,
            memo: None,
            destination: None,
            initiated_by: actor,
            original_id: Some(deposit.id),
            risk: None,
        },
    )
    .await?;
    write_posting(txn, refund.id, &hold).await?;
    let wallet = wallets::store_balances(txn, &wallet, next).await?;
    payment_intents::Entity::update_many()
        .col_expr(
            payment_intents::Column::Refunded,
            Expr::value(Money(intent.refunded.0 + amount.value())),
        )
        .col_expr(payment_intents::Column::UpdatedAt, Expr::value(now()))
        .filter(payment_intents::Column::Id.eq(intent.id))
        .exec(txn)
        .await?;
    let at = now();
    refunds::Entity::insert(refunds::ActiveModel {
        transaction_id: Set(refund.id),
        intent_id: Set(intent.id),
        provider_id: Set(None),
        status: Set(TransactionStatus::Pending.as_str().to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    events::balance_updated(txn, &wallet, Decimal::ZERO, refund.id).await?;
    audit_money(txn, actor, "deposit.refund_started", &refund).await?;
    Ok(MoneyOutcome {
        transaction: refund,
        wallet,
        counterpart: None,
    })
}

/// A refund waiting to be sent to the provider.
#[derive(Debug, Clone)]
pub struct DueRefund {
    /// The `REFUND` transaction (the provider's idempotency key).
    pub transaction_id: Uuid,
    /// The provider's payment intent id (`pi_...`).
    pub intent_provider_id: String,
    /// The amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: domain::Currency,
}

/// Pending refunds the provider has not acknowledged, oldest first.
pub async fn due(db: &DatabaseConnection, limit: u64) -> StoreResult<Vec<DueRefund>> {
    let rows = refunds::Entity::find()
        .filter(refunds::Column::ProviderId.is_null())
        .filter(refunds::Column::Status.eq(TransactionStatus::Pending.as_str()))
        .order_by_asc(refunds::Column::CreatedAt)
        .limit(limit)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let tx = transactions::Entity::find_by_id(row.transaction_id)
            .one(db)
            .await?
            .ok_or_else(|| inconsistent("refund without its transaction"))?;
        let intent = payment_intents::Entity::find_by_id(row.intent_id)
            .one(db)
            .await?
            .ok_or_else(|| inconsistent("refund without its intent"))?;
        out.push(DueRefund {
            transaction_id: row.transaction_id,
            intent_provider_id: intent.provider_id,
            amount: tx.amount.0,
            currency: domain::Currency::parse(&tx.currency)
                .map_err(|_| inconsistent("refund currency"))?,
        });
    }
    Ok(out)
}

/// Records the provider's id of a submitted refund.
pub async fn record_submitted(
    db: &DatabaseConnection,
    transaction_id: Uuid,
    provider_id: &str,
) -> StoreResult<()> {
    refunds::Entity::update_many()
        .col_expr(refunds::Column::ProviderId, Expr::value(provider_id))
        .col_expr(refunds::Column::UpdatedAt, Expr::value(now()))
        .filter(refunds::Column::TransactionId.eq(transaction_id))
        .filter(refunds::Column::ProviderId.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A refund event from the provider, authenticated and parsed.
#[derive(Debug, Clone)]
pub struct RefundEvent {
    /// The provider's event id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// When the provider created it.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The provider's refund id.
    pub refund_id: String,
    /// Our `REFUND` transaction, from the refund's metadata.
    pub transaction_id: Option<Uuid>,
    /// `Some(true)` succeeded, `Some(false)` failed or canceled, `None` still pending.
    pub succeeded: Option<bool>,
}

/// Applies a refund event once: a success takes the held amount out of the
/// wallet (to the payment rail), a failure releases it. Logged in the
/// payment log; an unknown refund is answered and audited.
pub async fn apply_event(db: &DatabaseConnection, event: RefundEvent) -> StoreResult<EventOutcome> {
    let txn = db.begin().await?;
    let Some(log_id) =
        super::deposits::log_event(&txn, &event.event_id, &event.event_type, event.created_at)
            .await?
    else {
        txn.commit().await?;
        return Ok(EventOutcome::Duplicate);
    };
    // By our id (the metadata), or by the provider's once recorded.
    let mut found = None;
    if let Some(id) = event.transaction_id {
        found = refunds::Entity::find_by_id(id).one(&txn).await?;
    }
    if found.is_none() {
        found = refunds::Entity::find()
            .filter(refunds::Column::ProviderId.eq(&event.refund_id))
            .one(&txn)
            .await?;
    }
    let outcome = match (found, event.succeeded) {
        (None, _) => {
            audit::record(
                &txn,
                AuditRecord {
                    actor_id: None,
                    action: "refund.webhook_unknown_refund",
                    subject_type: "refund",
                    subject_id: None,
                    details: json!({ "providerId": event.refund_id, "type": event.event_type }),
                },
            )
            .await?;
            EventOutcome::UnknownRefund
        }
        (Some(_), None) => EventOutcome::Unchanged,
        (Some(row), Some(succeeded)) => {
            finish(&txn, &row, Some(&event.refund_id), succeeded).await?
        }
    };
    super::deposits::set_outcome(&txn, log_id, event.transaction_id, outcome).await?;
    txn.commit().await?;
    Ok(outcome)
}

/// Fails a pending refund the provider refused outright (a 4xx answer to
/// its submission): the hold returns and the amount can be refunded again.
pub async fn refused(db: &DatabaseConnection, transaction_id: Uuid) -> StoreResult<()> {
    let txn = db.begin().await?;
    let row = refunds::Entity::find_by_id(transaction_id)
        .one(&txn)
        .await?
        .ok_or_else(|| inconsistent("a refused refund without its row"))?;
    finish(&txn, &row, None, false).await?;
    txn.commit().await?;
    Ok(())
}

async fn finish(
    txn: &impl ConnectionTrait,
    row: &refunds::Model,
    provider_id: Option<&str>,
    succeeded: bool,
) -> StoreResult<EventOutcome> {
    let first_look = transactions::Entity::find_by_id(row.transaction_id)
        .one(txn)
        .await?
        .ok_or_else(|| inconsistent("refund without its transaction"))?;
    let wallet_id = first_look
        .from_wallet_id
        .ok_or_else(|| inconsistent("refund without its wallet"))?;
    let actor = first_look.initiated_by;
    let [wallet] = lock_exact::<1>(txn, [wallet_id]).await?;
    let refund = lock_original(txn, row.transaction_id).await?;
    if refund.status != TransactionStatus::Pending {
        return Ok(EventOutcome::Unchanged);
    }
    let amount = Amount::new(refund.amount, refund.currency)?;
    let posting = if succeeded {
        Posting::settle_hold(wallet.id, amount)
    } else {
        Posting::release_hold(wallet.id, amount)
    };
    let next =
        wallet
            .balances()
            .apply(wallet.id, wallet.currency, WalletStatus::Active, &posting)?;
    write_posting(txn, refund.id, &posting).await?;
    let after = if succeeded {
        wallets::store_balances(txn, &wallet, next).await?
    } else {
        store_credited(txn, refund.id, &wallet, next).await?
    };
    let status = if succeeded {
        TransactionStatus::Completed
    } else {
        TransactionStatus::Failed
    };
    let refund = set_status(txn, &refund, status).await?;
    let mut update = refunds::Entity::update_many()
        .col_expr(refunds::Column::Status, Expr::value(status.as_str()))
        .col_expr(refunds::Column::UpdatedAt, Expr::value(now()));
    if let Some(provider_id) = provider_id {
        update = update.col_expr(refunds::Column::ProviderId, Expr::value(provider_id));
    }
    update
        .filter(refunds::Column::TransactionId.eq(refund.id))
        .exec(txn)
        .await?;
    if !succeeded {
        // The amount can be refunded again.
        let intent = payment_intents::Entity::find_by_id(row.intent_id)
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or_else(|| inconsistent("refund without its intent"))?;
        payment_intents::Entity::update_many()
            .col_expr(
                payment_intents::Column::Refunded,
                Expr::value(Money(intent.refunded.0 - amount.value())),
            )
            .filter(payment_intents::Column::Id.eq(intent.id))
            .exec(txn)
            .await?;
    }
    events::balance_updated(txn, &after, after.balance() - wallet.balance(), refund.id).await?;
    if succeeded {
        let deposit = TransactionRecord::try_from(
            transactions::Entity::find_by_id(
                refund
                    .original_id
                    .ok_or_else(|| inconsistent("refund without its deposit"))?,
            )
            .one(txn)
            .await?
            .ok_or_else(|| inconsistent("refund's deposit vanished"))?,
        )?;
        transaction_updated(
            txn,
            wallet.user_id,
            &deposit,
            TransactionChange::Refunded,
            Some(&refund),
            None,
        )
        .await?;
    }
    audit_money(
        txn,
        actor,
        if succeeded {
            "deposit.refunded"
        } else {
            "deposit.refund_failed"
        },
        &refund,
    )
    .await?;
    Ok(EventOutcome::Applied)
}
