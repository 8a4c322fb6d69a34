//! `kyc_webhooks`: every authentic webhook delivery from the KYC provider
//! and what became of it; the body's digest makes a repeated delivery a no-op.

use sea_orm::entity::prelude::*;

/// One delivery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kyc_webhooks")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// SHA-256 of the raw body (hex), unique.
    pub digest: String,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The provider's event type (`applicantReviewed`, ...).
    pub event_type: String,
    /// When the provider created the event.
    pub event_created_at: DateTimeUtc,
    /// `APPLIED`, `UNCHANGED`, `STALE` or `UNKNOWN_APPLICANT`.
    pub outcome: String,
    /// When it arrived.
    pub received_at: DateTimeUtc,
}

no_relations!();
