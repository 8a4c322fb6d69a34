//! `push_devices`: the app installations a user receives push messages on.

use sea_orm::entity::prelude::*;

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "push_devices")]
pub struct Model {
    /// Primary key (the delivery target).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The FCM registration token of the installation, unique.
    pub token: String,
    /// `IOS`, `ANDROID` or `WEB`.
    pub platform: String,
    /// When it was registered.
    pub created_at: DateTimeUtc,
}

no_relations!();
