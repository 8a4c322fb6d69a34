//! `POST /webhooks/payments`: the payment provider's payment-intent and
//! payout and refund events (Stripe-style).
//!
//! `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">[,v1=...]`:
//! any `v1` may match any secret of `PAYMENTS_WEBHOOK_SECRET` (several are
//! sent while the provider rotates its secret), compared in constant time. A
//! missing or malformed header, or a timestamp further than
//! `PAYMENTS_WEBHOOK_TOLERANCE_SECS` from now (a replay), answers 400; no
//! matching signature 401; both change nothing. An authentic event answers
//! 200 once recorded in the payment log; a database failure 500, and the
//! provider retries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::Currency;
use domain::WithdrawalOutcome;
use domain::payments::IntentStatus;
use entity::store::deposits::{EventOutcome, PaymentEvent};
use entity::store::payouts::PayoutEvent;
use entity::store::reversals::RefundEvent;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{HttpState, answer};

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Intent,
}

/// The event's object: an intent, a payout or a refund.
#[derive(Deserialize)]
struct Intent {
    id: String,
    amount: i64,
    currency: String,
    /// A refund's status (`pending`, `succeeded`, `failed`, `canceled`).
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

/// Whether the header signs `body` under one of `secrets` within
/// `tolerance` of `now`: `Err` is the status and message to answer.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    tolerance_secs: i64,
    now: i64,
) -> Result<(), (StatusCode, &'static str)> {
    let header = header.ok_or((StatusCode::BAD_REQUEST, "missing Stripe-Signature"))?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or((StatusCode::BAD_REQUEST, "malformed Stripe-Signature"))?;
    if (now - t).abs() > tolerance_secs {
        return Err((
            StatusCode::BAD_REQUEST,
            "signature timestamp outside the tolerance",
        ));
    }
    let signed_ok = secrets.iter().any(|secret| {
        signatures.iter().any(|sig| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                return false;
            };
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            mac.verify_slice(sig).is_ok()
        })
    });
    if !signed_ok {
        return Err((StatusCode::UNAUTHORIZED, "invalid signature"));
    }
    Ok(())
}

/// The handler.
pub async fn payments(State(http): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let state = &http.app;
    let settings = &state.settings.payments;
    if settings.webhook_secrets.is_empty() {
        return answer(StatusCode::NOT_FOUND, "no payment provider is configured");
    }
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    let tolerance = i64::try_from(settings.webhook_tolerance.as_secs()).unwrap_or(i64::MAX);
    if let Err((status, why)) = verify(
        header,
        &body,
        &settings.webhook_secrets,
        tolerance,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(reason = why, "payment webhook refused");
        return answer(status, why);
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not a payment event");
    };
    if event.id.len() > 64 || event.data.object.id.len() > 64 {
        return answer(StatusCode::BAD_REQUEST, "ids are too long");
    }
    let Some(created_at) = chrono::DateTime::from_timestamp(event.created, 0) else {
        return answer(StatusCode::BAD_REQUEST, "created is malformed");
    };
    let payout = match event.kind.as_str() {
        "payout.paid" => Some(WithdrawalOutcome::Completed),
        "payout.failed" | "payout.canceled" => Some(WithdrawalOutcome::Failed),
        _ => None,
    };
    if let Some(outcome) = payout {
        let parsed = PayoutEvent {
            event_id: event.id,
            event_type: event.kind.clone(),
            created_at,
            transaction_id: event
                .data
                .object
                .metadata
                .get("transaction_id")
                .and_then(|t| t.parse().ok()),
            payout_id: event.data.object.id,
            outcome,
        };
        return respond(
            &event.kind,
            entity::store::payouts::apply_event(&state.db, parsed).await,
        );
    }
    if matches!(
        event.kind.as_str(),
        "refund.created" | "refund.updated" | "refund.failed" | "charge.refund.updated"
    ) {
        let object = event.data.object;
        let succeeded = match object.status.as_deref() {
            Some("succeeded") => Some(true),
            Some("failed" | "canceled") => Some(false),
            _ => None,
        };
        let parsed = RefundEvent {
            event_id: event.id,
            event_type: event.kind.clone(),
            created_at,
            refund_id: object.id,
            transaction_id: object
                .metadata
                .get("transaction_id")
                .and_then(|t| t.parse().ok()),
            succeeded,
        };
        return respond(
            &event.kind,
            entity::store::reversals::apply_event(&state.db, parsed).await,
        );
    }
    let Some(status) = IntentStatus::of_event(&event.kind) else {
        return (StatusCode::OK, Json(json!({ "outcome": "IGNORED" }))).into_response();
    };
    let Ok(currency) = Currency::parse(&event.data.object.currency.to_ascii_uppercase()) else {
        return answer(StatusCode::BAD_REQUEST, "currency is malformed");
    };
    let parsed = PaymentEvent {
        event_id: event.id,
        event_type: event.kind.clone(),
        created_at,
        intent_id: event.data.object.id,
        status,
        amount_minor: event.data.object.amount,
        currency,
    };
    respond(
        &event.kind,
        entity::store::deposits::apply_event(&state.db, parsed).await,
    )
}

fn respond(kind: &str, applied: entity::StoreResult<EventOutcome>) -> Response {
    match applied {
        Ok(outcome) => {
            tracing::info!(outcome = outcome.as_str(), kind, "payment webhook");
            (StatusCode::OK, Json(json!({ "outcome": outcome.as_str() }))).into_response()
        }
        Err(err) => {
            tracing::error!(error = %err, "payment webhook could not be recorded; the provider will retry");
            answer(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_timestamps_and_rotation() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec![
            "whsec_new_0123456789".to_owned(),
            "whsec_old_0123456789".to_owned(),
        ];
        let now = 1_800_000_000;
        let good = format!("t={now},v1={}", sign("whsec_old_0123456789", now, body));
        assert!(verify(Some(&good), body, &secrets, 300, now).is_ok());
        let rotating = format!(
            "t={now},v1={},v1={}",
            sign("whsec_unknown_000000", now, body),
            sign("whsec_new_0123456789", now, body)
        );
        assert!(verify(Some(&rotating), body, &secrets, 300, now).is_ok());
        assert_eq!(
            verify(Some(&good), body, &secrets, 300, now + 301).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            verify(Some(&good), b"{}", &secrets, 300, now).map_err(|e| e.0),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            verify(None, body, &secrets, 300, now).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            verify(Some("v1=00"), body, &secrets, 300, now).map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
    }
}
