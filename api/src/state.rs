//! Shared application state handed to every request.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

use chrono::Duration;
use entity::store::idempotency::KeyPolicy;
use sea_orm::DatabaseConnection;
use subscriptions::Bus;
use tokio::sync::watch;

use crate::auth::tokens::TokenKeys;
use crate::config::Settings;

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
}

impl AppState {
    /// Builds the state from settings and an open, migrated database.
    pub fn new(settings: Settings, db: DatabaseConnection, bus: Bus, jwt_secret: &[u8]) -> Self {
        let keys = TokenKeys::new(
            jwt_secret,
            Duration::seconds(settings.access_token_ttl_secs),
            Duration::seconds(settings.refresh_token_ttl_secs),
        );
        Self {
            db,
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
            }),
        }
    }
}
