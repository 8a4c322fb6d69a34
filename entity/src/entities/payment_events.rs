//! `payment_events`: the payment log, one row per provider event received
//! and what became of it.

use sea_orm::entity::prelude::*;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_events")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The provider's event id (`evt_...`), unique: a redelivery is a no-op.
    pub provider_event_id: String,
    /// Our intent, when known.
    pub intent_id: Option<Uuid>,
    /// The event type (`payment_intent.succeeded`, ...).
    pub event_type: String,
    /// When the provider created it.
    pub event_created_at: DateTimeUtc,
    /// `APPLIED`, `UNCHANGED`, `UNKNOWN_INTENT` or `AMOUNT_MISMATCH`.
    pub outcome: String,
    /// When it arrived.
    pub received_at: DateTimeUtc,
}

no_relations!();
