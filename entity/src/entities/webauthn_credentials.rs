//! `webauthn_credentials`: registered WebAuthn authenticators.

use sea_orm::entity::prelude::*;

/// One credential of a user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webauthn_credentials")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Name the user gave it.
    pub name: String,
    /// The authenticator's credential id, base64url; unique.
    pub credential_id: String,
    /// The serialized credential (public key, counter): no secret.
    pub passkey: String,
    /// Highest signature counter seen; an assertion must exceed it.
    pub sign_count: i64,
    /// When it was registered.
    pub created_at: DateTimeUtc,
    /// When it last made an assertion.
    pub last_used_at: Option<DateTimeUtc>,
}

no_relations!();
