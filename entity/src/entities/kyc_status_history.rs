//! `kyc_status_history`: every change of a user's KYC status, by the
//! provider, a compliance officer or the user's own submission.

use sea_orm::entity::prelude::*;

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kyc_status_history")]
pub struct Model {
    /// Primary key (time-ordered).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// Status before.
    pub from_status: String,
    /// Status after.
    pub to_status: String,
    /// KYC level after.
    pub level: i32,
    /// Why (rejections).
    pub reason: Option<String>,
    /// `USER`, `PROVIDER` or `COMPLIANCE`.
    pub source: String,
    /// The compliance officer, for manual reviews.
    pub actor_id: Option<Uuid>,
    /// When.
    pub occurred_at: DateTimeUtc,
}

no_relations!();
