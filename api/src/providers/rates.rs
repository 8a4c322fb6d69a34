//! Exchange rates: the fixed table of development, or an HTTP endpoint,
//! fetched when the cached rates are older than half their allowed age and
//! refused when even a fresh fetch is stale.

use std::time::Duration;

use chrono::Utc;
use domain::fx::Rates;
use domain::{Currency, DomainError, ErrorCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::payments::{FxSettings, RatesSource};

/// The rates of this process.
#[derive(Debug)]
pub struct RatesProvider {
    source: RatesSource,
    max_age: chrono::Duration,
    http: reqwest::Client,
    cache: Mutex<Option<Rates>>,
}

#[derive(Deserialize)]
struct Feed {
    timestamp: i64,
    prices: std::collections::BTreeMap<String, String>,
}

fn unavailable(message: &str) -> DomainError {
    DomainError::new(ErrorCode::ProviderUnavailable, message)
}

impl RatesProvider {
    /// From the settings.
    pub fn new(settings: &FxSettings) -> anyhow::Result<Self> {
        Ok(Self {
            source: settings.rates.clone(),
            max_age: chrono::Duration::from_std(settings.max_age)?,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            cache: Mutex::new(None),
        })
    }

    /// Rates fresh enough to quote with, or `PROVIDER_UNAVAILABLE`.
    pub async fn current(&self) -> Result<Rates, DomainError> {
        let url = match &self.source {
            RatesSource::Fixed => return Ok(Rates::fixed()),
            RatesSource::Off => {
                return Err(unavailable(
                    "currency exchange is not available on this server",
                ));
            }
            RatesSource::Http(url) => url,
        };
        let mut cache = self.cache.lock().await;
        let now = Utc::now();
        if let Some(rates) = cache.as_ref()
            && !rates.is_stale(now, self.max_age / 2)
        {
            return Ok(rates.clone());
        }
        match self.fetch(url).await {
            Ok(rates) => *cache = Some(rates),
            Err(why) => tracing::warn!(reason = %why, "exchange rates could not be fetched"),
        }
        match cache.as_ref() {
            Some(rates) if !rates.is_stale(now, self.max_age) => Ok(rates.clone()),
            _ => Err(unavailable(
                "exchange rates are out of date; try again in a moment",
            )),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Rates, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|_| "could not connect".to_owned())?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let feed: Feed = resp
            .json()
            .await
            .map_err(|e| format!("not a rates feed: {e}"))?;
        let mut prices = std::collections::BTreeMap::new();
        for (code, price) in feed.prices {
            let Ok(currency) = Currency::parse(&code) else {
                continue;
            };
            let price = domain::money::parse_exact(&price)
                .map_err(|_| format!("the price of {code} is not an exact decimal"))?;
            prices.insert(currency, price);
        }
        let as_of = chrono::DateTime::from_timestamp(feed.timestamp, 0)
            .ok_or("the timestamp is out of range")?;
        Rates::new(prices, as_of).map_err(|e| e.message)
    }
}
