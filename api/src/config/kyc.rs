//! Settings of identity verification and personal data: the KYC provider
//! and its webhook, the tier limits, the keys personal data is encrypted
//! under, and how long the books outlive an erased account.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `KYC_PROVIDER_BASE_URL` | unset: `submitKyc` answers `PROVIDER_UNAVAILABLE` | the provider's API (Sumsub-style), e.g. `https://api.sumsub.com` |
//! | `KYC_APP_TOKEN` | required with the base URL | app token sent as `X-App-Token` |
//! | `KYC_SECRET_KEY` | required with the base URL | secret of the request signature (`X-App-Access-Sig`) |
//! | `KYC_WEBHOOK_SECRET` | required with the base URL | secret of the webhook digest (`X-Payload-Digest`) |
//! | `KYC_LEVEL_NAME` | `basic-kyc-level` | verification level new applicants are created at |
//! | `KYC_LEVEL_TIERS` | `basic-kyc-level=1,full-kyc-level=2` | which tier a GREEN review at each level grants |
//! | `KYC_TIMEOUT_SECS` | `10` | longest provider request |
//! | `KYC_WEBHOOK_MAX_BYTES` | `65536` | largest webhook body accepted |
//! | `TIER_LIMITS` | built-in table (README) | overrides: `TIER:KIND:CURRENCY=PER_TRANSACTION/DAILY`, comma-separated; `*` for every kind or currency |
//! | `PII_KEYS` | development: generated under `DATA_DIR`; required in production | `ID=BASE64` keys of 32 bytes, comma-separated; the current one marked `*ID=...` |
//! | `LEGAL_RETENTION_YEARS` | `7` | how long an erased account's transactions and ledger lines are kept |

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use domain::limits::TierLimits;

use super::Env;

/// The provider's API and the secrets of both directions.
#[derive(Clone)]
pub struct KycProvider {
    /// Base URL, without a trailing slash.
    pub base_url: String,
    /// `X-App-Token`.
    pub app_token: String,
    /// Key of the request signature.
    pub secret_key: String,
    /// Longest request.
    pub timeout: Duration,
}

impl std::fmt::Debug for KycProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KycProvider")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Every setting of KYC, limits and personal data.
#[derive(Clone)]
pub struct KycSettings {
    /// The provider; `None` when not configured.
    pub provider: Option<KycProvider>,
    /// Secret of the webhook digest.
    pub webhook_secret: Option<String>,
    /// Level new applicants are created at.
    pub level_name: String,
    /// Tier granted by a GREEN review, per level name.
    pub level_tiers: BTreeMap<String, i32>,
    /// Largest webhook body.
    pub webhook_max_bytes: usize,
    /// Per-transaction and daily limits by tier.
    pub limits: TierLimits,
    /// `PII_KEYS` as configured (`None`: generated in development).
    pub pii_keys: Option<String>,
    /// Years the books of an erased account are kept.
    pub retention_years: u32,
}

impl std::fmt::Debug for KycSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KycSettings")
            .field("provider", &self.provider)
            .field("level_name", &self.level_name)
            .field("level_tiers", &self.level_tiers)
            .field("pii_keys", &self.pii_keys.as_ref().map(|_| "***"))
            .field("retention_years", &self.retention_years)
            .finish_non_exhaustive()
    }
}

/// Default tiers of the provider's levels.
pub const DEFAULT_LEVEL_TIERS: &str = "basic-kyc-level=1,full-kyc-level=2";

impl KycSettings {
    pub(super) fn read(env: &Env<'_>, production: bool) -> anyhow::Result<Self> {
        let base_url = env.var("KYC_PROVIDER_BASE_URL");
        let provider = match base_url {
            None => {
                for name in ["KYC_APP_TOKEN", "KYC_SECRET_KEY"] {
                    if env.var(name).is_some() {
                        bail!("{name} is set but KYC_PROVIDER_BASE_URL is not");
                    }
                }
                None
            }
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                let parsed = url::Url::parse(&url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .with_context(|| {
                        format!("KYC_PROVIDER_BASE_URL={url:?} is not an http(s) URL")
                    })?;
                if production && parsed.scheme() != "https" {
                    bail!("KYC_PROVIDER_BASE_URL must be an https:// URL in production");
                }
                let required = |name: &str| {
                    env.var(name)
                        .with_context(|| format!("{name} is required with KYC_PROVIDER_BASE_URL"))
                };
                Some(KycProvider {
                    base_url: url,
                    app_token: required("KYC_APP_TOKEN")?,
                    secret_key: required("KYC_SECRET_KEY")?,
                    timeout: Duration::from_secs(env.parsed("KYC_TIMEOUT_SECS", 10u64)?.max(1)),
                })
            }
        };
        let webhook_secret = env.var("KYC_WEBHOOK_SECRET");
        if provider.is_some() && webhook_secret.is_none() {
            bail!("KYC_WEBHOOK_SECRET is required with KYC_PROVIDER_BASE_URL");
        }
        if let Some(secret) = &webhook_secret
            && secret.len() < 16
        {
            bail!("KYC_WEBHOOK_SECRET must have at least 16 characters");
        }
        let level_tiers = parse_level_tiers(
            &env.var("KYC_LEVEL_TIERS")
                .unwrap_or_else(|| DEFAULT_LEVEL_TIERS.to_owned()),
        )
        .context("KYC_LEVEL_TIERS")?;
        let level_name = env
            .var("KYC_LEVEL_NAME")
            .unwrap_or_else(|| "basic-kyc-level".to_owned());
        if !level_tiers.contains_key(&level_name) {
            bail!("KYC_LEVEL_NAME {level_name:?} has no tier in KYC_LEVEL_TIERS");
        }
        let limits = match env.var("TIER_LIMITS") {
            None => TierLimits::default(),
            Some(raw) => TierLimits::default()
                .with_overrides(&raw)
                .map_err(|e| anyhow::anyhow!("TIER_LIMITS: {}", e.message))?,
        };
        let pii_keys = env.var("PII_KEYS");
        match &pii_keys {
            Some(raw) => {
                entity::pii::Keyring::parse(raw).map_err(|e| anyhow::anyhow!("PII_KEYS: {e}"))?;
            }
            None if production => bail!("PII_KEYS is required in production"),
            None => {}
        }
        let retention_years = env.parsed("LEGAL_RETENTION_YEARS", 7u32)?;
        if retention_years == 0 {
            bail!("LEGAL_RETENTION_YEARS must be at least 1");
        }
        Ok(Self {
            provider,
            webhook_secret,
            level_name,
            level_tiers,
            webhook_max_bytes: env.parsed("KYC_WEBHOOK_MAX_BYTES", 65536usize)?.max(1024),
            limits,
            pii_keys,
            retention_years,
        })
    }
}

/// `LEVEL=TIER` pairs, comma-separated; tiers 1 to 9.
pub fn parse_level_tiers(raw: &str) -> anyhow::Result<BTreeMap<String, i32>> {
    let mut map = BTreeMap::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, tier) = part
            .split_once('=')
            .with_context(|| format!("{part:?} is not LEVEL=TIER"))?;
        let tier: i32 = tier
            .trim()
            .parse()
            .ok()
            .filter(|t| (1..=9).contains(t))
            .with_context(|| format!("{part:?}: the tier must be 1 to 9"))?;
        map.insert(name.trim().to_owned(), tier);
    }
    if map.is_empty() {
        bail!("at least one level is needed");
    }
    Ok(map)
}
