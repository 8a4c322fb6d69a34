//! `user_roles`: roles granted to users.

use sea_orm::entity::prelude::*;

/// One role of one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_roles")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The role name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub role: String,
    /// When it was granted.
    pub granted_at: DateTimeUtc,
}

no_relations!();
