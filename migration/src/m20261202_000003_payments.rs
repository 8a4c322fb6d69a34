//! The payment provider: one row per deposit's payment intent, one per
//! withdrawal's payout, and the payment log, one row per provider event.

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, fk, index, money, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Creates `payment_intents`, `payouts` and `payment_events`.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000003_payments"
    }
}

#[derive(DeriveIden)]
enum PaymentIntents {
    Table,
    Id,
    UserId,
    WalletId,
    ProviderId,
    Amount,
    Currency,
    Status,
    ClientSecret,
    TransactionId,
    LastEventAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Payouts {
    Table,
    TransactionId,
    ProviderId,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PaymentEvents {
    Table,
    Id,
    ProviderEventId,
    IntentId,
    EventType,
    EventCreatedAt,
    Outcome,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(PaymentIntents::Table)
                    .col(uuid_pk(PaymentIntents::Id))
                    .col(uuid(PaymentIntents::UserId))
                    .col(uuid(PaymentIntents::WalletId))
                    .col(string(PaymentIntents::ProviderId, 64))
                    .col(money(backend, PaymentIntents::Amount))
                    .col(string(PaymentIntents::Currency, 8))
                    .col(string(PaymentIntents::Status, 24))
                    .col(
                        ColumnDef::new(PaymentIntents::ClientSecret)
                            .string_len(255)
                            .null(),
                    )
                    .col(ColumnDef::new(PaymentIntents::TransactionId).uuid().null())
                    .col(opt_timestamp(PaymentIntents::LastEventAt))
                    .col(timestamp(PaymentIntents::CreatedAt))
                    .col(timestamp(PaymentIntents::UpdatedAt))
                    .foreign_key(&mut fk(
                        PaymentIntents::Table,
                        PaymentIntents::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_payment_intents_provider",
            PaymentIntents::Table,
            [PaymentIntents::ProviderId],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(Payouts::Table)
                    .col(uuid_pk(Payouts::TransactionId))
                    .col(string(Payouts::ProviderId, 64))
                    .col(string(Payouts::Status, 16))
                    .col(timestamp(Payouts::CreatedAt))
                    .col(timestamp(Payouts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_payouts_provider",
            Payouts::Table,
            [Payouts::ProviderId],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentEvents::Table)
                    .col(uuid_pk(PaymentEvents::Id))
                    .col(string(PaymentEvents::ProviderEventId, 64))
                    .col(ColumnDef::new(PaymentEvents::IntentId).uuid().null())
                    .col(string(PaymentEvents::EventType, 64))
                    .col(timestamp(PaymentEvents::EventCreatedAt))
                    .col(string(PaymentEvents::Outcome, 24))
                    .col(timestamp(PaymentEvents::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_payment_events_provider_event",
            PaymentEvents::Table,
            [PaymentEvents::ProviderEventId],
            true,
        )
        .await?;
        index(
            manager,
            "idx_payment_events_intent",
            PaymentEvents::Table,
            [PaymentEvents::IntentId],
            false,
        )
        .await?;
        Ok(())
    }
}
