//! Control over money after it moved: risk scores and the alert log, risk
//! holds, reversals with recorded debts, refunds of card deposits, payment
//! requests, and the device a session signed in from (a risk signal).

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, fk, index, money, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Adds the risk, reversal, refund and payment-request tables and columns.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261203_000001_money_control"
    }
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    Debt,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    OriginalId,
    RiskScore,
    RiskRules,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Device,
    NewDevice,
}

#[derive(DeriveIden)]
enum PaymentIntents {
    Table,
    Refunded,
}

#[derive(DeriveIden)]
enum RiskAlerts {
    Table,
    Id,
    UserId,
    TransactionId,
    Kind,
    Amount,
    Currency,
    Score,
    Decision,
    Hits,
    Resolution,
    ResolvedBy,
    Reason,
    ResolvedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    TransactionId,
    IntentId,
    ProviderId,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PaymentRequests {
    Table,
    Id,
    RequesterId,
    PayerId,
    Amount,
    Currency,
    Memo,
    Status,
    TransactionId,
    ExpiresAt,
    CreatedAt,
    UpdatedAt,
}

async fn add_column(
    manager: &SchemaManager<'_>,
    table: impl IntoIden,
    column: ColumnDef,
) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(table)
                .add_column(column.to_owned())
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        // SQLite adds one column per statement.
        add_column(
            manager,
            Wallets::Table,
            money(backend, Wallets::Debt).default("0").to_owned(),
        )
        .await?;
        add_column(
            manager,
            Transactions::Table,
            ColumnDef::new(Transactions::OriginalId)
                .uuid()
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Transactions::Table,
            ColumnDef::new(Transactions::RiskScore)
                .integer()
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Transactions::Table,
            ColumnDef::new(Transactions::RiskRules)
                .string_len(255)
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Sessions::Table,
            ColumnDef::new(Sessions::Device)
                .string_len(64)
                .null()
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            Sessions::Table,
            ColumnDef::new(Sessions::NewDevice)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        )
        .await?;
        add_column(
            manager,
            PaymentIntents::Table,
            money(backend, PaymentIntents::Refunded)
                .default("0")
                .to_owned(),
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(RiskAlerts::Table)
                    .col(uuid_pk(RiskAlerts::Id))
                    .col(uuid(RiskAlerts::UserId))
                    .col(ColumnDef::new(RiskAlerts::TransactionId).uuid().null())
                    .col(string(RiskAlerts::Kind, 16))
                    .col(money(backend, RiskAlerts::Amount))
                    .col(string(RiskAlerts::Currency, 8))
                    .col(ColumnDef::new(RiskAlerts::Score).integer().not_null())
                    .col(string(RiskAlerts::Decision, 8))
                    .col(ColumnDef::new(RiskAlerts::Hits).text().not_null())
                    .col(ColumnDef::new(RiskAlerts::Resolution).string_len(16).null())
                    .col(ColumnDef::new(RiskAlerts::ResolvedBy).uuid().null())
                    .col(ColumnDef::new(RiskAlerts::Reason).text().null())
                    .col(opt_timestamp(RiskAlerts::ResolvedAt))
                    .col(timestamp(RiskAlerts::CreatedAt))
                    .foreign_key(&mut fk(
                        RiskAlerts::Table,
                        RiskAlerts::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_risk_alerts_transaction",
            RiskAlerts::Table,
            [RiskAlerts::TransactionId],
            false,
        )
        .await?;
        index(
            manager,
            "idx_risk_alerts_created",
            RiskAlerts::Table,
            [RiskAlerts::CreatedAt],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(Refunds::Table)
                    .col(uuid_pk(Refunds::TransactionId))
                    .col(uuid(Refunds::IntentId))
                    .col(ColumnDef::new(Refunds::ProviderId).string_len(64).null())
                    .col(string(Refunds::Status, 16))
                    .col(timestamp(Refunds::CreatedAt))
                    .col(timestamp(Refunds::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_refunds_provider",
            Refunds::Table,
            [Refunds::ProviderId],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(PaymentRequests::Table)
                    .col(uuid_pk(PaymentRequests::Id))
                    .col(uuid(PaymentRequests::RequesterId))
                    .col(uuid(PaymentRequests::PayerId))
                    .col(money(backend, PaymentRequests::Amount))
                    .col(string(PaymentRequests::Currency, 8))
                    .col(ColumnDef::new(PaymentRequests::Memo).text().null())
                    .col(string(PaymentRequests::Status, 16))
                    .col(ColumnDef::new(PaymentRequests::TransactionId).uuid().null())
                    .col(timestamp(PaymentRequests::ExpiresAt))
                    .col(timestamp(PaymentRequests::CreatedAt))
                    .col(timestamp(PaymentRequests::UpdatedAt))
                    .foreign_key(&mut fk(
                        PaymentRequests::Table,
                        PaymentRequests::RequesterId,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut fk(
                        PaymentRequests::Table,
                        PaymentRequests::PayerId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_payment_requests_payer",
            PaymentRequests::Table,
            [PaymentRequests::PayerId, PaymentRequests::CreatedAt],
            false,
        )
        .await?;
        index(
            manager,
            "idx_payment_requests_requester",
            PaymentRequests::Table,
            [PaymentRequests::RequesterId, PaymentRequests::CreatedAt],
            false,
        )
        .await?;
        Ok(())
    }
}
