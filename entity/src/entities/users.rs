//! `users`: accounts.

use sea_orm::entity::prelude::*;

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Normalized e-mail address, unique.
    pub email: String,
    /// Name shown to other users.
    pub display_name: String,
    /// argon2id PHC string; `None` for accounts without a password.
    pub password_hash: Option<String>,
    /// KYC status (`NOT_STARTED`, ...).
    pub kyc_status: String,
    /// KYC level reached.
    pub kyc_level: i32,
    /// Whether a second factor is registered.
    pub two_factor_enabled: bool,
    /// When an identity provider vouched for the e-mail address.
    pub email_verified_at: Option<DateTimeUtc>,
    /// Last event sequence handed out for this user.
    pub event_seq: i64,
    /// Sealed phone number (see `pii`).
    pub phone: Option<String>,
    /// Sealed postal address, JSON (see `pii`).
    pub address: Option<String>,
    /// Preferred locale (BCP 47, e.g. `en-GB`).
    pub locale: Option<String>,
    /// When the account was closed.
    pub closed_at: Option<DateTimeUtc>,
    /// When its personal data was erased.
    pub erased_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
