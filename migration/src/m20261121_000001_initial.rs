//! The first schema: identity, wallets, ledger, transactions, idempotency,
//! outbox and audit.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

/// Creates every table of the first release.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261121_000001_initial"
    }
}

#[derive(DeriveIden)]
pub(crate) enum Users {
    Table,
    Id,
    Email,
    DisplayName,
    PasswordHash,
    KycStatus,
    KycLevel,
    TwoFactorEnabled,
    EventSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserRoles {
    Table,
    UserId,
    Role,
    GrantedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Id,
    UserId,
    FamilyId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    Id,
    UserId,
    Currency,
    Balance,
    Available,
    Frozen,
    Status,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Transactions {
    Table,
    Id,
    Kind,
    Status,
    Amount,
    Currency,
    FromWalletId,
    ToWalletId,
    Memo,
    Destination,
    InitiatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    TransactionId,
    WalletId,
    Account,
    Currency,
    Amount,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Id,
    UserId,
    Key,
    Operation,
    Fingerprint,
    Status,
    LockedUntil,
    Response,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    UserId,
    Sequence,
    Topic,
    Payload,
    CreatedAt,
    PublishedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    UserId,
    Sequence,
    Kind,
    Title,
    Body,
    Data,
    ReadAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    ActorId,
    Action,
    SubjectType,
    SubjectId,
    Details,
    CreatedAt,
}

/// An exact amount column: `NUMERIC(28,18)` on PostgreSQL, canonical decimal
/// text on SQLite.
pub(crate) fn money(backend: DatabaseBackend, name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    match backend {
        DatabaseBackend::Sqlite => col.text(),
        _ => col.decimal_len(28, 18),
    };
    col.not_null();
    col
}

pub(crate) fn uuid_pk(name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.uuid().not_null().primary_key();
    col
}

pub(crate) fn string(name: impl IntoIden, len: u32) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.string_len(len).not_null();
    col
}

pub(crate) fn big_int(name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.big_integer().not_null();
    col
}

pub(crate) fn uuid(name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.uuid().not_null();
    col
}

pub(crate) fn opt_timestamp(name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.timestamp_with_time_zone().null();
    col
}

pub(crate) fn timestamp(name: impl IntoIden) -> ColumnDef {
    let mut col = ColumnDef::new(name);
    col.timestamp_with_time_zone().not_null();
    col
}

pub(crate) fn fk(
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_col)
        .to(to_table, to_col)
        .on_delete(ForeignKeyAction::Restrict)
        .to_owned()
}

pub(crate) async fn index<T: IntoIden, C: IntoIden, const N: usize>(
    manager: &SchemaManager<'_>,
    name: &str,
    table: T,
    cols: [C; N],
    unique: bool,
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for col in cols {
        idx.col(col);
    }
    if unique {
        idx.unique();
    }
    manager.create_index(idx.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        let pg = backend == DatabaseBackend::Postgres;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid_pk(Users::Id))
                    .col(string(Users::Email, 254).unique_key())
                    .col(string(Users::DisplayName, 80))
                    .col(ColumnDef::new(Users::PasswordHash).text().null())
                    .col(string(Users::KycStatus, 16).default("NOT_STARTED"))
                    .col(
                        ColumnDef::new(Users::KycLevel)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Users::TwoFactorEnabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(big_int(Users::EventSeq).default(0))
                    .col(timestamp(Users::CreatedAt))
                    .col(timestamp(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserRoles::Table)
                    .col(uuid(UserRoles::UserId))
                    .col(string(UserRoles::Role, 16))
                    .col(timestamp(UserRoles::GrantedAt))
                    .primary_key(Index::create().col(UserRoles::UserId).col(UserRoles::Role))
                    .foreign_key(&mut fk(
                        UserRoles::Table,
                        UserRoles::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;

        // A login session; its row lock orders rotation against revocation.
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(uuid_pk(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(timestamp(Sessions::CreatedAt))
                    .col(opt_timestamp(Sessions::RevokedAt))
                    .foreign_key(&mut fk(
                        Sessions::Table,
                        Sessions::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_sessions_user",
            Sessions::Table,
            [Sessions::UserId],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(uuid_pk(RefreshTokens::Id))
                    .col(uuid(RefreshTokens::UserId))
                    .col(uuid(RefreshTokens::FamilyId))
                    .col(string(RefreshTokens::TokenHash, 64).unique_key())
                    .col(timestamp(RefreshTokens::CreatedAt))
                    .col(timestamp(RefreshTokens::ExpiresAt))
                    .col(opt_timestamp(RefreshTokens::UsedAt))
                    .col(opt_timestamp(RefreshTokens::RevokedAt))
                    .foreign_key(&mut fk(
                        RefreshTokens::Table,
                        RefreshTokens::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut fk(
                        RefreshTokens::Table,
                        RefreshTokens::FamilyId,
                        Sessions::Table,
                        Sessions::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_refresh_tokens_family",
            RefreshTokens::Table,
            [RefreshTokens::FamilyId],
            false,
        )
        .await?;

        let mut wallets = Table::create();
        wallets
            .table(Wallets::Table)
            .col(uuid_pk(Wallets::Id))
            .col(uuid(Wallets::UserId))
            .col(string(Wallets::Currency, 8))
            .col(money(backend, Wallets::Balance))
            .col(money(backend, Wallets::Available))
            .col(money(backend, Wallets::Frozen))
            .col(string(Wallets::Status, 16).default("ACTIVE"))
            .col(big_int(Wallets::Version).default(0))
            .col(timestamp(Wallets::CreatedAt))
            .col(timestamp(Wallets::UpdatedAt))
            .foreign_key(&mut fk(
                Wallets::Table,
                Wallets::UserId,
                Users::Table,
                Users::Id,
            ));
        if pg {
            // The database refuses what the rules must never produce.
            wallets
                .check(Expr::cust("available >= 0"))
                .check(Expr::cust("frozen >= 0"))
                .check(Expr::cust("balance = available + frozen"));
        }
        manager.create_table(wallets.to_owned()).await?;
        index(
            manager,
            "uq_wallets_user_currency",
            Wallets::Table,
            [Wallets::UserId, Wallets::Currency],
            true,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Transactions::Table)
                    .col(uuid_pk(Transactions::Id))
                    .col(string(Transactions::Kind, 16))
                    .col(string(Transactions::Status, 16))
                    .col(money(backend, Transactions::Amount))
                    .col(string(Transactions::Currency, 8))
                    .col(ColumnDef::new(Transactions::FromWalletId).uuid().null())
                    .col(ColumnDef::new(Transactions::ToWalletId).uuid().null())
                    .col(ColumnDef::new(Transactions::Memo).string_len(280).null())
                    .col(
                        ColumnDef::new(Transactions::Destination)
                            .string_len(255)
                            .null(),
                    )
                    .col(uuid(Transactions::InitiatedBy))
                    .col(timestamp(Transactions::CreatedAt))
                    .col(timestamp(Transactions::UpdatedAt))
                    .foreign_key(&mut fk(
                        Transactions::Table,
                        Transactions::InitiatedBy,
                        Users::Table,
                        Users::Id,
                    ))
                    .foreign_key(&mut fk(
                        Transactions::Table,
                        Transactions::FromWalletId,
                        Wallets::Table,
                        Wallets::Id,
                    ))
                    .foreign_key(&mut fk(
                        Transactions::Table,
                        Transactions::ToWalletId,
                        Wallets::Table,
                        Wallets::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_transactions_from_wallet", Transactions::FromWalletId),
            ("idx_transactions_to_wallet", Transactions::ToWalletId),
        ] {
            index(
                manager,
                name,
                Transactions::Table,
                [col, Transactions::CreatedAt, Transactions::Id],
                false,
            )
            .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(uuid_pk(LedgerEntries::Id))
                    .col(uuid(LedgerEntries::TransactionId))
                    .col(ColumnDef::new(LedgerEntries::WalletId).uuid().null())
                    .col(string(LedgerEntries::Account, 64))
                    .col(string(LedgerEntries::Currency, 8))
                    .col(money(backend, LedgerEntries::Amount))
                    .col(timestamp(LedgerEntries::CreatedAt))
                    .foreign_key(&mut fk(
                        LedgerEntries::Table,
                        LedgerEntries::TransactionId,
                        Transactions::Table,
                        Transactions::Id,
                    ))
                    .foreign_key(&mut fk(
                        LedgerEntries::Table,
                        LedgerEntries::WalletId,
                        Wallets::Table,
                        Wallets::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_ledger_entries_wallet", LedgerEntries::WalletId),
            (
                "idx_ledger_entries_transaction",
                LedgerEntries::TransactionId,
            ),
        ] {
            index(manager, name, LedgerEntries::Table, [col], false).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid_pk(IdempotencyKeys::Id))
                    .col(uuid(IdempotencyKeys::UserId))
                    .col(string(IdempotencyKeys::Key, 255))
                    .col(string(IdempotencyKeys::Operation, 32))
                    .col(string(IdempotencyKeys::Fingerprint, 64))
                    .col(string(IdempotencyKeys::Status, 16))
                    .col(timestamp(IdempotencyKeys::LockedUntil))
                    .col(ColumnDef::new(IdempotencyKeys::Response).json().null())
                    .col(timestamp(IdempotencyKeys::CreatedAt))
                    .col(timestamp(IdempotencyKeys::ExpiresAt))
                    .foreign_key(&mut fk(
                        IdempotencyKeys::Table,
                        IdempotencyKeys::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_idempotency_keys_user_key",
            IdempotencyKeys::Table,
            [IdempotencyKeys::UserId, IdempotencyKeys::Key],
            true,
        )
        .await?;
        index(
            manager,
            "idx_idempotency_keys_expires_at",
            IdempotencyKeys::Table,
            [IdempotencyKeys::ExpiresAt],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(uuid_pk(OutboxEvents::Id))
                    .col(uuid(OutboxEvents::UserId))
                    .col(big_int(OutboxEvents::Sequence))
                    .col(string(OutboxEvents::Topic, 64))
                    .col(ColumnDef::new(OutboxEvents::Payload).json().not_null())
                    .col(timestamp(OutboxEvents::CreatedAt))
                    .col(opt_timestamp(OutboxEvents::PublishedAt))
                    .foreign_key(&mut fk(
                        OutboxEvents::Table,
                        OutboxEvents::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "uq_outbox_events_user_sequence",
            OutboxEvents::Table,
            [OutboxEvents::UserId, OutboxEvents::Sequence],
            true,
        )
        .await?;
        index(
            manager,
            "idx_outbox_events_unpublished",
            OutboxEvents::Table,
            [
                OutboxEvents::PublishedAt,
                OutboxEvents::UserId,
                OutboxEvents::Sequence,
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(uuid_pk(Notifications::Id))
                    .col(uuid(Notifications::UserId))
                    .col(big_int(Notifications::Sequence))
                    .col(string(Notifications::Kind, 32))
                    .col(string(Notifications::Title, 120))
                    .col(string(Notifications::Body, 500))
                    .col(ColumnDef::new(Notifications::Data).json().not_null())
                    .col(opt_timestamp(Notifications::ReadAt))
                    .col(timestamp(Notifications::CreatedAt))
                    .foreign_key(&mut fk(
                        Notifications::Table,
                        Notifications::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_notifications_user_created",
            Notifications::Table,
            [
                Notifications::UserId,
                Notifications::CreatedAt,
                Notifications::Id,
            ],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(uuid_pk(AuditLog::Id))
                    .col(ColumnDef::new(AuditLog::ActorId).uuid().null())
                    .col(string(AuditLog::Action, 64))
                    .col(string(AuditLog::SubjectType, 32))
                    .col(ColumnDef::new(AuditLog::SubjectId).uuid().null())
                    .col(ColumnDef::new(AuditLog::Details).json().not_null())
                    .col(timestamp(AuditLog::CreatedAt))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_audit_log_created_at",
            AuditLog::Table,
            [AuditLog::CreatedAt, AuditLog::Id],
            false,
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditLog::Table.into_iden(),
            Notifications::Table.into_iden(),
            OutboxEvents::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            Transactions::Table.into_iden(),
            Wallets::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            UserRoles::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
