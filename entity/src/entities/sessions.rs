//! `sessions`: login sessions, the families of refresh tokens.

use sea_orm::entity::prelude::*;

/// One login session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// The family id carried by its refresh tokens and access tokens (`sid`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Login time.
    pub created_at: DateTimeUtc,
    /// Logout or reuse-detection time.
    pub revoked_at: Option<DateTimeUtc>,
    /// A hash of the signing-in client's user agent and network.
    pub device: Option<String>,
    /// Whether the user had signed in before, never from this device.
    pub new_device: bool,
}

no_relations!();
