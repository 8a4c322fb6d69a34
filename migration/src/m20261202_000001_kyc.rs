//! KYC from the user's side and the account lifecycle: each user's data key
//! (destroyed on erasure), the KYC application at the provider with its
//! personal data sealed, the status history, the webhook deliveries seen,
//! and the profile's sealed phone and address, locale, closing and erasure
//! times on `users`.

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, fk, index, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Creates the KYC and lifecycle tables and columns.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000001_kyc"
    }
}

#[derive(DeriveIden)]
enum UserKeys {
    Table,
    UserId,
    Secret,
    CreatedAt,
    ShreddedAt,
}

#[derive(DeriveIden)]
enum KycApplications {
    Table,
    Id,
    UserId,
    ApplicantId,
    LevelName,
    FirstName,
    LastName,
    DateOfBirth,
    Address,
    Country,
    DocumentType,
    DocumentNumber,
    ReviewAnswer,
    RejectType,
    LastEventAt,
    SubmittedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KycStatusHistory {
    Table,
    Id,
    UserId,
    FromStatus,
    ToStatus,
    Level,
    Reason,
    Source,
    ActorId,
    OccurredAt,
}

#[derive(DeriveIden)]
enum KycWebhooks {
    Table,
    Id,
    Digest,
    ApplicantId,
    EventType,
    EventCreatedAt,
    Outcome,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum Profile {
    Phone,
    Address,
    Locale,
    ClosedAt,
    ErasedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserKeys::Table)
                    .col(uuid_pk(UserKeys::UserId))
                    .col(ColumnDef::new(UserKeys::Secret).string_len(64).null())
                    .col(timestamp(UserKeys::CreatedAt))
                    .col(opt_timestamp(UserKeys::ShreddedAt))
                    .foreign_key(&mut fk(
                        UserKeys::Table,
                        UserKeys::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        let sealed = |name: KycApplications| ColumnDef::new(name).text().null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(KycApplications::Table)
                    .col(uuid_pk(KycApplications::Id))
                    .col(uuid(KycApplications::UserId))
                    .col(string(KycApplications::ApplicantId, 64))
                    .col(string(KycApplications::LevelName, 64))
                    .col(sealed(KycApplications::FirstName))
                    .col(sealed(KycApplications::LastName))
                    .col(sealed(KycApplications::DateOfBirth))
                    .col(sealed(KycApplications::Address))
                    .col(sealed(KycApplications::Country))
                    .col(string(KycApplications::DocumentType, 32))
                    .col(sealed(KycApplications::DocumentNumber))
                    .col(
                        ColumnDef::new(KycApplications::ReviewAnswer)
                            .string_len(8)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(KycApplications::RejectType)
                            .string_len(8)
                            .null(),
                    )
                    .col(opt_timestamp(KycApplications::LastEventAt))
                    .col(timestamp(KycApplications::SubmittedAt))
                    .col(timestamp(KycApplications::UpdatedAt))
                    .foreign_key(&mut fk(
                        KycApplications::Table,
                        KycApplications::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        // One application per user (a resubmission updates it) and per applicant.
        index(
            manager,
            "uq_kyc_applications_user",
            KycApplications::Table,
            [KycApplications::UserId],
            true,
        )
        .await?;
        index(
            manager,
            "uq_kyc_applications_applicant",
            KycApplications::Table,
            [KycApplications::ApplicantId],
            true,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(KycStatusHistory::Table)
                    .col(uuid_pk(KycStatusHistory::Id))
                    .col(uuid(KycStatusHistory::UserId))
                    .col(string(KycStatusHistory::FromStatus, 16))
                    .col(string(KycStatusHistory::ToStatus, 16))
                    .col(ColumnDef::new(KycStatusHistory::Level).integer().not_null())
                    .col(
                        ColumnDef::new(KycStatusHistory::Reason)
                            .string_len(500)
                            .null(),
                    )
                    .col(string(KycStatusHistory::Source, 16))
                    .col(ColumnDef::new(KycStatusHistory::ActorId).uuid().null())
                    .col(timestamp(KycStatusHistory::OccurredAt))
                    .foreign_key(&mut fk(
                        KycStatusHistory::Table,
                        KycStatusHistory::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_kyc_status_history_user",
            KycStatusHistory::Table,
            [KycStatusHistory::UserId, KycStatusHistory::OccurredAt],
            false,
        )
        .await?;
        manager
            .create_table(
                Table::create()
                    .table(KycWebhooks::Table)
                    .col(uuid_pk(KycWebhooks::Id))
                    .col(string(KycWebhooks::Digest, 64))
                    .col(string(KycWebhooks::ApplicantId, 64))
                    .col(string(KycWebhooks::EventType, 48))
                    .col(timestamp(KycWebhooks::EventCreatedAt))
                    .col(string(KycWebhooks::Outcome, 24))
                    .col(timestamp(KycWebhooks::ReceivedAt))
                    .to_owned(),
            )
            .await?;
        // A delivery repeated by the provider has the same body.
        index(
            manager,
            "uq_kyc_webhooks_digest",
            KycWebhooks::Table,
            [KycWebhooks::Digest],
            true,
        )
        .await?;
        // SQLite adds one column per statement.
        for column in [
            ColumnDef::new(Profile::Phone).text().null().to_owned(),
            ColumnDef::new(Profile::Address).text().null().to_owned(),
            ColumnDef::new(Profile::Locale)
                .string_len(16)
                .null()
                .to_owned(),
            opt_timestamp(Profile::ClosedAt),
            opt_timestamp(Profile::ErasedAt),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
