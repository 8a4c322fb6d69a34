//! KYC statuses and review decisions.

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
}
