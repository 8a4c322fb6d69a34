//! Deliveries lose the index of every row by status and due time,
//! `idx_deliveries_due`: the claim reads the waiting and the leased ones
//! through their own partial indexes (`m20261207_000001_queue_indexes`),
//! and the index only cost an entry with every delivery planned and every
//! change of its status, three in an in-app notice's life. What else read
//! by status now has partial indexes: dead letters, newest first, through
//! `idx_deliveries_dead`, written only when a delivery dies; the backlog's
//! count through the two of the claim.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000002_deliveries_dead_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_deliveries_dead ON deliveries (created_at, id) \
             WHERE status = 'DEAD'",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_deliveries_due")
            .await?;
        Ok(())
    }
}
