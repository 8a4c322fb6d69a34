//! Automatic Persisted Queries stored in Redis, shared by every instance:
//! a client that registered a query through one instance can send only its
//! hash to another. Entries expire after a day without use.

use async_graphql::extensions::apollo_persisted_queries::CacheStorage;
use async_graphql::parser::types::ExecutableDocument;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::limits::REDIS_BUDGET;
use crate::state::AppState;

/// How long a persisted query is kept, seconds.
const TTL_SECS: u64 = 86_400;
/// Largest stored document (its JSON form). Anyone may register a query, so
/// the store must not become a way to fill the Redis that also holds the
/// rate limits; a larger query still runs, its text is just sent each time.
const MAX_STORED_BYTES: usize = 32 * 1024;

/// The Redis-backed store.
#[derive(Clone)]
pub struct RedisApq {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisApq {
    /// The store when the state has Redis.
    pub fn from_state(state: &AppState) -> Option<Self> {
        state.redis.clone().map(|conn| Self {
            conn,
            prefix: format!("{}:apq", state.settings.rate_limit_prefix),
        })
    }

    fn key(&self, hash: &str) -> String {
        format!("{}:{hash}", self.prefix)
    }
}

#[async_trait::async_trait]
impl CacheStorage for RedisApq {
    async fn get(&self, key: String) -> Option<ExecutableDocument> {
        let mut conn = self.conn.clone();
        let lookup = conn.get_ex(self.key(&key), redis::Expiry::EX(TTL_SECS));
        let stored: Option<String> = match tokio::time::timeout(REDIS_BUDGET, lookup).await {
            Ok(Ok(v)) => v,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "persisted query lookup failed");
                return None;
            }
            Err(_) => {
                tracing::warn!("persisted query lookup timed out");
                return None;
            }
        };
        stored.and_then(|s| serde_json::from_str(&s).ok())
    }

    async fn set(&self, key: String, query: ExecutableDocument) {
        let Ok(text) = serde_json::to_string(&query) else {
            return;
        };
        if text.len() > MAX_STORED_BYTES {
            tracing::debug!(bytes = text.len(), "persisted query too large to store");
            return;
        }
        let mut conn = self.conn.clone();
        let store = conn.set_ex::<_, _, ()>(self.key(&key), text, TTL_SECS);
        match tokio::time::timeout(REDIS_BUDGET, store).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "storing a persisted query failed"),
            Err(_) => tracing::warn!("storing a persisted query timed out"),
        }
    }
}
