//! The relay finds the oldest waiting events through an index of only the
//! unpublished ones, by age, instead of grouping every unpublished event by
//! user each round (80 ms a round under a backlog of a few thousand).

use sea_orm_migration::prelude::*;

/// Adds `idx_outbox_events_waiting`: unpublished events by age (a partial
/// index on both backends).
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_outbox_waiting"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX idx_outbox_events_waiting ON outbox_events (created_at) \
                 WHERE published_at IS NULL",
            )
            .await?;
        Ok(())
    }
}
