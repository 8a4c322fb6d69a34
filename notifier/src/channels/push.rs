//! Push through Firebase Cloud Messaging HTTP v1:
//! `POST {FCM_BASE_URL}/v1/projects/{project}/messages:send` with an OAuth2
//! bearer token minted from a Google service account (the JWT-bearer grant:
//! an RS256 assertion signed with the account's key, posted to its token
//! endpoint), cached until a minute before it expires.
//!
//! Answers: 200 is sent; `UNREGISTERED` (or 404) means the app was removed
//! from the device: the device is forgotten and the delivery ends; 429 and
//! 5xx are retried, not before their `Retry-After`; one 401 refreshes the
//! token and sends again once; other 4xx are permanent.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use entity::store::deliveries::DeliveryRecord;
use entity::store::preferences;
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{Channel, Delivered, SendError, database};
use crate::templates::Rendered;

/// The OAuth2 scope of FCM sends.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// How to reach FCM.
#[derive(Debug, Clone)]
pub struct FcmSettings {
    /// `FCM_SERVICE_ACCOUNT_FILE`: the service-account JSON key.
    pub service_account_file: PathBuf,
    /// `FCM_PROJECT_ID`; the service account's `project_id` when `None`.
    pub project_id: Option<String>,
    /// `FCM_BASE_URL`, `https://fcm.googleapis.com` by default.
    pub base_url: String,
    /// `FCM_TOKEN_URL`; the service account's `token_uri` when `None`.
    pub token_url: Option<String>,
    /// `FCM_TIMEOUT_SECS`: longest request.
    pub timeout: Duration,
}

/// The fields of a Google service-account key file this channel uses.
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    token_uri: String,
    #[serde(default)]
    project_id: Option<String>,
}

/// What was read from the settings and the key file, checked.
struct Account {
    client_email: String,
    key: jsonwebtoken::EncodingKey,
    key_id: Option<String>,
    token_url: String,
    send_url: String,
}

impl FcmSettings {
    /// Reads and checks the key file as the server starts; errors name the
    /// variable and never echo the key.
    fn account(&self) -> anyhow::Result<Account> {
        let var = "FCM_SERVICE_ACCOUNT_FILE";
        let text = std::fs::read_to_string(&self.service_account_file).with_context(|| {
            format!("{var}: cannot read {}", self.service_account_file.display())
        })?;
        let sa: ServiceAccount = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{var}: {} is not a Google service-account key (client_email, private_key, token_uri): {}",
                self.service_account_file.display(),
                e.classify_message()
            )
        })?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(sa.private_key.as_bytes())
            .map_err(|_| anyhow::anyhow!("{var}: private_key is not an RSA private key in PEM"))?;
        let project = self.project_id.clone().or(sa.project_id).ok_or_else(|| {
            anyhow::anyhow!("FCM_PROJECT_ID is required: {var} names no project_id")
        })?;
        if project.is_empty()
            || !project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            anyhow::bail!("FCM_PROJECT_ID={project:?} is not a Firebase project id");
        }
        let token_url = self.token_url.clone().unwrap_or(sa.token_uri);
        url::Url::parse(&token_url)
            .with_context(|| format!("the token URL {token_url:?} (FCM_TOKEN_URL or token_uri)"))?;
        let base = self.base_url.trim_end_matches('/');
        url::Url::parse(base).with_context(|| format!("FCM_BASE_URL={base:?}"))?;
        Ok(Account {
            client_email: sa.client_email,
            key,
            key_id: sa.private_key_id,
            token_url,
            send_url: format!("{base}/v1/projects/{project}/messages:send"),
        })
    }

    /// Checks the settings and the key file.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.account().map(|_| ())
    }
}

trait ClassifyMessage {
    fn classify_message(&self) -> &'static str;
}

impl ClassifyMessage for serde_json::Error {
    /// What kind of problem, without quoting the file (it holds the key).
    fn classify_message(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not JSON",
            serde_json::error::Category::Data => "a field is missing or of the wrong type",
        }
    }
}

/// A cached access token.
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// The push channel.
pub struct Push {
    db: DatabaseConnection,
    http: reqwest::Client,
    account: Account,
    token: Mutex<Option<Cached>>,
}

/// What FCM's error body says.
#[derive(Deserialize)]
struct FcmErrorBody {
    error: FcmError,
}

#[derive(Deserialize)]
struct FcmError {
    #[serde(default)]
    details: Vec<Value>,
}

impl Push {
    /// Builds the channel (no request is made yet).
    pub fn new(db: DatabaseConnection, settings: &FcmSettings) -> anyhow::Result<Self> {
        let account = settings.account()?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .context("building the FCM HTTP client")?;
        Ok(Self {
            db,
            http,
            account,
            token: Mutex::new(None),
        })
    }

    /// The cached token, or a new one when it is due (or `refresh`).
    async fn access_token(&self, refresh: bool) -> Result<String, SendError> {
        let mut cached = self.token.lock().await;
        if !refresh
            && let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let fresh = self.mint().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// The OAuth2 JWT-bearer grant (RFC 7523) with the service account.
    async fn mint(&self) -> Result<Cached, SendError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.account.key_id.clone();
        let claims = Claims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_url,
            iat: now,
            exp: now + 3600,
        };
        let assertion =
            jsonwebtoken::encode(&header, &claims, &self.account.key).map_err(|_| {
                SendError::Permanent("signing the service-account assertion failed".into())
            })?;
        let asked = Instant::now();
        let resp = self
            .http
            .post(&self.account.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| {
                SendError::retry(format!("FCM token endpoint unreachable: {}", kind_of(&e)))
            })?;
        let status = resp.status();
        if !status.is_success() {
            let after = retry_after(resp.headers());
            return Err(SendError::Retry {
                reason: format!("FCM token endpoint answered {}", status.as_u16()),
                after,
            });
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|_| SendError::retry("FCM token endpoint answered no access token"))?;
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(3600));
        Ok(Cached {
            token: body.access_token,
            // Renewed a minute early (or at half-life for short tokens).
            refresh_at: asked
                + lifetime
                    .saturating_sub(Duration::from_secs(60))
                    .max(lifetime / 2),
        })
    }

    async fn send_once(
        &self,
        token: &str,
        message: &Value,
    ) -> Result<reqwest::Response, SendError> {
        self.http
            .post(&self.account.send_url)
            .bearer_auth(token)
            .json(message)
            .send()
            .await
            .map_err(|e| SendError::retry(format!("FCM unreachable: {}", kind_of(&e))))
    }
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// Whether an FCM error body says the token is no longer registered.
fn is_unregistered(body: &str) -> bool {
    // A wrong project or URL is a 404 NOT_FOUND too: only FCM's
    // UNREGISTERED error code says the token itself is gone.
    serde_json::from_str::<FcmErrorBody>(body).is_ok_and(|b| {
        b.error
            .details
            .iter()
            .any(|d| d["errorCode"] == "UNREGISTERED")
    })
}

#[async_trait::async_trait]
impl Channel for Push {
    fn kind(&self) -> domain::notify::Channel {
        domain::notify::Channel::Push
    }

    async fn deliver(
        &self,
        delivery: &DeliveryRecord,
        message: &Rendered,
    ) -> Result<Delivered, SendError> {
        let device_id = Uuid::parse_str(&delivery.target)
            .map_err(|_| SendError::Permanent("the push target is not a device id".into()))?;
        let device = preferences::device(&self.db, device_id)
            .await
            .map_err(|e| database(&e))?
            .ok_or_else(|| SendError::TargetGone("the device is no longer registered".into()))?;
        // Data values must be strings in FCM.
        let mut data = serde_json::Map::new();
        data.insert("kind".into(), message.kind.into());
        data.insert("deliveryId".into(), delivery.id.to_string().into());
        data.insert("eventId".into(), delivery.event_id.to_string().into());
        if let Some(obj) = message.data.as_object() {
            for (k, v) in obj {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                data.insert(k.clone(), text.into());
            }
        }
        let body = json!({
            "message": {
                "token": device.token,
                "notification": { "title": message.title, "body": message.text },
                "data": data,
            }
        });
        let mut refreshed = false;
        loop {
            let token = self.access_token(refreshed).await?;
            let resp = self.send_once(&token, &body).await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(Delivered::Accepted);
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                // The token was revoked or expired early: one fresh one.
                refreshed = true;
                continue;
            }
            let after = retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            // Only FCM's own answer removes a device: a bare 404 (a wrong
            // FCM_BASE_URL, a proxy) must not wipe everyone's devices.
            if is_unregistered(&text) {
                preferences::forget_device(&self.db, device.id)
                    .await
                    .map_err(|e| database(&e))?;
                tracing::info!(device.id = %device.id, "FCM says the device is unregistered; forgotten");
                return Err(SendError::TargetGone(
                    "FCM: the device is unregistered".into(),
                ));
            }
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
                || status == reqwest::StatusCode::UNAUTHORIZED
            {
                return Err(SendError::Retry {
                    reason: format!("FCM answered {}", status.as_u16()),
                    after,
                });
            }
            return Err(SendError::Permanent(format!(
                "FCM refused the message ({})",
                status.as_u16()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unregistered_tokens_are_recognised_in_fcm_error_bodies() {
        let body = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
            "details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert!(is_unregistered(body));
        let bad = r#"{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"errorCode":"INVALID_ARGUMENT"}]}}"#;
        assert!(!is_unregistered(bad));
        let wrong_project = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND"}}"#;
        assert!(
            !is_unregistered(wrong_project),
            "a wrong project must not remove devices"
        );
        assert!(!is_unregistered("not json"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2".parse().expect("header"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(reqwest::header::RETRY_AFTER, later.parse().expect("header"));
        let got = retry_after(&h).expect("date");
        assert!(
            got > Duration::from_secs(25) && got <= Duration::from_secs(30),
            "{got:?}"
        );
        h.insert(
            reqwest::header::RETRY_AFTER,
            "soon".parse().expect("header"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
