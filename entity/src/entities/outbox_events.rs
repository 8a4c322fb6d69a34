//! `outbox_events`: events written with the change they describe.

use sea_orm::entity::prelude::*;

/// One event for one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_events")]
pub struct Model {
    /// Event id; consumers dedupe by it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user it is for.
    pub user_id: Uuid,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// Channel name, e.g. `balance.updated`.
    pub topic: String,
    /// The event body.
    pub payload: Json,
    /// Commit time.
    pub created_at: DateTimeUtc,
    /// When the relay published it.
    pub published_at: Option<DateTimeUtc>,
    /// The W3C `traceparent` of the transaction that wrote it, when traced.
    pub trace_parent: Option<String>,
}

no_relations!();
