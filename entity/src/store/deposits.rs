//! Card deposits through the payment provider: the intent recorded under
//! the request's idempotency key, and the provider's lifecycle events applied
//! once each, in order, crediting the wallet exactly once on success.

use chrono::{DateTime, Utc};
use domain::payments::{IntentStatus, transition};
use domain::{Currency, DomainError, IdempotencyKey};
use rust_decimal::Decimal;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{payment_events, payment_intents};
use crate::money::Money;
use crate::store::audit::{self, AuditRecord};
use crate::store::idempotency::{self, Lease};
use crate::store::{StoreError, StoreResult, inconsistent, now};

/// A deposit intent as the API shows it (and its key replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntentRecord {
    /// Our id.
    pub id: Uuid,
    /// The wallet credited on success.
    pub wallet_id: Uuid,
    /// The provider's id.
    pub provider_id: String,
    /// The amount.
    pub amount: Decimal,
    /// Its currency.
    pub currency: Currency,
    /// Where it is.
    pub status: IntentStatus,
    /// What the app confirms it with.
    pub client_secret: Option<String>,
    /// Where the app sends the user to confirm it, when the method needs it.
    pub redirect_url: Option<String>,
}

/// The fingerprint of a `startDeposit` request.
pub fn fingerprint(wallet_id: Uuid, amount: Decimal) -> domain::Fingerprint {
    domain::Fingerprint::of(
        "start_deposit",
        &json!({ "walletId": wallet_id, "amount": domain::money::to_canonical(amount) }),
    )
}

/// What claiming a `startDeposit` key found.
#[derive(Debug)]
pub enum Started {
    /// The first result of this very request.
    Replayed(Box<IntentRecord>),
    /// Ours to do.
    Fresh(Lease),
}

/// Claims the request's idempotency key.
pub async fn claim(
    db: &DatabaseConnection,
    user_id: Uuid,
    key: &IdempotencyKey,
    wallet_id: Uuid,
    amount: Decimal,
    policy: idempotency::KeyPolicy,
) -> StoreResult<Started> {
    match idempotency::claim(
        db,
        user_id,
        key,
        "start_deposit",
        &fingerprint(wallet_id, amount),
        policy,
    )
    .await?
    {
        idempotency::Claim::Replay(stored) => Ok(Started::Replayed(Box::new(
            serde_json::from_value(stored)
                .map_err(|e| inconsistent(format!("stored intent: {e}")))?,
        ))),
        idempotency::Claim::Fresh(lease) => Ok(Started::Fresh(lease)),
    }
}

/// Forgets a claim whose work failed before anything was written.
pub async fn release(db: &DatabaseConnection, lease: &Lease) {
    if let Err(err) = idempotency::release(db, lease).await {
        tracing::warn!(error = %err, "could not release idempotency key; its lease will expire");
    }
}

/// Records the intent the provider created, completing the key.
pub async fn record(
    db: &DatabaseConnection,
    lease: &Lease,
    user_id: Uuid,
    intent: &IntentRecord,
) -> StoreResult<()> {
    let txn = db.begin().await?;
    let at = now();
    payment_intents::Entity::insert(payment_intents::ActiveModel {
        id: Set(intent.id),
        user_id: Set(user_id),
        wallet_id: Set(intent.wallet_id),
        provider_id: Set(intent.provider_id.clone()),
        amount: Set(Money(intent.amount)),
        refunded: Set(Money(Decimal::ZERO)),
        currency: Set(intent.currency.code().to_owned()),
        status: Set(intent.status.as_str().to_owned()),
        client_secret: Set(intent.client_secret.clone()),
        transaction_id: Set(None),
        last_event_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "deposit.started",
            subject_type: "payment_intent",
            subject_id: Some(intent.id),
            details: json!({
                "providerId": intent.provider_id,
                "amount": domain::money::to_canonical(intent.amount),
                "currency": intent.currency.code(),
            }),
        },
    )
    .await?;
    let stored = serde_json::to_value(intent).map_err(|e| inconsistent(format!("intent: {e}")))?;
    idempotency::complete(&txn, lease, stored).await?;
    txn.commit().await?;
    Ok(())
}

/// A lifecycle event from the provider, authenticated and parsed.
#[derive(Debug, Clone)]
pub struct PaymentEvent {
    /// The provider's event id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// When the provider created it.
    pub created_at: DateTime<Utc>,
    /// The provider's intent id.
    pub intent_id: String,
    /// The status it reports.
    pub status: IntentStatus,
    /// The intent's amount in minor units, as the provider has it.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: Currency,
}

/// What became of a payment event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// It moved the intent (and, for success, credited the wallet).
    Applied,
    /// A repeat, a step back, or anything after a final status.
    Unchanged,
    /// Delivered before.
    Duplicate,
    /// No such intent here: recorded and audited.
    UnknownIntent,
    /// No such payout here: recorded and audited.
    UnknownPayout,
    /// No such refund here: recorded and audited.
    UnknownRefund,
    /// The amount or currency differs from the intent: nothing credited, audited.
    AmountMismatch,
}

impl EventOutcome {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "APPLIED",
            EventOutcome::Unchanged => "UNCHANGED",
            EventOutcome::Duplicate => "DUPLICATE",
            EventOutcome::UnknownIntent => "UNKNOWN_INTENT",
            EventOutcome::UnknownPayout => "UNKNOWN_PAYOUT",
            EventOutcome::UnknownRefund => "UNKNOWN_REFUND",
            EventOutcome::AmountMismatch => "AMOUNT_MISMATCH",
        }
    }
}

/// Writes an event's row in the payment log, first thing in the
/// transaction that applies it: `None` when it was logged before (a
/// concurrent redelivery waits on the row and finds it). The outcome is
/// [`set_outcome`] once known.
pub(crate) async fn log_event(
    txn: &impl sea_orm::ConnectionTrait,
    event_id: &str,
    event_type: &str,
    created_at: DateTime<Utc>,
) -> StoreResult<Option<Uuid>> {
    let id = Uuid::now_v7();
    let inserted = payment_events::Entity::insert(payment_events::ActiveModel {
        id: Set(id),
        provider_event_id: Set(event_id.to_owned()),
        intent_id: Set(None),
        event_type: Set(event_type.to_owned()),
        event_created_at: Set(created_at),
        outcome: Set(EventOutcome::Unchanged.as_str().to_owned()),
        received_at: Set(now()),
    })
    .on_conflict(
        OnConflict::column(payment_events::Column::ProviderEventId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok((inserted == 1).then_some(id))
}

/// Records what became of a logged event, and what it was about.
pub(crate) async fn set_outcome(
    txn: &impl sea_orm::ConnectionTrait,
    log_id: Uuid,
    subject: Option<Uuid>,
    outcome: EventOutcome,
) -> StoreResult<()> {
    payment_events::Entity::update(payment_events::ActiveModel {
        id: Set(log_id),
        intent_id: Set(subject),
        outcome: Set(outcome.as_str().to_owned()),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(())
}

/// Applies a payment event once, in one transaction: the payment log row,
/// the intent's new status and, on success, the credit.
pub async fn apply_event(
    db: &DatabaseConnection,
    event: PaymentEvent,
) -> StoreResult<EventOutcome> {
    let txn = db.begin().await?;
    let Some(log_id) =
        log_event(&txn, &event.event_id, &event.event_type, event.created_at).await?
    else {
        txn.commit().await?;
        return Ok(EventOutcome::Duplicate);
    };
    let intent = payment_intents::Entity::find()
        .filter(payment_intents::Column::ProviderId.eq(&event.intent_id))
        .lock_exclusive()
        .one(&txn)
        .await?;
    let (outcome, intent_id) = match intent {
        None => {
            audit::record(
                &txn,
                AuditRecord {
                    actor_id: None,
                    action: "deposit.webhook_unknown_intent",
                    subject_type: "payment_intent",
                    subject_id: None,
                    details: json!({ "providerId": event.intent_id, "type": event.event_type }),
                },
            )
            .await?;
            (EventOutcome::UnknownIntent, None)
        }
        Some(intent) => (apply_to(&txn, &intent, &event).await?, Some(intent.id)),
    };
    set_outcome(&txn, log_id, intent_id, outcome).await?;
    txn.commit().await?;
    Ok(outcome)
}

async fn apply_to(
    txn: &sea_orm::DatabaseTransaction,
    intent: &payment_intents::Model,
    event: &PaymentEvent,
) -> StoreResult<EventOutcome> {
    let current = IntentStatus::parse(&intent.status)
        .map_err(|_| inconsistent(format!("intent {} status", intent.id)))?;
    let currency = Currency::parse(&intent.currency)
        .map_err(|_| inconsistent(format!("intent {} currency", intent.id)))?;
    let expected = domain::payments::to_minor_units(intent.amount.0, currency)
        .map_err(|_| inconsistent("stored intent amount"))?;
    if event.amount_minor != expected || event.currency != currency {
        audit::record(
            txn,
            AuditRecord {
                actor_id: None,
                action: "deposit.webhook_amount_mismatch",
                subject_type: "payment_intent",
                subject_id: Some(intent.id),
                details: json!({ "expected": expected, "reported": event.amount_minor }),
            },
        )
        .await?;
        return Ok(EventOutcome::AmountMismatch);
    }
    let Some(next) = transition(current, event.status) else {
        return Ok(EventOutcome::Unchanged);
    };
    let transaction_id = if next == IntentStatus::Succeeded {
        let tx = super::payments::rail::credit_card_deposit(
            txn,
            intent.user_id,
            intent.wallet_id,
            intent.amount.0,
        )
        .await?;
        Some(tx.id)
    } else {
        None
    };
    payment_intents::Entity::update(payment_intents::ActiveModel {
        id: Set(intent.id),
        status: Set(next.as_str().to_owned()),
        transaction_id: Set(transaction_id.or(intent.transaction_id)),
        last_event_at: Set(Some(event.created_at)),
        updated_at: Set(now()),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    audit::record(
        txn,
        AuditRecord {
            actor_id: None,
            action: "deposit.status",
            subject_type: "payment_intent",
            subject_id: Some(intent.id),
            details: json!({ "from": current.as_str(), "to": next.as_str(), "event": event.event_id }),
        },
    )
    .await?;
    Ok(EventOutcome::Applied)
}

/// The caller's intent by our id.
pub async fn get(db: &DatabaseConnection, user_id: Uuid, id: Uuid) -> StoreResult<IntentRecord> {
    let row = payment_intents::Entity::find_by_id(id)
        .one(db)
        .await?
        .filter(|r| r.user_id == user_id)
        .ok_or_else(|| StoreError::from(DomainError::not_found("deposit")))?;
    Ok(IntentRecord {
        id: row.id,
        wallet_id: row.wallet_id,
        provider_id: row.provider_id,
        amount: row.amount.0,
        currency: Currency::parse(&row.currency).map_err(|_| inconsistent("intent currency"))?,
        status: IntentStatus::parse(&row.status).map_err(|_| inconsistent("intent status"))?,
        client_secret: row.client_secret,
        redirect_url: None,
    })
}
