//! Shared application state handed to every request.

use std::sync::Arc;

use chrono::Duration;
use entity::store::idempotency::KeyPolicy;
use sea_orm::DatabaseConnection;

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
}

impl AppState {
    /// Builds the state from settings and an open, migrated database.
    pub fn new(settings: Settings, db: DatabaseConnection, jwt_secret: &[u8]) -> Self {
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
        }
    }
}
