//! `refresh_tokens`: rotating refresh tokens, grouped in families.

use sea_orm::entity::prelude::*;

/// One issued refresh token (only its hash is kept).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// The login session this token belongs to.
    pub family_id: Uuid,
    /// SHA-256 of the token, hex.
    pub token_hash: String,
    /// Issue time.
    pub created_at: DateTimeUtc,
    /// Expiry.
    pub expires_at: DateTimeUtc,
    /// When it was exchanged for a new one.
    pub used_at: Option<DateTimeUtc>,
    /// When its family was revoked.
    pub revoked_at: Option<DateTimeUtc>,
}

no_relations!();
