//! The card payment provider's HTTP API (Stripe-style): payment intents for
//! deposits, payouts for withdrawals, refunds of deposits. Form-encoded requests with the secret key as a bearer token and
//! an `Idempotency-Key`, so a retried request never creates a second intent.

use reqwest::StatusCode;
use serde::Deserialize;

use super::ProviderError;
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

/// A payout as the provider answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderPayout {
    /// `po_...`.
    pub id: String,
}

/// A refund as the provider answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderRefund {
    /// `re_...`.
    pub id: String,
}

impl PaymentsClient {
    /// Pays `amount_minor` cents out to `destination`, once per withdrawal
    /// (the idempotency key is the withdrawal's id).
    pub async fn create_payout(
        &self,
        transaction_id: uuid::Uuid,
        amount_minor: i64,
        currency: domain::Currency,
        destination: &str,
    ) -> Result<ProviderPayout, ProviderError> {
        let form = [
            ("amount", amount_minor.to_string()),
            ("currency", currency.code().to_ascii_lowercase()),
            ("destination", destination.to_owned()),
            ("metadata[transaction_id]", transaction_id.to_string()),
        ];
        self.post("/v1/payouts", &format!("payout:{transaction_id}"), &form)
            .await
    }

    /// Refunds `amount_minor` cents of a payment intent, once per refund
    /// (the idempotency key is the refund's transaction id, which the
    /// refund's metadata carries back in its webhooks).
    pub async fn create_refund(
        &self,
        transaction_id: uuid::Uuid,
        payment_intent: &str,
        amount_minor: i64,
    ) -> Result<ProviderRefund, ProviderError> {
        let form = [
            ("payment_intent", payment_intent.to_owned()),
            ("amount", amount_minor.to_string()),
            ("metadata[transaction_id]", transaction_id.to_string()),
        ];
        self.post("/v1/refunds", &format!("refund:{transaction_id}"), &form)
            .await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        idempotency_key: &str,
        form: &[(&str, String)],
    ) -> Result<T, ProviderError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.provider.base_url))
            .bearer_auth(&self.provider.api_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(ProviderError::unreachable)?;
        let status = resp.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::Unavailable(format!("answered {status}")));
        }
        if !status.is_success() {
            tracing::warn!(%status, path, "payment provider refused a request");
            return Err(ProviderError::Refused { status });
        }
        resp.json()
            .await
            .map_err(|e| ProviderError::Protocol(e.to_string()))
    }

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
        self.post("/v1/payment_intents", idempotency_key, &form)
            .await
    }
}
