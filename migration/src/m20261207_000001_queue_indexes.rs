//! The relay's and the notifier's queues read through indexes of only what
//! waits, in the order they take it, so a round costs the same however many
//! rows wait or were handled before.
//!
//! - `idx_outbox_events_user_waiting`: a user's unpublished events by
//!   sequence. It replaces `idx_outbox_events_unpublished` (published_at,
//!   user_id, sequence), which held every event, published or not, and
//!   gained an entry each time one was published; the planner, estimating
//!   from statistics taken while events waited, preferred the user's whole
//!   history by sequence and dropped the published ones one by one (1,300
//!   rows a user in a bench round).
//! - `idx_deliveries_waiting`: pending and failed deliveries by when they
//!   are due, and `idx_deliveries_leased`: deliveries being sent by when
//!   their lease ends. The claim used to gather every due delivery by
//!   status and sort them all for the oldest 64 (11,000 in a bench round).
//!
//! The statuses are written out: a partial index serves only queries whose
//! conditions name its predicate's values.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000001_queue_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_outbox_events_user_waiting ON outbox_events (user_id, sequence) \
             WHERE published_at IS NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_outbox_events_unpublished")
            .await?;
        db.execute_unprepared(
            "CREATE INDEX idx_deliveries_waiting ON deliveries (next_attempt_at) \
             WHERE status IN ('PENDING', 'FAILED')",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX idx_deliveries_leased ON deliveries (lease_until) \
             WHERE status = 'SENDING'",
        )
        .await?;
        Ok(())
    }
}
