//! Settings of payments beyond the wallet: the card payment provider and
//! its webhook, and currency exchange.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PAYMENTS_PROVIDER_BASE_URL` | unset: `startDeposit` answers `PROVIDER_UNAVAILABLE` | the payment provider's API (Stripe-style), e.g. `https://api.stripe.com` |
//! | `PAYMENTS_API_KEY` | required with the base URL | secret API key, sent as a bearer token |
//! | `PAYMENTS_WEBHOOK_SECRET` | required with the base URL | webhook signing secrets, comma-separated (the new one first while rotating) |
//! | `PAYMENTS_WEBHOOK_TOLERANCE_SECS` | `300` | a webhook signed longer ago than this is refused (replay) |
//! | `FX_RATES_URL` | development: a fixed table; production: unset turns exchange off | HTTP endpoint of exchange rates (`GET`, JSON `{"timestamp": <unix>, "prices": {"USD": "1", "EUR": "1.08", ...}}`, decimal strings) |
//! | `FX_RATES_MAX_AGE_SECS` | `300` | rates older than this are stale: no new quotes |
//! | `FX_FEE_BPS` | `50` | exchange fee in basis points of the amount (0.5 %) |
//! | `FX_QUOTE_TTL_SECS` | `30` | how long a quote can be used |
//! | `RISK_RULES` | built-in rules (README) | overrides of the risk rules: `key=value`, comma-separated (`hold=50`, `block=90`, `new_recipient.weight=30`, `large.USD=1000`, ...) |

use std::time::Duration;

use anyhow::{Context, bail};

use super::Env;

/// The card payment provider.
#[derive(Clone)]
pub struct PaymentsProvider {
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// Secret API key.
    pub api_key: String,
    /// Longest request.
    pub timeout: Duration,
}

impl std::fmt::Debug for PaymentsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsProvider")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The provider and its webhook.
#[derive(Clone)]
pub struct PaymentsSettings {
    /// The provider; `None` when not configured.
    pub provider: Option<PaymentsProvider>,
    /// Webhook signing secrets (any may match).
    pub webhook_secrets: Vec<String>,
    /// Largest age of a webhook signature.
    pub webhook_tolerance: Duration,
    /// The risk rules money leaving a wallet is scored by.
    pub risk: domain::risk::RiskRules,
}

impl std::fmt::Debug for PaymentsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentsSettings")
            .field("provider", &self.provider)
            .field("webhook_secrets", &self.webhook_secrets.len())
            .finish_non_exhaustive()
    }
}

impl PaymentsSettings {
    pub(super) fn read(env: &Env<'_>, production: bool) -> anyhow::Result<Self> {
        let provider = match env.var("PAYMENTS_PROVIDER_BASE_URL") {
            None => {
                if env.var("PAYMENTS_API_KEY").is_some() {
                    bail!("PAYMENTS_API_KEY is set but PAYMENTS_PROVIDER_BASE_URL is not");
                }
                None
            }
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                let parsed = url::Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .with_context(|| {
                        format!("PAYMENTS_PROVIDER_BASE_URL={url:?} is not an http(s) URL")
                    })?;
                if production && parsed.scheme() != "https" {
                    bail!("PAYMENTS_PROVIDER_BASE_URL must be an https:// URL in production");
                }
                Some(PaymentsProvider {
                    base_url: url,
                    api_key: env
                        .var("PAYMENTS_API_KEY")
                        .context("PAYMENTS_API_KEY is required with PAYMENTS_PROVIDER_BASE_URL")?,
                    timeout: Duration::from_secs(10),
                })
            }
        };
        let webhook_secrets = env.list("PAYMENTS_WEBHOOK_SECRET");
        if provider.is_some() && webhook_secrets.is_empty() {
            bail!("PAYMENTS_WEBHOOK_SECRET is required with PAYMENTS_PROVIDER_BASE_URL");
        }
        if webhook_secrets.iter().any(|s| s.len() < 16) {
            bail!("PAYMENTS_WEBHOOK_SECRET: each secret needs at least 16 characters");
        }
        let tolerance = env.parsed("PAYMENTS_WEBHOOK_TOLERANCE_SECS", 300u64)?;
        if tolerance == 0 {
            bail!("PAYMENTS_WEBHOOK_TOLERANCE_SECS must be positive");
        }
        let risk = match env.var("RISK_RULES") {
            None => domain::risk::RiskRules::default(),
            Some(raw) => domain::risk::RiskRules::default()
                .with_overrides(&raw)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?,
        };
        Ok(Self {
            provider,
            webhook_secrets,
            webhook_tolerance: Duration::from_secs(tolerance),
            risk,
        })
    }
}

/// Where rates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatesSource {
    /// The built-in table (development only).
    Fixed,
    /// An HTTP endpoint.
    Http(String),
    /// None: exchange is off.
    Off,
}

/// Exchange settings.
#[derive(Debug, Clone)]
pub struct FxSettings {
    /// Where rates come from.
    pub rates: RatesSource,
    /// Older rates are stale.
    pub max_age: Duration,
    /// Fee in basis points.
    pub fee_bps: u32,
    /// Quote lifetime.
    pub quote_ttl: Duration,
}

impl FxSettings {
    pub(super) fn read(env: &Env<'_>, production: bool) -> anyhow::Result<Self> {
        let rates = match env.var("FX_RATES_URL") {
            Some(url) => {
                let parsed = url::Url::parse(url.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .with_context(|| format!("FX_RATES_URL={url:?} is not an http(s) URL"))?;
                if production && parsed.scheme() != "https" {
                    bail!("FX_RATES_URL must be an https:// URL in production");
                }
                RatesSource::Http(url.trim().to_owned())
            }
            None if production => RatesSource::Off,
            None => RatesSource::Fixed,
        };
        let fee_bps = env.parsed("FX_FEE_BPS", 50u32)?;
        if fee_bps >= 10_000 {
            bail!("FX_FEE_BPS must be below 10000 (100 %)");
        }
        let quote_ttl = env.parsed("FX_QUOTE_TTL_SECS", 30u64)?;
        let max_age = env.parsed("FX_RATES_MAX_AGE_SECS", 300u64)?;
        if quote_ttl == 0 || max_age == 0 {
            bail!("FX_QUOTE_TTL_SECS and FX_RATES_MAX_AGE_SECS must be positive");
        }
        Ok(Self {
            rates,
            max_age: Duration::from_secs(max_age),
            fee_bps,
            quote_ttl: Duration::from_secs(quote_ttl),
        })
    }
}
