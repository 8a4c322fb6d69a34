//! `POST /webhooks/kyc`: the KYC provider's review events.
//!
//! The raw body is authenticated first: `X-Payload-Digest` is the hex HMAC of
//! the body under `KYC_WEBHOOK_SECRET`, with `X-Payload-Digest-Alg` naming
//! the hash (`HMAC_SHA256_HEX` or `HMAC_SHA512_HEX`), compared in constant
//! time. A missing or wrong signature answers 401 and changes nothing; a body
//! that is not a provider event answers 400; anything authentic answers 200
//! once it is recorded (applied, or seen as a repeat, stale or for an
//! unknown applicant), so the provider stops sending it. A database failure
//! answers 500 and the provider retries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use domain::kyc::{ProviderReview, RejectType};
use entity::store::kyc::ProviderEvent;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256, Sha512};

use super::{HttpState, answer};

/// The event as the provider sends it (fields we use).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    applicant_id: String,
    #[serde(rename = "type")]
    kind: String,
    level_name: Option<String>,
    review_result: Option<ReviewResult>,
    created_at_ms: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewResult {
    review_answer: Option<String>,
    review_reject_type: Option<String>,
    #[serde(default)]
    reject_labels: Vec<String>,
    client_comment: Option<String>,
}

/// Whether `digest` (hex) is the HMAC of `body` under `secret` with `alg`.
pub fn signature_valid(secret: &[u8], alg: &str, digest: &str, body: &[u8]) -> bool {
    let Ok(digest) = hex::decode(digest.trim()) else {
        return false;
    };
    match alg.trim() {
        "HMAC_SHA256_HEX" => Hmac::<Sha256>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(body);
                mac.verify_slice(&digest).is_ok()
            })
            .unwrap_or(false),
        "HMAC_SHA512_HEX" => Hmac::<Sha512>::new_from_slice(secret)
            .map(|mut mac| {
                mac.update(body);
                mac.verify_slice(&digest).is_ok()
            })
            .unwrap_or(false),
        _ => false,
    }
}

/// `yyyy-MM-dd HH:mm:ss[.SSS]` in UTC (the provider's form), or RFC 3339.
fn event_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
        .map(|t| t.and_utc())
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
}

fn review_of(payload: &Payload) -> Result<ProviderReview, &'static str> {
    Ok(match payload.kind.as_str() {
        "applicantPending" => ProviderReview::Pending,
        "applicantOnHold" => ProviderReview::OnHold,
        "applicantReset" => ProviderReview::Reset,
        "applicantReviewed" => {
            let result = payload
                .review_result
                .as_ref()
                .ok_or("applicantReviewed without reviewResult")?;
            match result.review_answer.as_deref() {
                Some("GREEN") => ProviderReview::Green,
                Some("RED") => {
                    // Anything but an explicit RETRY is final.
                    let reject = match result.review_reject_type.as_deref() {
                        Some("RETRY") => RejectType::Retry,
                        _ => RejectType::Final,
                    };
                    let reason = result
                        .client_comment
                        .clone()
                        .filter(|c| !c.trim().is_empty())
                        .or_else(|| {
                            (!result.reject_labels.is_empty())
                                .then(|| result.reject_labels.join(", "))
                        });
                    ProviderReview::Red { reject, reason }
                }
                _ => return Err("reviewAnswer must be GREEN or RED"),
            }
        }
        _ => ProviderReview::Other,
    })
}

/// The handler.
pub async fn kyc(State(http): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let state = &http.app;
    let Some(secret) = state.settings.kyc.webhook_secret.as_deref() else {
        return answer(StatusCode::NOT_FOUND, "no KYC provider is configured");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(digest), Some(alg)) = (header("x-payload-digest"), header("x-payload-digest-alg"))
    else {
        tracing::warn!("KYC webhook without a signature refused");
        return answer(StatusCode::UNAUTHORIZED, "missing signature");
    };
    if !signature_valid(secret.as_bytes(), alg, digest, &body) {
        tracing::warn!("KYC webhook with a wrong signature refused");
        return answer(StatusCode::UNAUTHORIZED, "invalid signature");
    }
    let Ok(payload) = serde_json::from_slice::<Payload>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "the body is not a KYC provider event",
        );
    };
    if payload.applicant_id.is_empty() || payload.applicant_id.len() > 64 || payload.kind.len() > 48
    {
        return answer(StatusCode::BAD_REQUEST, "applicantId or type is malformed");
    }
    let Some(created_at) = payload
        .created_at_ms
        .as_deref()
        .or(payload.created_at.as_deref())
        .and_then(event_time)
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            "createdAtMs is missing or malformed",
        );
    };
    let review = match review_of(&payload) {
        Ok(review) => review,
        Err(why) => return answer(StatusCode::BAD_REQUEST, why),
    };
    let kyc = &state.settings.kyc;
    let tier = payload
        .level_name
        .as_deref()
        .and_then(|name| kyc.level_tiers.get(name).copied())
        .unwrap_or_else(|| {
            tracing::warn!(level = ?payload.level_name, "KYC level without a configured tier: tier 1");
            1
        });
    let event = ProviderEvent {
        digest: hex::encode(Sha256::digest(&body)),
        applicant_id: payload.applicant_id.clone(),
        event_type: payload.kind.clone(),
        created_at,
        review,
        tier,
    };
    match entity::store::kyc::apply_provider_event(&state.db, event).await {
        Ok(outcome) => {
            tracing::info!(outcome = outcome.as_str(), kind = %payload.kind, "KYC webhook");
            (StatusCode::OK, Json(json!({ "outcome": outcome.as_str() }))).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "KYC webhook could not be recorded; the provider will retry");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_per_algorithm() {
        let body = br#"{"applicantId":"a"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(signature_valid(b"secret", "HMAC_SHA256_HEX", &good, body));
        assert!(!signature_valid(b"secret", "HMAC_SHA512_HEX", &good, body));
        assert!(!signature_valid(b"other", "HMAC_SHA256_HEX", &good, body));
        assert!(!signature_valid(b"secret", "HMAC_SHA1_HEX", &good, body));
        assert!(!signature_valid(b"secret", "HMAC_SHA256_HEX", "zz", body));
        assert!(!signature_valid(b"secret", "HMAC_SHA256_HEX", &good, b"{}"));
    }

    #[test]
    fn event_times_in_the_providers_form() {
        let t = event_time("2026-12-01 13:23:19.321").expect("parses");
        assert_eq!(t.to_rfc3339(), "2026-12-01T13:23:19.321+00:00");
        assert!(event_time("2026-12-01T13:23:19Z").is_some());
        assert!(event_time("yesterday").is_none());
    }
}
