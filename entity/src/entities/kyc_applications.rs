//! `kyc_applications`: a user's application at the KYC provider, with the
//! personal data submitted, sealed (see `pii`), and where the provider's
//! review stands.

use sea_orm::entity::prelude::*;

/// One user's application (a resubmission updates it).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "kyc_applications")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The applicant, unique.
    pub user_id: Uuid,
    /// The provider's applicant id, unique.
    pub applicant_id: String,
    /// The provider's verification level.
    pub level_name: String,
    /// Sealed given name.
    pub first_name: Option<String>,
    /// Sealed family name.
    pub last_name: Option<String>,
    /// Sealed date of birth (`YYYY-MM-DD`).
    pub date_of_birth: Option<String>,
    /// Sealed address (JSON).
    pub address: Option<String>,
    /// Sealed country of residence (ISO 3166-1 alpha-3).
    pub country: Option<String>,
    /// `PASSPORT`, `ID_CARD`, `DRIVERS` or `RESIDENCE_PERMIT`.
    pub document_type: String,
    /// Sealed document number.
    pub document_number: Option<String>,
    /// The last review's answer: `GREEN` or `RED`.
    pub review_answer: Option<String>,
    /// For `RED`: `RETRY` (may submit again) or `FINAL`.
    pub reject_type: Option<String>,
    /// Creation time of the last provider event applied; older ones are ignored.
    pub last_event_at: Option<DateTimeUtc>,
    /// When the user (last) submitted.
    pub submitted_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
