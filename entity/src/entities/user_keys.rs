//! `user_keys`: each user's own data key, half of what seals their personal
//! data; destroyed when the account is erased.

use sea_orm::entity::prelude::*;

/// A user's data key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_keys")]
pub struct Model {
    /// The user (primary key).
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// The key, base64 of 32 random bytes; `None` once destroyed.
    pub secret: Option<String>,
    /// When it was made.
    pub created_at: DateTimeUtc,
    /// When it was destroyed (the account erased).
    pub shredded_at: Option<DateTimeUtc>,
}

no_relations!();
