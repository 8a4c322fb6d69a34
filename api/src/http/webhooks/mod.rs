//! Webhooks of outside providers: each checks the raw body's signature
//! before anything else, then applies a domain event once.
//!
//! - [`kyc`]: `POST /webhooks/kyc`, the KYC provider's reviews.
//! - [`payments`]: `POST /webhooks/payments`, the payment provider's intents.

pub mod kyc;
pub mod payments;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(crate) use super::HttpState;

/// A plain JSON answer: `{"error": message}`.
pub(crate) fn answer(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
