//! `idempotency_keys`: claimed keys and the results they replay.

use sea_orm::entity::prelude::*;

/// One key of one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user the key belongs to.
    pub user_id: Uuid,
    /// The client's key.
    pub key: String,
    /// The mutation it was used with.
    pub operation: String,
    /// SHA-256 of operation and canonical input.
    pub fingerprint: String,
    /// `IN_PROGRESS` or `COMPLETED`.
    pub status: String,
    /// Lease of the request working on it; also its claim token.
    pub locked_until: DateTimeUtc,
    /// The result to replay, once completed.
    pub response: Option<Json>,
    /// First use.
    pub created_at: DateTimeUtc,
    /// When it may be purged.
    pub expires_at: DateTimeUtc,
}

no_relations!();
