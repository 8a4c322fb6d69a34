//! Exchange quotes: what a user was offered for an exchange between two of
//! their wallets, until when, and the transaction that used it.

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, fk, index, money, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Creates `exchange_quotes`.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000002_exchange"
    }
}

#[derive(DeriveIden)]
enum ExchangeQuotes {
    Table,
    Id,
    UserId,
    FromWalletId,
    ToWalletId,
    FromCurrency,
    ToCurrency,
    Amount,
    Fee,
    Rate,
    Gross,
    Received,
    ExpiresAt,
    UsedAt,
    TransactionId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(ExchangeQuotes::Table)
                    .col(uuid_pk(ExchangeQuotes::Id))
                    .col(uuid(ExchangeQuotes::UserId))
                    .col(uuid(ExchangeQuotes::FromWalletId))
                    .col(uuid(ExchangeQuotes::ToWalletId))
                    .col(string(ExchangeQuotes::FromCurrency, 8))
                    .col(string(ExchangeQuotes::ToCurrency, 8))
                    .col(money(backend, ExchangeQuotes::Amount))
                    .col(money(backend, ExchangeQuotes::Fee))
                    .col(money(backend, ExchangeQuotes::Rate))
                    .col(money(backend, ExchangeQuotes::Gross))
                    .col(money(backend, ExchangeQuotes::Received))
                    .col(timestamp(ExchangeQuotes::ExpiresAt))
                    .col(opt_timestamp(ExchangeQuotes::UsedAt))
                    .col(ColumnDef::new(ExchangeQuotes::TransactionId).uuid().null())
                    .col(timestamp(ExchangeQuotes::CreatedAt))
                    .foreign_key(&mut fk(
                        ExchangeQuotes::Table,
                        ExchangeQuotes::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_exchange_quotes_transaction",
            ExchangeQuotes::Table,
            [ExchangeQuotes::TransactionId],
            false,
        )
        .await?;
        Ok(())
    }
}
