//! `refunds`: a refund of part of a card deposit at the payment provider.

use sea_orm::entity::prelude::*;

/// One refund.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refunds")]
pub struct Model {
    /// The `REFUND` transaction (primary key: one provider refund each).
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: Uuid,
    /// The deposit's payment intent.
    pub intent_id: Uuid,
    /// The provider's refund id (`re_...`) once it answered.
    pub provider_id: Option<String>,
    /// `PENDING`, `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// When it was asked for.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
