//! The outbox keeps the trace context of the transaction that wrote each
//! event, and on PostgreSQL it wakes the relays itself: one `NOTIFY` per
//! inserting statement, from a trigger, instead of a `pg_notify` round trip
//! after every appended event.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

/// Adds `outbox_events.trace_parent` and the PostgreSQL wake-up trigger.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000002_outbox_trace"
    }
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    TraceParent,
}

/// The trigger notifies the channel the relays `LISTEN` on
/// (`entity::store::events::OUTBOX_CHANNEL`); like any `NOTIFY` in a
/// transaction it is delivered at commit, and not at all on rollback.
const WAKE_RELAYS: &str = r"
CREATE OR REPLACE FUNCTION wallet_bff_outbox_wake() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('wallet_bff_outbox', '');
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER outbox_events_wake_relays
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_bff_outbox_wake();
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxEvents::Table)
                    .add_column(ColumnDef::new(OutboxEvents::TraceParent).string().null())
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(WAKE_RELAYS)
                .await?;
        }
        Ok(())
    }
}
