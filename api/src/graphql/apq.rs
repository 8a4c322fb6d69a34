//! Automatic Persisted Queries (Apollo's protocol), stored in Redis and so
//! shared by every instance (a client that registered a query through one
//! instance can send only its hash to another), or in a bounded in-process
//! LRU on the embedded default. Entries expire a day after their last use.
//!
//! async-graphql's own extension stores every document that parses, before
//! validation. Anyone may register a query, and the store shares Redis with
//! the rate limits, so ours keeps a document only when
//! - it passed the shape limits and validation against the schema,
//! - its text is at most [`MAX_STORED_BYTES`],
//! - its address has registered fewer than [`REGISTRATIONS_PER_HOUR`] new
//!   documents this hour, and all addresses together fewer than
//!   [`ALL_REGISTRATIONS_PER_HOUR`] (a document already stored costs
//!   nothing; with `RATE_LIMITS_ENABLED=false` neither budget applies).
//!
//! Redis keeps the query text (parsed again on use, which is cheap), not
//! async-graphql's parsed document, whose JSON form is many times larger.
//!
//! A document that is not kept still runs; its client just sends the text
//! again next time. A hash the store does not know answers
//! `PersistedQueryNotFound` (`PERSISTED_QUERY_NOT_FOUND`).

use async_graphql::extensions::apollo_persisted_queries::{CacheStorage, LruCacheStorage};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::config::RateSetting;
use crate::limits::{Bucket, ClientAddr, REDIS_BUDGET};
use crate::state::AppState;

/// How long a persisted query is kept after its last use, seconds.
const TTL_SECS: u64 = 86_400;
/// Longest stored query text.
pub const MAX_STORED_BYTES: usize = 16 * 1024;
/// New documents one address may register per hour (an app has a few dozen
/// operations; clients behind one NAT share this).
pub const REGISTRATIONS_PER_HOUR: u64 = 100;
/// New documents all addresses together may register per hour.
pub const ALL_REGISTRATIONS_PER_HOUR: u64 = 2_000;
/// Documents the in-process store holds.
const MEMORY_ENTRIES: usize = 1_000;

/// Where persisted queries are kept.
#[derive(Clone)]
pub enum Store {
    /// Shared by every instance with the same prefix.
    Redis {
        /// The shared connection.
        conn: ConnectionManager,
        /// Key prefix (`RATE_LIMIT_PREFIX:apq`).
        prefix: String,
    },
    /// This process only.
    Memory(LruCacheStorage),
}

impl Store {
    /// Redis when the state has it, else in process.
    pub fn from_state(state: &AppState) -> Self {
        match state.redis.clone() {
            Some(conn) => Store::Redis {
                conn,
                prefix: format!("{}:apq", state.settings.rate_limit_prefix),
            },
            None => Store::Memory(LruCacheStorage::new(MEMORY_ENTRIES)),
        }
    }

    async fn get(&self, hash: &str) -> Option<ExecutableDocument> {
        let (conn, prefix) = match self {
            Store::Memory(lru) => return lru.get(hash.to_owned()).await,
            Store::Redis { conn, prefix } => (conn, prefix),
        };
        let mut conn = conn.clone();
        let lookup = conn.get_ex(format!("{prefix}:{hash}"), redis::Expiry::EX(TTL_SECS));
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
        stored.and_then(|text| async_graphql::parser::parse_query(text).ok())
    }

    /// Whether the store already holds `hash`.
    async fn contains(&self, hash: &str) -> bool {
        let (conn, prefix) = match self {
            Store::Memory(lru) => return lru.get(hash.to_owned()).await.is_some(),
            Store::Redis { conn, prefix } => (conn, prefix),
        };
        let mut conn = conn.clone();
        let exists = conn.exists::<_, bool>(format!("{prefix}:{hash}"));
        matches!(
            tokio::time::timeout(REDIS_BUDGET, exists).await,
            Ok(Ok(true))
        )
    }

    async fn set(&self, hash: String, text: String, doc: ExecutableDocument) {
        let (conn, prefix) = match self {
            Store::Memory(lru) => return lru.set(hash, doc).await,
            Store::Redis { conn, prefix } => (conn, prefix),
        };
        let mut conn = conn.clone();
        let store = conn.set_ex::<_, _, ()>(format!("{prefix}:{hash}"), text, TTL_SECS);
        match tokio::time::timeout(REDIS_BUDGET, store).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "storing a persisted query failed"),
            Err(_) => tracing::warn!("storing a persisted query timed out"),
        }
    }
}

/// The persisted-query step of the request pipeline.
pub struct PersistedQueries(Store);

impl PersistedQueries {
    /// Persisted queries kept in `store`.
    pub fn new(store: Store) -> Self {
        Self(store)
    }
}

/// A document sent with its text, to be kept once it passed validation.
pub struct Pending {
    hash: String,
    text: String,
    doc: ExecutableDocument,
}

#[derive(serde::Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

impl PersistedQueries {
    /// Whether the request's address, and everyone, may register one more
    /// document.
    async fn may_register(&self, state: &AppState, addr: Option<ClientAddr>) -> bool {
        let hourly = |limit| RateSetting {
            limit,
            window_secs: 3_600,
        };
        if let Some(addr) = addr
            && state
                .limiter
                .hit(
                    Bucket::PersistedQueries(addr.0),
                    hourly(REGISTRATIONS_PER_HOUR),
                )
                .await
                .is_err()
        {
            return false;
        }
        state
            .limiter
            .hit(
                Bucket::AllPersistedQueries,
                hourly(ALL_REGISTRATIONS_PER_HOUR),
            )
            .await
            .is_ok()
    }

    /// Resolves the `persistedQuery` extension: a hash alone takes its
    /// stored document; a hash with its text is checked and returned as
    /// [`Pending`], to be kept by [`PersistedQueries::keep`] once the
    /// document passed validation.
    pub async fn prepare(&self, mut request: Request) -> ServerResult<(Request, Option<Pending>)> {
        let Some(value) = request.extensions.remove("persistedQuery") else {
            return Ok((request, None));
        };
        let persisted: PersistedQuery = async_graphql::from_value(value).map_err(|_| {
            ServerError::new("Invalid \"PersistedQuery\" extension configuration.", None)
        })?;
        if persisted.version != 1 {
            return Err(ServerError::new(
                format!(
                    "only version 1 of the \"PersistedQuery\" extension is supported, not {}",
                    persisted.version
                ),
                None,
            ));
        }
        if request.query.is_empty() {
            let Some(doc) = self.0.get(&persisted.sha256_hash).await else {
                return Err(ServerError::new("PersistedQueryNotFound", None));
            };
            request.set_parsed_query(doc);
            return Ok((request, None));
        }
        let hash = format!("{:x}", Sha256::digest(request.query.as_bytes()));
        if persisted.sha256_hash != hash {
            return Err(ServerError::new("provided sha does not match query", None));
        }
        let doc = async_graphql::parser::parse_query(&request.query)?;
        let text = std::mem::take(&mut request.query);
        request.set_parsed_query(doc.clone());
        Ok((request, Some(Pending { hash, text, doc })))
    }

    /// Keeps a document that passed validation, within the size limit and
    /// the registration budgets.
    pub async fn keep(&self, state: &AppState, addr: Option<ClientAddr>, pending: Pending) {
        if pending.text.len() > MAX_STORED_BYTES {
            tracing::debug!(
                bytes = pending.text.len(),
                "persisted query too large to store"
            );
        } else if self.0.contains(&pending.hash).await {
            // Known already (another client registered it): nothing to pay.
        } else if self.may_register(state, addr).await {
            self.0.set(pending.hash, pending.text, pending.doc).await;
        } else {
            tracing::debug!("persisted query registrations used up for this hour");
        }
    }
}
