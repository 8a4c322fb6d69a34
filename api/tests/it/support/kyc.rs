//! A local server speaking the KYC provider's (Sumsub-style) API, for the
//! KYC tests, and a client that signs webhooks as the provider does.
//!
//! Every request must carry `X-App-Token`, `X-App-Access-Ts` (seconds, within
//! a minute) and `X-App-Access-Sig`, the hex HMAC-SHA256 under the secret key
//! of timestamp + method + path with query + body; anything else is answered
//! 401 and counted. Routes:
//! - `POST /resources/applicants?levelName=...`: creates an applicant (409
//!   when the external user id has one);
//! - `GET /resources/applicants/-;externalUserId={id}/one`: finds it;
//! - `PATCH /resources/applicants/{id}/fixedInfo`: replaces its data;
//! - `POST /resources/accessTokens/sdk`: an SDK access token.
//!
//! A test can script outages: the next N requests answer a given status.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

pub const APP_TOKEN: &str = "sbx:test-app-token";
pub const SECRET_KEY: &str = "test-secret-key-of-the-provider";
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
pub const LEVEL: &str = "basic-kyc-level";

/// One applicant the provider holds.
#[derive(Debug, Clone)]
pub struct Applicant {
    pub id: String,
    pub external_user_id: String,
    pub fixed_info: Value,
}

#[derive(Default)]
struct Inner {
    applicants: Vec<Applicant>,
    tokens: HashMap<String, String>,
    bad_signatures: usize,
    signed_requests: usize,
    script: Vec<Option<u16>>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

/// A running fake provider.
pub struct FakeKyc {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeKyc {
    pub async fn start() -> FakeKyc {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared::default();
        let app = Router::new()
            .route("/resources/applicants", post(create_applicant))
            .route("/resources/applicants/{selector}/one", get(find_applicant))
            .route("/resources/applicants/{id}/fixedInfo", patch(update_info))
            .route("/resources/accessTokens/sdk", post(access_token))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKyc { addr, shared }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The settings that point the server here.
    pub fn configure(&self, settings: &mut api::config::Settings) {
        settings.kyc.provider = Some(api::config::kyc::KycProvider {
            base_url: self.base_url(),
            app_token: APP_TOKEN.to_owned(),
            secret_key: SECRET_KEY.to_owned(),
            timeout: std::time::Duration::from_secs(5),
        });
        settings.kyc.webhook_secret = Some(WEBHOOK_SECRET.to_owned());
    }

    /// The next requests, in order: `None` is served, `Some(status)` answered
    /// with that status.
    pub fn script(&self, replies: &[Option<u16>]) {
        self.shared.0.lock().expect("state").script = replies.to_vec();
    }

    pub fn applicants(&self) -> Vec<Applicant> {
        self.shared.0.lock().expect("state").applicants.clone()
    }

    pub fn applicant_of(&self, user_id: &str) -> Applicant {
        self.applicants()
            .into_iter()
            .find(|a| a.external_user_id == user_id)
            .expect("applicant of the user")
    }

    /// Requests that passed and failed the signature check.
    pub fn signatures(&self) -> (usize, usize) {
        let inner = self.shared.0.lock().expect("state");
        (inner.signed_requests, inner.bad_signatures)
    }

    /// Whether this SDK token was issued for the external user id.
    pub fn token_is_for(&self, token: &str, user_id: &str) -> bool {
        self.shared
            .0
            .lock()
            .expect("state")
            .tokens
            .get(token)
            .is_some_and(|u| u == user_id)
    }
}

fn hex_hmac_sha256(key: &str, data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the request signature and the scripted outage; `Some` is the refusal.
fn admit(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let mut inner = shared.0.lock().expect("state");
    if let Some(status) = (!inner.script.is_empty())
        .then(|| inner.script.remove(0))
        .flatten()
    {
        return Some(
            (
                StatusCode::from_u16(status).expect("status"),
                Json(json!({ "description": "scripted outage", "code": status })),
            )
                .into_response(),
        );
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ts = header("x-app-access-ts").unwrap_or_default();
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() <= 60);
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    let mut signed = format!("{ts}{}{path}", method.as_str()).into_bytes();
    signed.extend_from_slice(body);
    let expected = hex_hmac_sha256(SECRET_KEY, &signed);
    if header("x-app-token") != Some(APP_TOKEN)
        || !fresh
        || header("x-app-access-sig") != Some(expected.as_str())
    {
        inner.bad_signatures += 1;
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "description": "Request signature mismatch", "code": 401 })),
            )
                .into_response(),
        );
    }
    inner.signed_requests += 1;
    None
}

fn applicant_json(a: &Applicant) -> Value {
    json!({
        "id": a.id,
        "createdAt": "2026-12-01 10:00:00",
        "externalUserId": a.external_user_id,
        "fixedInfo": a.fixed_info,
        "review": { "reviewStatus": "init" },
        "type": "individual",
    })
}

async fn create_applicant(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = admit(&shared, &method, &uri, &headers, &body) {
        return answer;
    }
    if !uri.query().unwrap_or_default().contains("levelName=") {
        return (StatusCode::BAD_REQUEST, "levelName is required").into_response();
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    let Some(external) = input["externalUserId"].as_str() else {
        return (StatusCode::BAD_REQUEST, "externalUserId is required").into_response();
    };
    let mut inner = shared.0.lock().expect("state");
    if inner
        .applicants
        .iter()
        .any(|a| a.external_user_id == external)
    {
        return (
            StatusCode::CONFLICT,
            Json(json!({ "description": format!("Applicant with external user id '{external}' already exists"), "code": 409 })),
        )
            .into_response();
    }
    let applicant = Applicant {
        id: hex::encode(rand::random::<[u8; 12]>()),
        external_user_id: external.to_owned(),
        fixed_info: input["fixedInfo"].clone(),
    };
    inner.applicants.push(applicant.clone());
    (StatusCode::CREATED, Json(applicant_json(&applicant))).into_response()
}

async fn find_applicant(
    State(shared): State<Shared>,
    Path(selector): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(answer) = admit(&shared, &method, &uri, &headers, b"") {
        return answer;
    }
    let external = selector.trim_start_matches("-;externalUserId=");
    let inner = shared.0.lock().expect("state");
    match inner
        .applicants
        .iter()
        .find(|a| a.external_user_id == external)
    {
        Some(a) => Json(applicant_json(a)).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn update_info(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = admit(&shared, &method, &uri, &headers, &body) {
        return answer;
    }
    let Ok(info) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    let mut inner = shared.0.lock().expect("state");
    match inner.applicants.iter_mut().find(|a| a.id == id) {
        Some(a) => {
            a.fixed_info = info;
            Json(applicant_json(a)).into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn access_token(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(answer) = admit(&shared, &method, &uri, &headers, &body) {
        return answer;
    }
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    let (Some(user), Some(_level)) = (input["userId"].as_str(), input["levelName"].as_str()) else {
        return (StatusCode::BAD_REQUEST, "userId and levelName are required").into_response();
    };
    let token = format!("_act-sbx-{}", hex::encode(rand::random::<[u8; 16]>()));
    let mut inner = shared.0.lock().expect("state");
    inner.tokens.insert(token.clone(), user.to_owned());
    Json(json!({ "token": token, "userId": user })).into_response()
}

/// The digest algorithms of the webhook.
#[derive(Debug, Clone, Copy)]
pub enum Alg {
    Sha256,
    Sha512,
}

/// The provider's webhook signature of `body`: (digest header, algorithm header).
pub fn sign_webhook(body: &str, alg: Alg, secret: &str) -> (String, &'static str) {
    match alg {
        Alg::Sha256 => (hex_hmac_sha256(secret, body.as_bytes()), "HMAC_SHA256_HEX"),
        Alg::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(secret.as_bytes()).expect("key");
            mac.update(body.as_bytes());
            (hex::encode(mac.finalize().into_bytes()), "HMAC_SHA512_HEX")
        }
    }
}

/// A webhook body as the provider sends it. `created` is the event time,
/// `yyyy-MM-dd HH:mm:ss.SSS` in UTC.
pub fn event(
    applicant_id: &str,
    user_id: &str,
    kind: &str,
    created: &str,
    review: Value,
) -> String {
    let mut body = json!({
        "applicantId": applicant_id,
        "inspectionId": "insp-1",
        "correlationId": format!("req-{}", hex::encode(rand::random::<[u8; 8]>())),
        "externalUserId": user_id,
        "levelName": LEVEL,
        "type": kind,
        "sandboxMode": true,
        "reviewStatus": match kind {
            "applicantReviewed" => "completed",
            "applicantOnHold" => "onHold",
            "applicantReset" => "init",
            _ => "pending",
        },
        "createdAtMs": created,
        "clientId": "wallet",
    });
    if !review.is_null() {
        body["reviewResult"] = review;
    }
    body.to_string()
}
