//! Rate limits: fixed-window counters, in Redis when `REDIS_URL` is set (so
//! every instance sharing the prefix shares the limits) and in process on
//! the embedded default.
//!
//! Buckets: sign-in attempts per account and per client address, money
//! mutations per user, and requests per user tier. Counter keys never hold
//! PII: accounts are keyed by a hash of the normalized e-mail.
//!
//! If Redis cannot be reached the request is let through and the failure is
//! logged: the limits protect against abuse, and refusing every sign-in and
//! payment while Redis is away would turn a cache outage into a full one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

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

enum Backend {
    Redis(ConnectionManager),
    Memory(Mutex<HashMap<String, (u64, u64)>>),
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
            Backend::Redis(_) => "redis",
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
            (Some(manager), true) => Backend::Redis(manager),
            (None, true) => Backend::Memory(Mutex::new(HashMap::new())),
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
            Backend::Redis(manager) => {
                let key = self.key(bucket, window);
                let mut conn = manager.clone();
                let counted: redis::RedisResult<(u64, i64)> = redis::pipe()
                    .atomic()
                    .incr(&key, 1u64)
                    .expire(
                        &key,
                        i64::try_from(rate.window_secs + 1).unwrap_or(i64::MAX),
                    )
                    .query_async(&mut conn)
                    .await;
                match counted {
                    Ok((count, _)) => count,
                    Err(err) => {
                        tracing::error!(error = %err, "rate limit counter unavailable; letting the request through");
                        return Ok(());
                    }
                }
            }
            Backend::Memory(map) => {
                let key = self.key(bucket, 0);
                let mut map = map
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
        };
        if count > rate.limit {
            Err(Limited { retry_after_secs })
        } else {
            Ok(())
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
