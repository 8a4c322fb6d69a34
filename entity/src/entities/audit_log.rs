//! `audit_log`: who did what.

use sea_orm::entity::prelude::*;

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The user who acted (none for the system).
    pub actor_id: Option<Uuid>,
    /// Dotted action name, e.g. `wallet.transfer`.
    pub action: String,
    /// Kind of object acted on.
    pub subject_type: String,
    /// The object acted on.
    pub subject_id: Option<Uuid>,
    /// Non-sensitive details.
    pub details: Json,
    /// When.
    pub created_at: DateTimeUtc,
}

no_relations!();
