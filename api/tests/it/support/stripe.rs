//! A local server speaking the payment provider's (Stripe-style) API for
//! the deposit tests, and the provider's side of its webhooks: events signed
//! as `Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 of "t.body">`.
//!
//! `POST /v1/payment_intents`, `/v1/payouts` and `/v1/refunds` take only the configured secret key as a
//! bearer token, and answers a repeated `Idempotency-Key` with the intent it
//! made the first time. A test can script outages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const API_KEY: &str = "sk_test_wallet_0123456789";
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// One intent the provider holds.
#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
}

/// One payout the provider made.
#[derive(Debug, Clone)]
pub struct Payout {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    /// Our withdrawal, from the metadata.
    pub transaction_id: String,
}

/// One refund the provider made.
#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub payment_intent: String,
    /// Our refund transaction, from the metadata.
    pub transaction_id: String,
}

#[derive(Default)]
struct Inner {
    refunds: Vec<Refund>,
    refund_keys: HashMap<String, String>,
    payouts: Vec<Payout>,
    payout_keys: HashMap<String, String>,
    intents: Vec<Intent>,
    by_key: HashMap<String, String>,
    script: Vec<u16>,
    unauthorized: usize,
}

impl Inner {
    /// A scripted failure, or 401 without the secret key; `None` to go on.
    fn gate(&mut self, headers: &HeaderMap) -> Option<Response> {
        if !self.script.is_empty() {
            let status = self.script.remove(0);
            return Some(
                StatusCode::from_u16(status)
                    .expect("status")
                    .into_response(),
            );
        }
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {API_KEY}"))
        {
            self.unauthorized += 1;
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        None
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

/// The request's `Idempotency-Key` (empty when absent).
fn idempotency_key(headers: &HeaderMap) -> String {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A running fake provider.
pub struct FakeStripe {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared::default();
        let app = axum::Router::new()
            .route("/v1/payment_intents", post(create))
            .route("/v1/payouts", post(payout))
            .route("/v1/refunds", post(refund))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeStripe { addr, shared }
    }

    pub fn configure(&self, settings: &mut api::config::Settings) {
        settings.payments.provider = Some(api::config::payments::PaymentsProvider {
            base_url: format!("http://{}", self.addr),
            api_key: API_KEY.to_owned(),
            timeout: std::time::Duration::from_secs(5),
        });
        settings.payments.webhook_secrets = vec![WEBHOOK_SECRET.to_owned()];
    }

    /// The next requests answer these statuses.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared.0.lock().expect("state").script = statuses.to_vec();
    }

    pub fn intents(&self) -> Vec<Intent> {
        self.shared.0.lock().expect("state").intents.clone()
    }

    /// Waits until the server submitted `n` payouts.
    pub async fn wait_for_payouts(&self, n: usize) -> Vec<Payout> {
        self.wait_for("payouts", n, |i| &i.payouts).await
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.shared.0.lock().expect("state").refunds.clone()
    }

    /// Waits until the server submitted `n` refunds.
    pub async fn wait_for_refunds(&self, n: usize) -> Vec<Refund> {
        self.wait_for("refunds", n, |i| &i.refunds).await
    }

    async fn wait_for<T: Clone + std::fmt::Debug>(
        &self,
        what: &str,
        n: usize,
        list: fn(&Inner) -> &Vec<T>,
    ) -> Vec<T> {
        let now = || list(&self.shared.0.lock().expect("state")).clone();
        for _ in 0..100 {
            let items = now();
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the server did not submit {n} {what}: {:?}", now());
    }

    pub fn unauthorized(&self) -> usize {
        self.shared.0.lock().expect("state").unauthorized
    }
}

async fn create(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.0.lock().expect("state");
    if !inner.script.is_empty() {
        let status = inner.script.remove(0);
        return (
            StatusCode::from_u16(status).expect("status"),
            Json(json!({ "error": { "message": "scripted" } })),
        )
            .into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {API_KEY}"))
    {
        inner.unauthorized += 1;
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": { "type": "invalid_request_error" } })),
        )
            .into_response();
    }
    let key = idempotency_key(&headers);
    let existing = inner.by_key.get(&key).cloned();
    let intent = match existing.and_then(|id| inner.intents.iter().find(|i| i.id == id).cloned()) {
        Some(intent) => intent,
        None => {
            let (Some(amount), Some(currency)) = (
                form.get("amount").and_then(|a| a.parse::<i64>().ok()),
                form.get("currency").cloned(),
            ) else {
                return (StatusCode::BAD_REQUEST, "amount and currency are required")
                    .into_response();
            };
            let intent = Intent {
                id: format!("pi_{}", hex::encode(rand::random::<[u8; 8]>())),
                amount,
                currency,
            };
            inner.intents.push(intent.clone());
            inner.by_key.insert(key, intent.id.clone());
            intent
        }
    };
    Json(json!({
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "currency": intent.currency,
        "status": "requires_payment_method",
        "client_secret": format!("{}_secret_{}", intent.id, "abc123"),
    }))
    .into_response()
}

async fn payout(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.0.lock().expect("state");
    if let Some(refusal) = inner.gate(&headers) {
        return refusal;
    }
    let key = idempotency_key(&headers);
    let id = match inner.payout_keys.get(&key) {
        Some(id) => id.clone(),
        None => {
            let payout = Payout {
                id: format!("po_{}", hex::encode(rand::random::<[u8; 8]>())),
                amount: form
                    .get("amount")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_default(),
                currency: form.get("currency").cloned().unwrap_or_default(),
                destination: form.get("destination").cloned().unwrap_or_default(),
                transaction_id: form
                    .get("metadata[transaction_id]")
                    .cloned()
                    .unwrap_or_default(),
            };
            inner.payout_keys.insert(key, payout.id.clone());
            inner.payouts.push(payout.clone());
            payout.id
        }
    };
    Json(json!({ "id": id, "object": "payout", "status": "pending" })).into_response()
}

async fn refund(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = shared.0.lock().expect("state");
    if let Some(refusal) = inner.gate(&headers) {
        return refusal;
    }
    let Some(pi) = form.get("payment_intent").cloned() else {
        return (StatusCode::BAD_REQUEST, "payment_intent is required").into_response();
    };
    let Some(intent) = inner.intents.iter().find(|i| i.id == pi).cloned() else {
        return (StatusCode::BAD_REQUEST, "no such payment_intent").into_response();
    };
    let amount: i64 = form
        .get("amount")
        .and_then(|a| a.parse().ok())
        .unwrap_or_default();
    let key = idempotency_key(&headers);
    let id = match inner.refund_keys.get(&key) {
        Some(id) => id.clone(),
        None => {
            let refunded: i64 = inner
                .refunds
                .iter()
                .filter(|r| r.payment_intent == pi)
                .map(|r| r.amount)
                .sum();
            if amount <= 0 || refunded + amount > intent.amount {
                return (
                    StatusCode::BAD_REQUEST,
                    "amount exceeds what can be refunded",
                )
                    .into_response();
            }
            let refund = Refund {
                id: format!("re_{}", hex::encode(rand::random::<[u8; 8]>())),
                amount,
                payment_intent: pi,
                transaction_id: form
                    .get("metadata[transaction_id]")
                    .cloned()
                    .unwrap_or_default(),
            };
            inner.refund_keys.insert(key, refund.id.clone());
            inner.refunds.push(refund.clone());
            refund.id
        }
    };
    Json(json!({ "id": id, "object": "refund", "status": "pending" })).into_response()
}

/// A refund event body with the refund's status.
pub fn refund_event(event_id: &str, refund: &Refund, status: &str, created: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": "refund.updated",
        "created": created,
        "data": { "object": {
            "id": refund.id,
            "object": "refund",
            "amount": refund.amount,
            "currency": "usd",
            "payment_intent": refund.payment_intent,
            "status": status,
            "metadata": { "transaction_id": refund.transaction_id },
        } },
    })
    .to_string()
}

/// A payout event body.
pub fn payout_event(event_id: &str, kind: &str, payout: &Payout, created: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": { "object": {
            "id": payout.id,
            "object": "payout",
            "amount": payout.amount,
            "currency": payout.currency,
            "status": kind.trim_start_matches("payout."),
            "metadata": { "transaction_id": payout.transaction_id },
        } },
    })
    .to_string()
}

/// An event body for an intent.
pub fn event(event_id: &str, kind: &str, intent: &Intent, created: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": kind,
        "created": created,
        "data": { "object": {
            "id": intent.id,
            "object": "payment_intent",
            "amount": intent.amount,
            "currency": intent.currency,
            "status": kind.trim_start_matches("payment_intent."),
        } },
    })
    .to_string()
}

/// The `Stripe-Signature` of `body` at `t` under `secrets` (one `v1` each).
pub fn signature(body: &str, t: i64, secrets: &[&str]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.{body}").as_bytes());
        header.push_str(&format!(",v1={}", hex::encode(mac.finalize().into_bytes())));
    }
    header
}

/// Posts a signed event to the server; returns the status and JSON answer.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    header: &str,
) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body.to_owned())
        .send()
        .await
        .expect("webhook");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
