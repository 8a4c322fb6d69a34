//! `deliveries`: one record per (event, channel, target), written before the
//! notifier sends anything.

use sea_orm::entity::prelude::*;

/// One message of one event to one target on one channel.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    /// Primary key; also the e-mail `Message-ID` and the push message's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The outbox event it delivers.
    pub event_id: Uuid,
    /// The user it is for.
    pub user_id: Uuid,
    /// `IN_APP`, `EMAIL` or `PUSH`.
    pub channel: String,
    /// The address, the push device's id, or empty for in-app.
    pub target: String,
    /// `PENDING`, `SENDING`, `SENT`, `FAILED` (will retry) or `DEAD`.
    pub status: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// When a worker may take it (next).
    pub next_attempt_at: DateTimeUtc,
    /// While `SENDING`: until when the worker that took it owns it.
    pub lease_until: Option<DateTimeUtc>,
    /// Why the last attempt failed (no personal data).
    pub last_error: Option<String>,
    /// When the channel accepted it.
    pub sent_at: Option<DateTimeUtc>,
    /// When it was planned.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
