//! Rate limits: fixed-window counters, in Redis when `REDIS_URL` is set (so
//! every instance sharing the prefix shares the limits) and in process on
//! the embedded default.
//!
//! Buckets: sign-in attempts per account and per client address, money
//! mutations per user, and requests per user tier. Counter keys never hold
//! PII: accounts are keyed by a hash of the normalized e-mail.
//!
//! If Redis fails or does not answer within [`REDIS_BUDGET`], the instance
//! counts in process for [`REDIS_BACKOFF`] and then tries Redis again: the
//! limits still hold per instance during an outage, requests are not slowed
//! down by it, and a cache outage never refuses every sign-in and payment.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};

use crate::auth::AuthUser;
use crate::config::{RateSetting, Settings};
use crate::error::ApiError;

/// The client's address, put into each request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// A refused request: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until the window resets.
    pub retry_after_secs: u64,
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        ApiError::RateLimited {
            retry_after_secs: l.retry_after_secs,
        }
    }
}

/// Longest wait for Redis before counting in process instead.
pub const REDIS_BUDGET: Duration = Duration::from_millis(250);
/// How long to count in process after Redis failed.
pub const REDIS_BACKOFF: Duration = Duration::from_secs(5);

/// In-process fixed-window counters: key -> (window, count).
#[derive(Default)]
struct Counters(Mutex<HashMap<String, (u64, u64)>>);

impl Counters {
    fn hit(&self, key: String, window: u64) -> u64 {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, (w, _)| *w + 1 >= window);
        }
        let entry = map.entry(key).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += 1;
        entry.1
    }
}

enum Backend {
    Redis {
        conn: ConnectionManager,
        /// Used while Redis is failing.
        fallback: Counters,
        /// Until when Redis is skipped.
        down_until: Mutex<Option<Instant>>,
    },
    Memory(Counters),
    Off,
}

/// The limiter shared by all requests of an instance.
pub struct RateLimiter {
    backend: Backend,
    prefix: String,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.backend {
            Backend::Redis { .. } => "redis",
            Backend::Memory(_) => "memory",
            Backend::Off => "off",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &kind)
            .finish()
    }
}

/// What is being limited.
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    /// Sign-in attempts for one account (normalized e-mail or user id).
    LoginAccount(&'a str),
    /// Sign-in attempts from one address.
    LoginAddress(IpAddr),
    /// Money mutations of one user.
    Money(uuid::Uuid),
    /// Requests of one signed-in user.
    User(uuid::Uuid),
    /// Requests of one staff user.
    Staff(uuid::Uuid),
    /// Requests without a token, per address.
    Anonymous(IpAddr),
}

impl RateLimiter {
    /// In `redis` when given, else in process; nothing when disabled.
    pub fn new(settings: &Settings, redis: Option<ConnectionManager>) -> Self {
        let backend = match (redis, settings.rate_limits_enabled) {
            (_, false) => Backend::Off,
            (Some(conn), true) => Backend::Redis {
                conn,
                fallback: Counters::default(),
                down_until: Mutex::new(None),
            },
            (None, true) => Backend::Memory(Counters::default()),
        };
        Self {
            backend,
            prefix: settings.rate_limit_prefix.clone(),
        }
    }
}

/// Connects the shared Redis connection (rate limits, persisted queries).
pub async fn connect_redis(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = redis::Client::open(url).context("REDIS_URL")?;
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        ConnectionManager::new(client),
    )
    .await
    .context("connecting to Redis timed out")?
    .context("connecting to Redis")
}

impl RateLimiter {
    fn key(&self, bucket: Bucket<'_>, window: u64) -> String {
        let p = &self.prefix;
        match bucket {
            Bucket::LoginAccount(account) => {
                let digest = hex::encode(Sha256::digest(account.as_bytes()));
                format!("{p}:login-account:{}:{window}", &digest[..32])
            }
            Bucket::LoginAddress(ip) => format!("{p}:login-addr:{ip}:{window}"),
            Bucket::Money(id) => format!("{p}:money:{id}:{window}"),
            Bucket::User(id) => format!("{p}:req-user:{id}:{window}"),
            Bucket::Staff(id) => format!("{p}:req-staff:{id}:{window}"),
            Bucket::Anonymous(ip) => format!("{p}:req-anon:{ip}:{window}"),
        }
    }

    /// Counts one event in `bucket`; refuses when it goes over `rate`.
    pub async fn hit(&self, bucket: Bucket<'_>, rate: RateSetting) -> Result<(), Limited> {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let window = now / rate.window_secs;
        let retry_after_secs = ((window + 1) * rate.window_secs).saturating_sub(now).max(1);
        let count = match &self.backend {
            Backend::Off => return Ok(()),
            Backend::Memory(counters) => counters.hit(self.key(bucket, 0), window),
            Backend::Redis {
                conn,
                fallback,
                down_until,
            } => {
                let skip = down_until
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some_and(|until| Instant::now() < until);
                let counted = if skip {
                    None
                } else {
                    self.redis_hit(conn, bucket, window, rate).await
                };
                match counted {
                    Some(count) => count,
                    None => {
                        if !skip {
                            *down_until
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                Some(Instant::now() + REDIS_BACKOFF);
                        }
                        fallback.hit(self.key(bucket, 0), window)
                    }
                }
            }
        };
        if count > rate.limit {
            Err(Limited { retry_after_secs })
        } else {
            Ok(())
        }
    }

    /// One count in Redis; `None` (logged) when Redis fails or is slow.
    async fn redis_hit(
        &self,
        conn: &ConnectionManager,
        bucket: Bucket<'_>,
        window: u64,
        rate: RateSetting,
    ) -> Option<u64> {
        let key = self.key(bucket, window);
        let mut conn = conn.clone();
        let ttl = i64::try_from(rate.window_secs + 1).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&key, 1u64).expire(&key, ttl);
        let query = pipe.query_async::<(u64, i64)>(&mut conn);
        match tokio::time::timeout(REDIS_BUDGET, query).await {
            Ok(Ok((count, _))) => Some(count),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "rate limit counters unavailable in Redis; counting in process for now");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "Redis did not answer the rate limit counter in time; counting in process for now"
                );
                None
            }
        }
    }

    /// The per-request limit of the caller's tier.
    pub async fn request(
        &self,
        settings: &Settings,
        user: Option<&AuthUser>,
        addr: IpAddr,
    ) -> Result<(), Limited> {
        match user {
            Some(u) if u.roles.iter().any(|r| *r != domain::Role::User) => {
                self.hit(Bucket::Staff(u.id), settings.rate_requests_staff)
                    .await
            }
            Some(u) => {
                self.hit(Bucket::User(u.id), settings.rate_requests_user)
                    .await
            }
            None => {
                self.hit(Bucket::Anonymous(addr), settings.rate_requests_anonymous)
                    .await
            }
        }
    }

    /// A sign-in attempt for `account` from `addr`.
    pub async fn login(
        &self,
        settings: &Settings,
        account: &str,
        addr: IpAddr,
    ) -> Result<(), Limited> {
        self.hit(Bucket::LoginAddress(addr), settings.rate_login_per_address)
            .await?;
        self.hit(
            Bucket::LoginAccount(&account.trim().to_lowercase()),
            settings.rate_login_per_account,
        )
        .await
    }
}
