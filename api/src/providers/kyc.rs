//! The KYC provider's HTTP API (Sumsub-style): create an applicant, update
//! its data, issue an access token for the provider's web or mobile SDK.
//!
//! Every request is signed: `X-App-Token`, `X-App-Access-Ts` (Unix seconds)
//! and `X-App-Access-Sig`, the hex HMAC-SHA256 under the secret key of
//! timestamp + method + path with query + body. Connection failures, time-outs,
//! 429 and 5xx are `Unavailable` (safe to retry); other refusals are
//! `Refused` with the status; their body is neither logged nor shown.

use std::time::Duration;

use domain::kyc::Applicant;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::ProviderError;
use crate::config::kyc::KycProvider;

/// A configured provider client.
#[derive(Clone, Debug)]
pub struct KycClient {
    http: reqwest::Client,
    provider: KycProvider,
}

/// Lifetime asked for SDK access tokens.
const TOKEN_TTL_SECS: u64 = 1800;

#[derive(Deserialize)]
struct ApplicantReply {
    id: String,
}

#[derive(Deserialize)]
struct TokenReply {
    token: String,
}

impl KycClient {
    /// A client with the provider's time-out.
    pub fn new(provider: KycProvider) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(provider.timeout)
            .connect_timeout(provider.timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self { http, provider })
    }

    /// The provider's applicant for our user at `level`: created, or (when
    /// it exists from an earlier attempt that did not finish here) found.
    pub async fn create_applicant(
        &self,
        external_user_id: &str,
        level: &str,
        applicant: &Applicant,
    ) -> Result<String, ProviderError> {
        let body = json!({
            "externalUserId": external_user_id,
            "fixedInfo": fixed_info(applicant),
        });
        let path = format!("/resources/applicants?levelName={}", encode(level));
        match self.call(Method::POST, &path, Some(&body)).await {
            Ok(reply) => Ok(parse::<ApplicantReply>(reply)?.id),
            Err(ProviderError::Refused {
                status: StatusCode::CONFLICT,
            }) => self.find_applicant(external_user_id).await,
            Err(e) => Err(e),
        }
    }

    /// The applicant of our user.
    pub async fn find_applicant(&self, external_user_id: &str) -> Result<String, ProviderError> {
        let path = format!(
            "/resources/applicants/-;externalUserId={}/one",
            encode(external_user_id)
        );
        let reply = self.call(Method::GET, &path, None).await?;
        Ok(parse::<ApplicantReply>(reply)?.id)
    }

    /// Replaces an applicant's data (a resubmission).
    pub async fn update_applicant(
        &self,
        applicant_id: &str,
        applicant: &Applicant,
    ) -> Result<(), ProviderError> {
        let path = format!("/resources/applicants/{}/fixedInfo", encode(applicant_id));
        self.call(Method::PATCH, &path, Some(&fixed_info(applicant)))
            .await?;
        Ok(())
    }

    /// An access token the provider's SDK opens the verification with.
    pub async fn access_token(
        &self,
        external_user_id: &str,
        level: &str,
    ) -> Result<String, ProviderError> {
        let body = json!({
            "userId": external_user_id,
            "levelName": level,
            "ttlInSecs": TOKEN_TTL_SECS,
        });
        let reply = self
            .call(Method::POST, "/resources/accessTokens/sdk", Some(&body))
            .await?;
        Ok(parse::<TokenReply>(reply)?.token)
    }

    /// The signature of one request.
    pub fn signature(&self, ts: i64, method: &Method, path: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.provider.secret_key.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(ts.to_string().as_bytes());
        mac.update(method.as_str().as_bytes());
        mac.update(path.as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let ts = chrono::Utc::now().timestamp();
        let sig = self.signature(ts, &method, path, body.as_bytes());
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.provider.base_url))
            .header("X-App-Token", &self.provider.app_token)
            .header("X-App-Access-Ts", ts.to_string())
            .header("X-App-Access-Sig", sig)
            .header("Accept", "application/json");
        if !body.is_empty() {
            req = req
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        let resp = req.send().await.map_err(ProviderError::unreachable)?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|_| ProviderError::Unavailable("the answer broke off".to_owned()))?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Unavailable(format!("answered {status}")));
        }
        if !status.is_success() {
            // The provider's description may repeat what was sent (personal
            // data): only the status is logged.
            tracing::warn!(%status, %method, "KYC provider refused a request");
            return Err(ProviderError::Refused { status });
        }
        serde_json::from_str(&text).map_err(|_| ProviderError::Protocol("not JSON".to_owned()))
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ProviderError> {
    serde_json::from_value(value).map_err(|e| ProviderError::Protocol(e.to_string()))
}

/// Percent-encodes a path or query component.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The applicant's data as the provider's `fixedInfo`.
fn fixed_info(a: &Applicant) -> Value {
    json!({
        "firstName": a.first_name,
        "lastName": a.last_name,
        "dob": a.date_of_birth.format("%Y-%m-%d").to_string(),
        "country": a.country,
        "addresses": [{
            "street": a.address.street,
            "town": a.address.city,
            "postCode": a.address.postal_code,
            "country": a.address.country,
        }],
        "idDocs": [{
            "idDocType": a.document_type.as_str(),
            "country": a.country,
            "number": a.document_number,
        }],
    })
}
