//! KYC statuses, the submission's personal data, and what moves a user
//! between statuses: the provider's review events and compliance decisions.

use chrono::Datelike;

use crate::error::DomainError;

string_enum! {
    /// Where a user is in identity verification.
    KycStatus {
        /// Nothing submitted.
        NotStarted => "NOT_STARTED",
        /// Submitted, waiting for the provider.
        Pending => "PENDING",
        /// With a compliance officer.
        InReview => "IN_REVIEW",
        /// Verified.
        Approved => "APPROVED",
        /// Refused.
        Rejected => "REJECTED",
    }
}

/// What a compliance officer decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KycDecision {
    /// Take the case into manual review.
    StartReview,
    /// Verify the user.
    Approve,
    /// Refuse; needs a reason.
    Reject,
}

/// Longest review reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The status and level after a decision, or why it is refused.
pub fn review(
    current: KycStatus,
    level: i32,
    decision: KycDecision,
    reason: Option<&str>,
) -> Result<(KycStatus, i32, Option<String>), DomainError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = reason
        && (r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control))
    {
        return Err(DomainError::bad_input(format!(
            "reason must have at most {MAX_REASON_CHARS} characters and no control characters"
        )));
    }
    let next = match decision {
        KycDecision::StartReview => KycStatus::InReview,
        KycDecision::Approve => KycStatus::Approved,
        KycDecision::Reject => KycStatus::Rejected,
    };
    if next == current {
        return Err(DomainError::bad_input(format!(
            "KYC status is already {}",
            current.as_str()
        )));
    }
    let allowed = match decision {
        // A case goes into review before it is decided ...
        KycDecision::StartReview => matches!(current, KycStatus::NotStarted | KycStatus::Pending),
        // ... is decided from review (or pending) ...
        KycDecision::Approve => matches!(current, KycStatus::Pending | KycStatus::InReview),
        // ... and an approval can be revoked.
        KycDecision::Reject => matches!(
            current,
            KycStatus::Pending | KycStatus::InReview | KycStatus::Approved
        ),
    };
    if !allowed {
        return Err(DomainError::bad_input(format!(
            "a KYC case that is {} cannot be changed that way",
            current.as_str()
        )));
    }
    if decision == KycDecision::Reject && reason.is_none() {
        return Err(DomainError::bad_input("a rejection needs a reason"));
    }
    let level = match next {
        KycStatus::Approved => level.max(1),
        KycStatus::Rejected => 0,
        _ => level,
    };
    Ok((next, level, reason.map(str::to_owned)))
}

string_enum! {
    /// Identity documents the provider checks.
    DocumentType {
        /// Passport.
        Passport => "PASSPORT",
        /// National identity card.
        IdCard => "ID_CARD",
        /// Driving licence.
        Drivers => "DRIVERS",
        /// Residence permit.
        ResidencePermit => "RESIDENCE_PERMIT",
    }
}

string_enum! {
    /// Who changed a KYC status.
    KycSource {
        /// The user's own submission.
        User => "USER",
        /// The provider's review (webhook).
        Provider => "PROVIDER",
        /// A compliance officer (`reviewKyc`).
        Compliance => "COMPLIANCE",
    }
}

string_enum! {
    /// How final a provider's rejection is.
    RejectType {
        /// The user may correct and submit again.
        Retry => "RETRY",
        /// Refused for good.
        Final => "FINAL",
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// Town or city.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-3 country code.
    pub country: String,
}

impl Address {
    /// Validates each part: bounded, without control characters; a country
    /// code of three capital letters.
    pub fn parse(
        street: &str,
        city: &str,
        postal_code: &str,
        country: &str,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            street: text("address.street", street, 1, 200)?,
            city: text("address.city", city, 1, 100)?,
            postal_code: text("address.postalCode", postal_code, 1, 20)?,
            country: country_code("address.country", country)?,
        })
    }
}

/// The personal data of a KYC submission, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applicant {
    /// Given name(s).
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Date of birth.
    pub date_of_birth: chrono::NaiveDate,
    /// Residential address.
    pub address: Address,
    /// Country of residence (ISO 3166-1 alpha-3).
    pub country: String,
    /// Kind of document.
    pub document_type: DocumentType,
    /// Document number.
    pub document_number: String,
}

/// Youngest age that may open a verified account.
pub const MIN_AGE_YEARS: u32 = 18;

impl Applicant {
    /// Validates a submission made on `today`. Messages name the field, never
    /// repeat the value.
    #[allow(clippy::too_many_arguments)]
    pub fn parse(
        first_name: &str,
        last_name: &str,
        date_of_birth: &str,
        address: Address,
        country: &str,
        document_type: DocumentType,
        document_number: &str,
        today: chrono::NaiveDate,
    ) -> Result<Self, DomainError> {
        let born = chrono::NaiveDate::parse_from_str(date_of_birth.trim(), "%Y-%m-%d")
            .map_err(|_| DomainError::bad_input("dateOfBirth must be a date, YYYY-MM-DD"))?;
        let adult = today
            .checked_sub_months(chrono::Months::new(12 * MIN_AGE_YEARS))
            .is_some_and(|cutoff| born <= cutoff);
        if born.year() < 1900 || !adult {
            return Err(DomainError::bad_input(format!(
                "dateOfBirth must be after 1900 and at least {MIN_AGE_YEARS} years ago"
            )));
        }
        let number = document_number.trim();
        if number.is_empty()
            || number.len() > 40
            || !number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ' ')
        {
            return Err(DomainError::bad_input(
                "documentNumber must have 1 to 40 letters, digits, spaces or '-'",
            ));
        }
        Ok(Self {
            first_name: text("firstName", first_name, 1, 100)?,
            last_name: text("lastName", last_name, 1, 100)?,
            date_of_birth: born,
            address,
            country: country_code("country", country)?,
            document_type,
            document_number: number.to_ascii_uppercase(),
        })
    }
}

fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    let n = trimmed.chars().count();
    if n < min || n > max || trimmed.chars().any(char::is_control) {
        return Err(DomainError::bad_input(format!(
            "{field} must have {min} to {max} characters and no control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

fn country_code(field: &str, value: &str) -> Result<String, DomainError> {
    let code = value.trim();
    if code.len() != 3 || !code.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(DomainError::bad_input(format!(
            "{field} must be an ISO 3166-1 alpha-3 code such as GBR or DEU"
        )));
    }
    Ok(code.to_owned())
}

/// Whether a user in `status` may submit (again); `reject` is the provider's
/// last rejection type.
pub fn ensure_can_submit(status: KycStatus, reject: Option<RejectType>) -> Result<(), DomainError> {
    match (status, reject) {
        (KycStatus::NotStarted, _) | (KycStatus::Rejected, Some(RejectType::Retry)) => Ok(()),
        (KycStatus::Rejected, _) => Err(DomainError::forbidden(
            "identity verification was refused and cannot be submitted again; contact support",
        )),
        (KycStatus::Approved, _) => {
            Err(DomainError::bad_input("your identity is already verified"))
        }
        (KycStatus::Pending | KycStatus::InReview, _) => Err(DomainError::bad_input(
            "your verification is already under way",
        )),
    }
}

/// What a provider event says about an applicant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderReview {
    /// Documents are in; the provider is checking.
    Pending,
    /// Put aside for a manual check at the provider.
    OnHold,
    /// Verified.
    Green,
    /// Refused, for now or for good.
    Red {
        /// Whether the user may submit again.
        reject: RejectType,
        /// What the provider tells the user.
        reason: Option<String>,
    },
    /// The applicant's data was reset: verification starts over.
    Reset,
    /// Anything else (created, viewed, ...): recorded, changes nothing.
    Other,
}

/// A change of status and level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// New status.
    pub status: KycStatus,
    /// New level.
    pub level: i32,
    /// Why, for rejections.
    pub reason: Option<String>,
}

/// Where a provider event takes a user at (`status`, `level`); `tier` is
/// what a GREEN at the event's level grants. `None`: nothing changes.
pub fn provider_transition(
    status: KycStatus,
    level: i32,
    review: &ProviderReview,
    tier: i32,
) -> Option<Transition> {
    let next = match review {
        ProviderReview::Pending => Transition {
            status: KycStatus::Pending,
            level,
            reason: None,
        },
        ProviderReview::OnHold => Transition {
            status: KycStatus::InReview,
            level,
            reason: None,
        },
        ProviderReview::Green => Transition {
            status: KycStatus::Approved,
            level: tier.max(1),
            reason: None,
        },
        ProviderReview::Red { reason, .. } => Transition {
            status: KycStatus::Rejected,
            level: 0,
            reason: Some(
                reason
                    .as_deref()
                    .map(|r| r.chars().take(MAX_REASON_CHARS).collect())
                    .unwrap_or_else(|| {
                        "the verification provider refused the documents".to_owned()
                    }),
            ),
        },
        ProviderReview::Reset => Transition {
            status: KycStatus::NotStarted,
            level: 0,
            reason: None,
        },
        ProviderReview::Other => return None,
    };
    (next.status != status || next.level != level).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_raises_the_level_and_rejection_needs_a_reason() {
        let (s, l, _) = review(KycStatus::Pending, 0, KycDecision::Approve, None).expect("approve");
        assert_eq!((s, l), (KycStatus::Approved, 1));
        assert!(review(KycStatus::Approved, 1, KycDecision::Reject, None).is_err());
        let (s, l, r) = review(
            KycStatus::Approved,
            1,
            KycDecision::Reject,
            Some(" forged ID "),
        )
        .expect("reject");
        assert_eq!(
            (s, l, r.as_deref()),
            (KycStatus::Rejected, 0, Some("forged ID"))
        );
    }

    #[test]
    fn repeated_and_backward_decisions_are_refused() {
        assert!(review(KycStatus::Approved, 1, KycDecision::Approve, None).is_err());
        assert!(review(KycStatus::Rejected, 0, KycDecision::StartReview, None).is_err());
        assert!(review(KycStatus::NotStarted, 0, KycDecision::Approve, None).is_err());
        assert!(review(KycStatus::NotStarted, 0, KycDecision::StartReview, None).is_ok());
    }
    #[test]
    fn provider_events_move_the_status_and_repeats_change_nothing() {
        use KycStatus::*;
        let red = |reject| ProviderReview::Red {
            reject,
            reason: Some("blurred".to_owned()),
        };
        let t =
            |s, l, r: &ProviderReview| provider_transition(s, l, r, 2).map(|t| (t.status, t.level));
        assert_eq!(t(Pending, 0, &ProviderReview::OnHold), Some((InReview, 0)));
        assert_eq!(t(InReview, 0, &ProviderReview::Green), Some((Approved, 2)));
        assert_eq!(
            t(Approved, 2, &ProviderReview::Green),
            None,
            "a repeat changes nothing"
        );
        assert_eq!(t(Approved, 2, &red(RejectType::Final)), Some((Rejected, 0)));
        assert_eq!(
            t(Rejected, 0, &ProviderReview::Reset),
            Some((NotStarted, 0))
        );
        assert_eq!(t(Pending, 0, &ProviderReview::Other), None);
        assert!(ensure_can_submit(Rejected, Some(RejectType::Retry)).is_ok());
        assert_eq!(
            ensure_can_submit(Rejected, Some(RejectType::Final)).map_err(|e| e.code),
            Err(crate::ErrorCode::Forbidden)
        );
        assert!(ensure_can_submit(Pending, None).is_err());
    }

    #[test]
    fn submissions_are_validated_without_repeating_values() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).expect("date");
        let address = Address::parse("1 Main St", "London", "N1 9GU", "GBR").expect("address");
        let ok = Applicant::parse(
            " Ada ",
            "Lovelace",
            "2008-12-01",
            address.clone(),
            "GBR",
            DocumentType::Passport,
            "x123-45",
            today,
        )
        .expect("18 today");
        assert_eq!(
            (ok.first_name.as_str(), ok.document_number.as_str()),
            ("Ada", "X123-45")
        );
        let young = Applicant::parse(
            "Ada",
            "Lovelace",
            "2008-12-02",
            address.clone(),
            "GBR",
            DocumentType::Passport,
            "X1",
            today,
        );
        assert!(young.is_err_and(|e| !e.message.contains("2008")));
        assert!(Address::parse("1 Main St", "London", "N1", "gb").is_err());
        assert!(
            Applicant::parse(
                "Ada",
                "L",
                "1990-01-01",
                address,
                "GBR",
                DocumentType::IdCard,
                "X<1",
                today
            )
            .is_err()
        );
    }
}
