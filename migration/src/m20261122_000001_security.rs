//! Identity and security: WebAuthn credentials, short-lived authentication
//! flows (ceremony state, MFA and OAuth2 logins, step-up tokens) and linked
//! OAuth2 identities.

use sea_orm_migration::prelude::*;

use crate::m20261121_000001_initial::{
    Users, big_int, fk, index, opt_timestamp, string, timestamp, uuid, uuid_pk,
};

/// Creates the security tables.
pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_security"
    }
}

#[derive(DeriveIden)]
enum WebauthnCredentials {
    Table,
    Id,
    UserId,
    Name,
    CredentialId,
    Passkey,
    SignCount,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AuthFlows {
    Table,
    Id,
    Kind,
    Lookup,
    UserId,
    Payload,
    ConsumedRef,
    CreatedAt,
    ExpiresAt,
}

/// New column of `users`.
#[derive(DeriveIden)]
enum UserEmail {
    EmailVerifiedAt,
}

#[derive(DeriveIden)]
enum OauthIdentities {
    Table,
    Id,
    Provider,
    Subject,
    UserId,
    Email,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Set when an identity provider vouched for the address.
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(opt_timestamp(UserEmail::EmailVerifiedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebauthnCredentials::Table)
                    .col(uuid_pk(WebauthnCredentials::Id))
                    .col(uuid(WebauthnCredentials::UserId))
                    .col(string(WebauthnCredentials::Name, 64))
                    .col(string(WebauthnCredentials::CredentialId, 1400).unique_key())
                    .col(
                        ColumnDef::new(WebauthnCredentials::Passkey)
                            .text()
                            .not_null(),
                    )
                    .col(big_int(WebauthnCredentials::SignCount))
                    .col(timestamp(WebauthnCredentials::CreatedAt))
                    .col(opt_timestamp(WebauthnCredentials::LastUsedAt))
                    .foreign_key(&mut fk(
                        WebauthnCredentials::Table,
                        WebauthnCredentials::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_webauthn_credentials_user",
            WebauthnCredentials::Table,
            [WebauthnCredentials::UserId],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthFlows::Table)
                    .col(uuid_pk(AuthFlows::Id))
                    .col(string(AuthFlows::Kind, 32))
                    .col(string(AuthFlows::Lookup, 128).unique_key())
                    .col(ColumnDef::new(AuthFlows::UserId).uuid().null())
                    .col(ColumnDef::new(AuthFlows::Payload).text().not_null())
                    .col(
                        ColumnDef::new(AuthFlows::ConsumedRef)
                            .string_len(300)
                            .null(),
                    )
                    .col(timestamp(AuthFlows::CreatedAt))
                    .col(timestamp(AuthFlows::ExpiresAt))
                    .foreign_key(&mut fk(
                        AuthFlows::Table,
                        AuthFlows::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_auth_flows_expires",
            AuthFlows::Table,
            [AuthFlows::ExpiresAt],
            false,
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table(OauthIdentities::Table)
                    .col(uuid_pk(OauthIdentities::Id))
                    .col(string(OauthIdentities::Provider, 64))
                    .col(string(OauthIdentities::Subject, 255))
                    .col(uuid(OauthIdentities::UserId))
                    .col(string(OauthIdentities::Email, 254))
                    .col(timestamp(OauthIdentities::CreatedAt))
                    .foreign_key(&mut fk(
                        OauthIdentities::Table,
                        OauthIdentities::UserId,
                        Users::Table,
                        Users::Id,
                    ))
                    .to_owned(),
            )
            .await?;
        index(
            manager,
            "idx_oauth_identities_subject",
            OauthIdentities::Table,
            [OauthIdentities::Provider, OauthIdentities::Subject],
            true,
        )
        .await?;
        index(
            manager,
            "idx_oauth_identities_user",
            OauthIdentities::Table,
            [OauthIdentities::UserId],
            false,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OauthIdentities::Table.into_iden(),
            AuthFlows::Table.into_iden(),
            WebauthnCredentials::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(UserEmail::EmailVerifiedAt)
                    .to_owned(),
            )
            .await
    }
}
