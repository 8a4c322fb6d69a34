//! `notification_preferences`: the (kind, channel) pairs a user switched on
//! or off; a pair without a row is on.

use sea_orm::entity::prelude::*;

/// One choice of one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_preferences")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// What notifications it is about (`TRANSFER_RECEIVED`, ...).
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// The channel (`EMAIL`, ...).
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    /// Whether they go out on it.
    pub enabled: bool,
    /// When it was last set.
    pub updated_at: DateTimeUtc,
}

no_relations!();
