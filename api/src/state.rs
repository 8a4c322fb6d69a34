//! Shared application state handed to every request.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

use chrono::Duration;
use entity::store::idempotency::KeyPolicy;
use sea_orm::DatabaseConnection;
use subscriptions::Bus;
use tokio::sync::watch;

use domain::step_up::TransferThresholds;

use crate::auth::oauth::OauthProviders;
use crate::auth::tokens::TokenKeys;
use crate::auth::webauthn::RelyingParty;
use crate::config::Settings;
use crate::limits::RateLimiter;

/// Cheap to clone: everything is behind `Arc` or is a pool handle.
#[derive(Clone)]
pub struct AppState {
    /// Database pool.
    pub db: DatabaseConnection,
    /// Token signing keys and lifetimes.
    pub keys: Arc<TokenKeys>,
    /// Idempotency key retention and lease.
    pub key_policy: KeyPolicy,
    /// All settings.
    pub settings: Arc<Settings>,
    /// The event bus (Redis, or in-process on the embedded default).
    pub bus: Bus,
    /// Process-wide live state: shutdown signal and gauges.
    pub live: Arc<LiveState>,
    /// The WebAuthn relying party.
    pub rp: Arc<RelyingParty>,
    /// When step-up is needed, and for how long a token lasts.
    pub step_up: Arc<StepUpPolicy>,
    /// OAuth2 providers.
    pub oauth: Arc<OauthProviders>,
    /// Rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<crate::observe::RequestMetrics>,
    /// Shared Redis connection (rate limits, persisted queries), if any.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// The trusted documents of every app release.
    pub trusted: Arc<crate::graphql::trusted::Manifest>,
    /// The master keys personal data is sealed under.
    pub pii: Arc<entity::pii::Keyring>,
    /// The KYC provider, when configured.
    pub kyc: Option<Arc<crate::providers::kyc::KycClient>>,
    /// Exchange rates.
    pub rates: Arc<crate::providers::rates::RatesProvider>,
    /// The card payment provider, when configured.
    pub payments: Option<Arc<crate::providers::payments::PaymentsClient>>,
}

/// Step-up rules.
#[derive(Debug)]
pub struct StepUpPolicy {
    /// Lifetime of a step-up token.
    pub token_ttl: Duration,
    /// Transfers of at least this amount need a step-up token.
    pub transfer_thresholds: TransferThresholds,
}

/// Shutdown signal and gauges shared by the hub, relay and WebSockets.
pub struct LiveState {
    /// Set to true when the server begins shutting down.
    pub shutdown: watch::Sender<bool>,
    /// Open WebSocket connections.
    pub ws_connections: AtomicI64,
    /// Notified whenever a WebSocket connection ends (shutdown waits on it).
    pub ws_closed: tokio::sync::Notify,
    /// The relay's counters, once it runs.
    pub relay: OnceLock<Arc<notifier::RelayStats>>,
    /// The delivery workers' counters, once they run.
    pub deliveries: OnceLock<Arc<notifier::DeliveryStats>>,
    /// The sessions of the open WebSockets, swept for ended ones.
    pub sessions: Arc<crate::http::session_watch::SessionWatch>,
}

impl AppState {
    /// Builds the state from settings and an open, migrated database.
    pub fn new(
        settings: Settings,
        db: DatabaseConnection,
        bus: Bus,
        jwt_secret: &[u8],
        pii: entity::pii::Keyring,
        redis: Option<redis::aio::ConnectionManager>,
    ) -> anyhow::Result<Self> {
        let metrics = Arc::new(crate::observe::RequestMetrics::default());
        let limiter = RateLimiter::new(&settings, redis.clone(), metrics.clone());
        let keys = TokenKeys::new(
            jwt_secret,
            Duration::seconds(settings.access_token_ttl_secs),
            Duration::seconds(settings.refresh_token_ttl_secs),
        );
        let rp = RelyingParty::from_settings(&settings)?;
        let trusted = crate::graphql::trusted::Manifest::load(&settings.trusted_documents_files)?;
        if settings.trusted_documents != crate::graphql::trusted::TrustedMode::Off {
            tracing::info!(documents = trusted.len(), mode = ?settings.trusted_documents, "trusted documents loaded");
        }
        let oauth = OauthProviders::from_settings(&settings)?;
        let step_up = StepUpPolicy {
            token_ttl: Duration::seconds(settings.step_up_token_ttl_secs),
            transfer_thresholds: TransferThresholds::new(settings.step_up_thresholds.clone()),
        };
        Ok(Self {
            db,
            rp: Arc::new(rp),
            oauth: Arc::new(oauth),
            step_up: Arc::new(step_up),
            limiter: Arc::new(limiter),
            metrics,
            redis,
            trusted: Arc::new(trusted),
            pii: Arc::new(pii),
            rates: Arc::new(crate::providers::rates::RatesProvider::new(&settings.fx)?),
            payments: match &settings.payments.provider {
                Some(p) => Some(Arc::new(crate::providers::payments::PaymentsClient::new(
                    p.clone(),
                )?)),
                None => None,
            },
            kyc: match &settings.kyc.provider {
                Some(p) => Some(Arc::new(crate::providers::kyc::KycClient::new(p.clone())?)),
                None => None,
            },
            keys: Arc::new(keys),
            key_policy: KeyPolicy {
                retention: Duration::seconds(settings.idempotency_retention_secs),
                lease: Duration::seconds(settings.idempotency_lease_secs),
            },
            settings: Arc::new(settings),
            bus,
            live: Arc::new(LiveState {
                shutdown: watch::channel(false).0,
                ws_connections: AtomicI64::new(0),
                ws_closed: tokio::sync::Notify::new(),
                relay: OnceLock::new(),
                deliveries: OnceLock::new(),
                sessions: Arc::default(),
            }),
        })
    }
}
