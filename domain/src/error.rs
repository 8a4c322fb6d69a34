//! Stable error codes (`extensions.code` in GraphQL responses) and the domain
//! error type that carries them.

use std::fmt;

/// The error codes of the API contract. The string form is what clients see
/// in `extensions.code`; it never changes once published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No valid access token was presented.
    Unauthenticated,
    /// The caller is authenticated but may not do this.
    Forbidden,
    /// The input is malformed or out of range.
    BadUserInput,
    /// The object does not exist or is not visible to the caller.
    NotFound,
    /// The wallet's available balance does not cover the amount.
    InsufficientFunds,
    /// The wallet is frozen by an administrator.
    WalletFrozen,
    /// The two wallets hold different currencies.
    CurrencyMismatch,
    /// The operation needs a higher KYC level.
    KycRequired,
    /// A configured limit would be exceeded.
    LimitExceeded,
    /// The operation needs a fresh WebAuthn step-up token.
    StepUpRequired,
    /// The login needs a second factor.
    MfaRequired,
    /// The idempotency key was used before with a different input.
    IdempotencyKeyReused,
    /// A request with the same idempotency key is still running.
    IdempotencyKeyInUse,
    /// Too many requests; retry later.
    RateLimited,
    /// The query exceeds depth, complexity or other limits.
    QueryTooComplex,
    /// An Automatic Persisted Query hash is unknown.
    PersistedQueryNotFound,
    /// `afterSequence` is older than the events kept: refetch the state
    /// instead of replaying.
    ReplayUnavailable,
    /// Only documents of the trusted-documents manifest run here, by id.
    TrustedDocumentRequired,
    /// An outside provider (KYC, payments) failed or is unreachable; safe to
    /// retry (with the same idempotency key where there is one).
    ProviderUnavailable,
    /// The account is closed: nothing more can be done with it.
    AccountClosed,
    /// The exchange quote expired or was used: ask for a new one.
    QuoteExpired,
    /// The risk checks refused the movement (`riskScore`, `riskRules` in
    /// `extensions`); retrying does not help, support can.
    RiskBlocked,
    /// Anything unexpected; details are logged, never shown.
    InternalServerError,
}

impl ErrorCode {
    /// Every code, in the order of the contract.
    pub const ALL: [ErrorCode; 23] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::BadUserInput,
        ErrorCode::NotFound,
        ErrorCode::InsufficientFunds,
        ErrorCode::WalletFrozen,
        ErrorCode::CurrencyMismatch,
        ErrorCode::KycRequired,
        ErrorCode::LimitExceeded,
        ErrorCode::StepUpRequired,
        ErrorCode::MfaRequired,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::RateLimited,
        ErrorCode::QueryTooComplex,
        ErrorCode::PersistedQueryNotFound,
        ErrorCode::ReplayUnavailable,
        ErrorCode::TrustedDocumentRequired,
        ErrorCode::ProviderUnavailable,
        ErrorCode::AccountClosed,
        ErrorCode::QuoteExpired,
        ErrorCode::RiskBlocked,
        ErrorCode::InternalServerError,
    ];

    /// The code as it appears in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::WalletFrozen => "WALLET_FROZEN",
            ErrorCode::CurrencyMismatch => "CURRENCY_MISMATCH",
            ErrorCode::KycRequired => "KYC_REQUIRED",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::StepUpRequired => "STEP_UP_REQUIRED",
            ErrorCode::MfaRequired => "MFA_REQUIRED",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::IdempotencyKeyInUse => "IDEMPOTENCY_KEY_IN_USE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QueryTooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::ReplayUnavailable => "REPLAY_UNAVAILABLE",
            ErrorCode::TrustedDocumentRequired => "TRUSTED_DOCUMENT_REQUIRED",
            ErrorCode::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            ErrorCode::AccountClosed => "ACCOUNT_CLOSED",
            ErrorCode::QuoteExpired => "QUOTE_EXPIRED",
            ErrorCode::RiskBlocked => "RISK_BLOCKED",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal decided by the business rules. Its message is safe to show to
/// the user who caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    /// The stable code.
    pub code: ErrorCode,
    /// A human-readable explanation without internal details.
    pub message: String,
    /// Extra facts the caller can act on, shown as `extensions` beside the
    /// code (for `LIMIT_EXCEEDED`: the limits and what remains of them).
    pub details: Vec<(&'static str, String)>,
}

impl DomainError {
    /// A refusal with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// The same refusal with one more `extensions` entry.
    #[must_use]
    pub fn with_detail(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.details.push((key, value.into()));
        self
    }

    /// `BAD_USER_INPUT` with a message naming what is wrong.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }

    /// `NOT_FOUND` for the named kind of object.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// `FORBIDDEN` with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `ACCOUNT_CLOSED`: nothing more can be done with this account.
    pub fn account_closed() -> Self {
        Self::new(ErrorCode::AccountClosed, "this account is closed")
    }

    /// `UNAUTHENTICATED` with a message.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{s}");
        }
        assert_eq!(seen.len(), 23);
    }
}
