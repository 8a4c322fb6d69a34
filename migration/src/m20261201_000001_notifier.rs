//! The notifier: one delivery record per (event, channel, target), written
//! before anything is sent; the event each in-app notification came from;
//! users' notification preferences and push devices; and how far each
//! user's outbox events were pruned (for `REPLAY_UNAVAILABLE`).

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, big_int, fk, index, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Creates `deliveries` and links notifications to their source event.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000001_notifier"
    }
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    EventId,
    UserId,
    Channel,
    Target,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastError,
    SentAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    SourceEventId,
}

#[derive(DeriveIden)]
enum NotificationPreferences {
    Table,
    UserId,
    Kind,
    Channel,
    Enabled,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PushDevices {
    Table,
    Id,
    UserId,
    Token,
    Platform,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OutboxPruned {
    Table,
    UserId,
    ThroughSequence,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .col(uuid_pk(Deliveries::Id))
                    .col(uuid(Deliveries::EventId))
                    .col(uuid(Deliveries::UserId))
                    .col(string(Deliveries::Channel, 16))
                    .col(string(Deliveries::Target, 512))
                    .col(string(Deliveries::Status, 16))
                    .col(big_int(Deliveries::Attempts))
                    .col(timestamp(Deliveries::NextAttemptAt))
                    .col(opt_timestamp(Deliveries::LeaseUntil))
                    .col(ColumnDef::new(Deliveries::LastError).text().null())
                    .col(opt_timestamp(Deliveries::SentAt))
                    .col(timestamp(Deliveries::CreatedAt))
                    .col(timestamp(Deliveries::UpdatedAt))
                    .foreign_key(&mut fk(
                        Deliveries::Table,
                        Deliveries::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_deliveries_event_channel_target",
            Deliveries::Table,
            [Deliveries::EventId, Deliveries::Channel, Deliveries::Target],
            true,
        )
        .await?;
        // The workers' claim: due work by status and time.
        index(
            manager,
            "idx_deliveries_due",
            Deliveries::Table,
            [Deliveries::Status, Deliveries::NextAttemptAt],
            false,
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .add_column(ColumnDef::new(Notifications::SourceEventId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(NotificationPreferences::Table)
                    .col(uuid(NotificationPreferences::UserId))
                    .col(string(NotificationPreferences::Kind, 32))
                    .col(string(NotificationPreferences::Channel, 16))
                    .col(
                        ColumnDef::new(NotificationPreferences::Enabled)
                            .boolean()
                            .not_null(),
                    )
                    .col(timestamp(NotificationPreferences::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(NotificationPreferences::UserId)
                            .col(NotificationPreferences::Kind)
                            .col(NotificationPreferences::Channel),
                    )
                    .foreign_key(&mut fk(
                        NotificationPreferences::Table,
                        NotificationPreferences::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PushDevices::Table)
                    .col(uuid_pk(PushDevices::Id))
                    .col(uuid(PushDevices::UserId))
                    .col(string(PushDevices::Token, 4096))
                    .col(string(PushDevices::Platform, 16))
                    .col(timestamp(PushDevices::CreatedAt))
                    .foreign_key(&mut fk(
                        PushDevices::Table,
                        PushDevices::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // A device token belongs to one installation, so to one user.
        index(
            manager,
            "uq_push_devices_token",
            PushDevices::Table,
            [PushDevices::Token],
            true,
        )
        .await?;
        index(
            manager,
            "idx_push_devices_user",
            PushDevices::Table,
            [PushDevices::UserId],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(OutboxPruned::Table)
                    .col(uuid_pk(OutboxPruned::UserId))
                    .col(big_int(OutboxPruned::ThroughSequence))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OutboxPruned::Table.into_iden(),
            PushDevices::Table.into_iden(),
            NotificationPreferences::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .drop_column(Notifications::SourceEventId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(Deliveries::Table).to_owned())
            .await
    }
}
