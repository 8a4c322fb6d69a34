//! `outbox_pruned`: per user, the highest sequence the retention pruned, so
//! a replay from before it is refused instead of skipping events.

use sea_orm::entity::prelude::*;

/// How far one user's events were pruned.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_pruned")]
pub struct Model {
    /// The user.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Events up to this sequence may be gone.
    pub through_sequence: i64,
}

no_relations!();
