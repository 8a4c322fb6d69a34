//! Clients of outside providers, each behind a configurable base URL, and
//! how their failures reach the API.

pub mod kyc;
pub mod payments;
pub mod rates;

use domain::{DomainError, ErrorCode};
use reqwest::StatusCode;

use crate::error::ApiError;

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Down, slow or overloaded: retry later.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the request.
    #[error("the provider refused the request with {status}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from the provider: {0}")]
    Protocol(String),
}

impl ProviderError {
    /// A request that never got an answer (refused, timed out, cut off).
    pub fn unreachable(e: reqwest::Error) -> Self {
        ProviderError::Unavailable(
            if e.is_timeout() {
                "timed out"
            } else {
                "could not connect"
            }
            .to_owned(),
        )
    }
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Unavailable(why) => {
                tracing::warn!(reason = %why, "provider unavailable");
                DomainError::new(
                    ErrorCode::ProviderUnavailable,
                    "the provider is unavailable; nothing was saved, try again in a moment",
                )
                .into()
            }
            ProviderError::Refused { status } if status.as_u16() == 400 => DomainError::bad_input(
                "the provider refused these details; check them and try again",
            )
            .into(),
            other => ApiError::internal(other),
        }
    }
}
