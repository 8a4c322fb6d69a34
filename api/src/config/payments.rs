//! Settings of payments beyond the wallet: currency exchange.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `FX_RATES_URL` | development: a fixed table; production: unset turns exchange off | HTTP endpoint of exchange rates (`GET`, JSON `{"timestamp": <unix>, "prices": {"USD": "1", "EUR": "1.08", ...}}`, decimal strings) |
//! | `FX_RATES_MAX_AGE_SECS` | `300` | rates older than this are stale: no new quotes |
//! | `FX_FEE_BPS` | `50` | exchange fee in basis points of the amount (0.5 %) |
//! | `FX_QUOTE_TTL_SECS` | `30` | how long a quote can be used |

use std::time::Duration;

use anyhow::{Context, bail};

use super::Env;

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
