//! `auth_flows`: short-lived, single-use authentication state kept on the
//! server (WebAuthn ceremonies, MFA logins, OAuth2 logins, step-up tokens).

use sea_orm::entity::prelude::*;

/// One pending flow.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "auth_flows")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// What the flow is for.
    pub kind: String,
    /// Unique lookup key: a hash of the token the client holds, never
    /// the token itself.
    pub lookup: String,
    /// The user, when known.
    pub user_id: Option<Uuid>,
    /// Server-side state (JSON).
    pub payload: String,
    /// For tokens consumed by an operation: what consumed them.
    pub consumed_ref: Option<String>,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When it stops being accepted.
    pub expires_at: DateTimeUtc,
}

no_relations!();
