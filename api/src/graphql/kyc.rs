//! Identity verification from the user's side: `submitKyc` creates the
//! applicant at the provider and returns the token its SDK opens with; the
//! provider's review then arrives by webhook (`POST /webhooks/kyc`).

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::kyc::{Address, Applicant};
use domain::{DomainError, ErrorCode};
use entity::store::kyc::{self, HistoryEntry, Submission};

use super::parts;
use crate::error::Result;
use crate::state::AppState;

/// Where a user is in identity verification.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::KycStatus")]
pub enum KycStatus {
    /// Nothing submitted.
    NotStarted,
    /// Submitted, waiting for the provider.
    Pending,
    /// With a compliance officer.
    InReview,
    /// Verified.
    Approved,
    /// Refused.
    Rejected,
}

/// Identity documents the provider checks.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::kyc::DocumentType", name = "KycDocumentType")]
pub enum DocumentType {
    /// Passport.
    Passport,
    /// National identity card.
    IdCard,
    /// Driving licence.
    Drivers,
    /// Residence permit.
    ResidencePermit,
}

/// Who changed a KYC status.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::kyc::KycSource")]
pub enum KycSource {
    /// The user's own submission.
    User,
    /// The verification provider's review.
    Provider,
    /// A compliance officer.
    Compliance,
}

/// A postal address.
#[derive(InputObject, Debug)]
pub struct AddressInput {
    /// Street and number.
    pub street: String,
    /// Town or city.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-3 country code, e.g. `GBR`.
    pub country: String,
}

impl AddressInput {
    pub(crate) fn parse(&self) -> Result<Address, DomainError> {
        Address::parse(&self.street, &self.city, &self.postal_code, &self.country)
    }
}

/// The personal data a KYC submission sends to the provider. It is stored
/// encrypted and shown to nobody but the user (`exportMyData`).
#[derive(InputObject, Debug)]
pub struct SubmitKycInput {
    /// Given name(s), as on the document.
    pub first_name: String,
    /// Family name, as on the document.
    pub last_name: String,
    /// Date of birth, `YYYY-MM-DD`; at least 18 years ago.
    pub date_of_birth: String,
    /// Residential address.
    pub address: AddressInput,
    /// Country of residence, ISO 3166-1 alpha-3.
    pub country: String,
    /// The document the user will show in the provider's SDK.
    pub document_type: DocumentType,
    /// Its number.
    pub document_number: String,
}

/// A submitted verification: open the provider's SDK with `sdkAccessToken`.
#[derive(SimpleObject, Debug, Clone)]
pub struct KycApplication {
    /// Our id of the application.
    pub id: ID,
    /// The user's KYC status now (`PENDING`).
    pub status: KycStatus,
    /// Access token for the provider's web or mobile SDK (about 30 minutes).
    pub sdk_access_token: String,
    /// The provider's verification level.
    pub level_name: String,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// One change of a user's KYC status.
#[derive(SimpleObject, Debug, Clone)]
pub struct KycHistoryEntry {
    /// Status before.
    pub from_status: KycStatus,
    /// Status after.
    pub to_status: KycStatus,
    /// KYC level after.
    pub level: i32,
    /// Why (rejections).
    pub reason: Option<String>,
    /// Who made the change.
    pub source: KycSource,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

impl From<HistoryEntry> for KycHistoryEntry {
    fn from(h: HistoryEntry) -> Self {
        Self {
            from_status: h.from.into(),
            to_status: h.to.into(),
            level: h.level,
            reason: h.reason,
            source: h.source.into(),
            occurred_at: h.occurred_at,
        }
    }
}

/// KYC mutations.
#[derive(Default)]
pub struct KycMutation;

async fn submit(
    state: &AppState,
    user_id: uuid::Uuid,
    input: SubmitKycInput,
) -> Result<KycApplication> {
    let applicant = Applicant::parse(
        &input.first_name,
        &input.last_name,
        &input.date_of_birth,
        input.address.parse()?,
        &input.country,
        input.document_type.into(),
        &input.document_number,
        Utc::now().date_naive(),
    )?;
    let client = state.kyc.as_ref().ok_or_else(|| {
        DomainError::new(
            ErrorCode::ProviderUnavailable,
            "identity verification is not available on this server",
        )
    })?;
    let level = &state.settings.kyc.level_name;
    let external_id = user_id.to_string();
    // Checked before the provider is called, and again under a lock when
    // the submission is recorded.
    let applicant_id = match kyc::can_submit(&state.db, user_id).await? {
        Some(existing) => {
            client.update_applicant(&existing, &applicant).await?;
            existing
        }
        None => {
            client
                .create_applicant(&external_id, level, &applicant)
                .await?
        }
    };
    let token = client.access_token(&external_id, level).await?;
    let record = kyc::submit(
        &state.db,
        &state.pii,
        user_id,
        Submission {
            applicant_id: &applicant_id,
            level_name: level,
            applicant: &applicant,
        },
    )
    .await?;
    tracing::info!(user.id = %user_id, "KYC submitted");
    Ok(KycApplication {
        id: ID(record.id.to_string()),
        status: record.status.into(),
        sdk_access_token: token,
        level_name: record.level_name,
        submitted_at: record.submitted_at,
    })
}

#[Object]
impl KycMutation {
    /// Submits the user's identity for verification: creates the applicant
    /// at the provider (or updates it, after a rejection that allows a
    /// retry), moves the user to `PENDING` and returns the SDK access token.
    /// Errors: `PROVIDER_UNAVAILABLE` (nothing saved; retry), `BAD_USER_INPUT`,
    /// `FORBIDDEN` after a final rejection.
    async fn submit_kyc(&self, ctx: &Context<'_>, input: SubmitKycInput) -> Result<KycApplication> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        state
            .limiter
            .hit(
                crate::limits::Bucket::Money(user.id),
                state.settings.rate_money_per_user,
            )
            .await?;
        submit(state, user.id, input).await
    }

    /// A fresh access token for the provider's SDK while the verification
    /// is under way (`PENDING` or `IN_REVIEW`), e.g. after the first one
    /// expired. Errors: `BAD_USER_INPUT` when nothing is under way,
    /// `PROVIDER_UNAVAILABLE` (retry).
    async fn kyc_access_token(&self, ctx: &Context<'_>) -> Result<String> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        state
            .limiter
            .hit(
                crate::limits::Bucket::Money(user.id),
                state.settings.rate_money_per_user,
            )
            .await?;
        access_token(state, user.id).await
    }
}

async fn access_token(state: &AppState, user_id: uuid::Uuid) -> Result<String> {
    let client = state.kyc.as_ref().ok_or_else(|| {
        DomainError::new(
            ErrorCode::ProviderUnavailable,
            "identity verification is not available on this server",
        )
    })?;
    let Some(level) = kyc::level_under_way(&state.db, user_id).await? else {
        return Err(DomainError::bad_input(
            "no verification is under way: submit it with submitKyc",
        )
        .into());
    };
    Ok(client.access_token(&user_id.to_string(), &level).await?)
}
