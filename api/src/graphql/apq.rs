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
        let stored: Option<String> = match conn
            .get_ex(self.key(&key), redis::Expiry::EX(TTL_SECS))
            .await
        {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(error = %err, "persisted query lookup failed");
                return None;
            }
        };
        stored.and_then(|s| serde_json::from_str(&s).ok())
    }

    async fn set(&self, key: String, query: ExecutableDocument) {
        let Ok(text) = serde_json::to_string(&query) else {
            return;
        };
        let mut conn = self.conn.clone();
        let store = conn.set_ex::<_, _, ()>(self.key(&key), text, TTL_SECS);
        match tokio::time::timeout(REDIS_BUDGET, store).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "storing a persisted query failed"),
            Err(_) => tracing::warn!("storing a persisted query timed out"),
        }
    }
}
