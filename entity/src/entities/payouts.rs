//! `payouts`: a pending withdrawal's payout at the payment provider.

use sea_orm::entity::prelude::*;

/// One payout.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payouts")]
pub struct Model {
    /// The withdrawal (primary key: one payout each).
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: Uuid,
    /// The provider's payout id (`po_...`), unique.
    pub provider_id: String,
    /// `SUBMITTED`, `PAID` or `FAILED`.
    pub status: String,
    /// When it was submitted.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
