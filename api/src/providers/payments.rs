//! The card payment provider's HTTP API (Stripe-style): payment intents for
//! deposits. Form-encoded requests with the secret key as a bearer token and
//! an `Idempotency-Key`, so a retried request never creates a second intent.

use reqwest::StatusCode;
use serde::Deserialize;

use super::kyc::ProviderError;
use crate::config::payments::PaymentsProvider;

/// A configured client.
#[derive(Clone, Debug)]
pub struct PaymentsClient {
    http: reqwest::Client,
    provider: PaymentsProvider,
}

/// An intent as the provider answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderIntent {
    /// `pi_...`.
    pub id: String,
    /// The provider's status (`requires_payment_method`, ...).
    pub status: String,
    /// What the app confirms it with.
    pub client_secret: Option<String>,
    /// Set when the customer must be redirected.
    #[serde(default)]
    pub next_action: Option<NextAction>,
}

/// What the customer must do next.
#[derive(Debug, Clone, Deserialize)]
pub struct NextAction {
    /// A redirect, for methods that need one.
    pub redirect_to_url: Option<RedirectToUrl>,
}

/// Where to send the customer.
#[derive(Debug, Clone, Deserialize)]
pub struct RedirectToUrl {
    /// The URL.
    pub url: String,
}

impl PaymentsClient {
    /// A client with the provider's time-out.
    pub fn new(provider: PaymentsProvider) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(provider.timeout)
            .build()?;
        Ok(Self { http, provider })
    }

    /// Creates a payment intent of `amount_minor` cents.
    pub async fn create_intent(
        &self,
        idempotency_key: &str,
        amount_minor: i64,
        currency: domain::Currency,
        deposit_id: uuid::Uuid,
    ) -> Result<ProviderIntent, ProviderError> {
        let form = [
            ("amount", amount_minor.to_string()),
            ("currency", currency.code().to_ascii_lowercase()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            ("metadata[deposit_id]", deposit_id.to_string()),
        ];
        let resp = self
            .http
            .post(format!("{}/v1/payment_intents", self.provider.base_url))
            .bearer_auth(&self.provider.api_key)
            .header("Idempotency-Key", idempotency_key)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Unavailable(
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "could not connect"
                    }
                    .to_owned(),
                )
            })?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Unavailable(format!("answered {status}")));
        }
        if !status.is_success() {
            tracing::warn!(%status, "payment provider refused to create an intent");
            return Err(ProviderError::Refused { status });
        }
        resp.json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))
    }
}
