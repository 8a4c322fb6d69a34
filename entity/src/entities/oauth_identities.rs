//! `oauth_identities`: accounts at OAuth2 providers linked to users.

use sea_orm::entity::prelude::*;

/// One linked identity.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_identities")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Provider name from the configuration.
    pub provider: String,
    /// The provider's stable subject id.
    pub subject: String,
    /// The linked user.
    pub user_id: Uuid,
    /// The verified e-mail the provider gave when linking.
    pub email: String,
    /// When it was linked.
    pub created_at: DateTimeUtc,
}

no_relations!();
