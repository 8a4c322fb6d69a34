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
use tracing::Instrument;

use crate::auth::AuthUser;
use crate::config::{RateSetting, Settings};
use crate::error::ApiError;

/// The client's address, put into each request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Which device a request comes from, as far as the server can tell: a
/// hash of the `User-Agent` and the client's network (a /24 or /48), so
/// neither is stored. A sign-in from a new one is a risk signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDevice(pub String);

impl ClientDevice {
    /// The device of a request from `addr` with these headers.
    pub fn of(headers: &axum::http::HeaderMap, addr: IpAddr) -> Self {
        let agent = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let network = match addr {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{a}.{b}.{c}.0/24")
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        };
        let digest = Sha256::digest(format!("{agent}|{network}").as_bytes());
        Self(hex::encode(&digest[..16]))
    }
}

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

/// Most keys kept in process before expired ones are swept.
const MAX_KEYS: usize = 100_000;

/// In-process fixed-window counters: key -> (window end, count), the end
/// in seconds since the epoch, so buckets of different window lengths expire
/// correctly side by side.
#[derive(Default)]
struct Counters(Mutex<CounterMap>);

/// The counters and when ended windows were last swept out.
#[derive(Default)]
struct CounterMap {
    map: HashMap<String, (u64, u64)>,
    swept_at: u64,
}

impl Counters {
    fn hit(&self, key: String, window_end: u64, now: u64, cost: u64) -> u64 {
        let mut counters = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // At most one sweep a second: with more live keys than MAX_KEYS (a
        // flood of addresses) a sweep per hit would make every request pay
        // for the whole map.
        if counters.map.len() >= MAX_KEYS && counters.swept_at < now {
            counters.map.retain(|_, (end, _)| *end > now);
            counters.swept_at = now;
        }
        let entry = counters.map.entry(key).or_insert((window_end, 0));
        if entry.0 != window_end {
            *entry = (window_end, 0);
        }
        entry.1 += cost;
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
    /// Where refusals are counted.
    metrics: std::sync::Arc<crate::observe::RequestMetrics>,
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
    /// New persisted queries registered from one address.
    PersistedQueries(IpAddr),
    /// New persisted queries registered from anywhere.
    AllPersistedQueries,
}

impl Bucket<'_> {
    /// The kind of bucket, a metrics label (never the user or address).
    fn kind(&self) -> &'static str {
        match self {
            Bucket::LoginAccount(_) => "login_account",
            Bucket::LoginAddress(_) => "login_address",
            Bucket::Money(_) => "money",
            Bucket::User(_) => "user",
            Bucket::Staff(_) => "staff",
            Bucket::Anonymous(_) => "anonymous",
            Bucket::PersistedQueries(_) => "persisted_queries",
            Bucket::AllPersistedQueries => "all_persisted_queries",
        }
    }
}

impl RateLimiter {
    /// In `redis` when given, else in process; nothing when disabled.
    pub fn new(
        settings: &Settings,
        redis: Option<ConnectionManager>,
        metrics: std::sync::Arc<crate::observe::RequestMetrics>,
    ) -> Self {
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
            metrics,
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
        // One IPv6 client usually holds a whole /64: count it as one address.
        let network = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            IpAddr::V4(v4) => v4.to_string(),
        };
        match bucket {
            Bucket::LoginAccount(account) => {
                let digest = hex::encode(Sha256::digest(account.as_bytes()));
                format!("{p}:login-account:{}:{window}", &digest[..32])
            }
            Bucket::LoginAddress(ip) => format!("{p}:login-addr:{}:{window}", network(ip)),
            Bucket::Money(id) => format!("{p}:money:{id}:{window}"),
            Bucket::User(id) => format!("{p}:req-user:{id}:{window}"),
            Bucket::Staff(id) => format!("{p}:req-staff:{id}:{window}"),
            Bucket::Anonymous(ip) => format!("{p}:req-anon:{}:{window}", network(ip)),
            Bucket::PersistedQueries(ip) => format!("{p}:apq-addr:{}:{window}", network(ip)),
            Bucket::AllPersistedQueries => format!("{p}:apq-all:{window}"),
        }
    }

    /// Counts one event in `bucket`; refuses when it goes over `rate`.
    pub async fn hit(&self, bucket: Bucket<'_>, rate: RateSetting) -> Result<(), Limited> {
        self.hit_n(bucket, rate, 1).await
    }

    /// Counts `cost` events in `bucket`; refuses when they go over `rate`.
    pub async fn hit_n(
        &self,
        bucket: Bucket<'_>,
        rate: RateSetting,
        cost: u64,
    ) -> Result<(), Limited> {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let window = now / rate.window_secs;
        let window_end = (window + 1) * rate.window_secs;
        let retry_after_secs = window_end.saturating_sub(now).max(1);
        let count = match &self.backend {
            Backend::Off => return Ok(()),
            Backend::Memory(counters) => counters.hit(self.key(bucket, 0), window_end, now, cost),
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
                    self.redis_hit(conn, bucket, window, rate, cost).await
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
                        fallback.hit(self.key(bucket, 0), window_end, now, cost)
                    }
                }
            }
        };
        if count > rate.limit {
            self.metrics.refused(bucket.kind());
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
        cost: u64,
    ) -> Option<u64> {
        let key = self.key(bucket, window);
        let mut conn = conn.clone();
        let ttl = i64::try_from(rate.window_secs + 1).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&key, cost).expire(&key, ttl);
        let span = tracing::info_span!(
            "redis.rate_limit",
            otel.name = "MULTI INCRBY EXPIRE",
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = "INCRBY",
        );
        let query = pipe.query_async::<(u64, i64)>(&mut conn).instrument(span);
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
        self.requests(settings, user, addr, 1).await
    }

    /// `count` requests (the operations of a batch) of the caller's tier.
    pub async fn requests(
        &self,
        settings: &Settings,
        user: Option<&AuthUser>,
        addr: IpAddr,
        count: u64,
    ) -> Result<(), Limited> {
        let (bucket, rate) = match user {
            Some(u) if u.roles.iter().any(|r| *r != domain::Role::User) => {
                (Bucket::Staff(u.id), settings.rate_requests_staff)
            }
            Some(u) => (Bucket::User(u.id), settings.rate_requests_user),
            None => (Bucket::Anonymous(addr), settings.rate_requests_anonymous),
        };
        self.hit_n(bucket, rate, count).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter {
            backend: Backend::Memory(Counters::default()),
            prefix: "t".to_owned(),
            metrics: Default::default(),
        }
    }

    fn rate(limit: u64, window_secs: u64) -> RateSetting {
        RateSetting { limit, window_secs }
    }

    #[tokio::test]
    async fn the_limit_refuses_with_the_time_left_in_the_window() {
        let l = limiter();
        let id = uuid::Uuid::new_v4();
        for _ in 0..3 {
            assert!(l.hit(Bucket::Money(id), rate(3, 60)).await.is_ok());
        }
        let refused = l
            .hit(Bucket::Money(id), rate(3, 60))
            .await
            .expect_err("4th");
        assert!((1..=60).contains(&refused.retry_after_secs));
        // Costs add up: a batch of 3 fills a budget of 3.
        let other = uuid::Uuid::new_v4();
        assert!(l.hit_n(Bucket::User(other), rate(3, 60), 3).await.is_ok());
        assert!(l.hit(Bucket::User(other), rate(3, 60)).await.is_err());
    }

    #[tokio::test]
    async fn an_ipv6_network_counts_as_one_address() {
        let l = limiter();
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(l.hit(Bucket::LoginAddress(a), rate(1, 60)).await.is_ok());
        assert!(l.hit(Bucket::LoginAddress(b), rate(1, 60)).await.is_err());
        assert!(l.hit(Bucket::LoginAddress(c), rate(1, 60)).await.is_ok());
    }

    #[test]
    fn sweeping_keeps_live_windows_of_every_length() {
        let counters = Counters::default();
        let now = 1_000_000;
        // A long window still running and a short one that has ended.
        assert_eq!(counters.hit("long".into(), now + 800, now, 1), 1);
        assert_eq!(counters.hit("short".into(), now - 1, now - 30, 1), 1);
        {
            let mut counters = counters.0.lock().expect("lock");
            for i in 0..MAX_KEYS {
                counters.map.insert(format!("old{i}"), (now - 5, 1));
            }
        }
        // The next hit sweeps: ended windows go, the running one stays.
        assert_eq!(counters.hit("new".into(), now + 60, now, 1), 1);
        assert_eq!(counters.hit("long".into(), now + 800, now, 1), 2);
        {
            let counters = counters.0.lock().expect("lock");
            assert!(!counters.map.contains_key("short") && !counters.map.contains_key("old1"));
        }
        // Within the same second no further sweep runs, however full.
        {
            let mut counters = counters.0.lock().expect("lock");
            for i in 0..MAX_KEYS {
                counters.map.insert(format!("again{i}"), (now - 1, 1));
            }
        }
        counters.hit("other".into(), now + 60, now, 1);
        assert!(counters.0.lock().expect("lock").map.contains_key("again1"));
        // A second later it does.
        counters.hit("other".into(), now + 60, now + 1, 1);
        assert!(!counters.0.lock().expect("lock").map.contains_key("again1"));
    }
}
