//! `notifications`: in-app notifications.

use sea_orm::entity::prelude::*;

/// One notification for one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Recipient.
    pub user_id: Uuid,
    /// Sequence of its `notification.created` event.
    pub sequence: i64,
    /// What it is about, e.g. `transfer.received`.
    pub kind: String,
    /// Short title.
    pub title: String,
    /// Text shown to the user.
    pub body: String,
    /// Ids the app can link to.
    pub data: Json,
    /// When the user read it.
    pub read_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// The event it announces (none for notifications made before the
    /// notifier delivered them).
    pub source_event_id: Option<Uuid>,
}

no_relations!();
