//! Configuration, read from environment variables only.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BIND_ADDR` | `127.0.0.1:8080` | listen address; port 0 picks a free port |
//! | `DATABASE_URL` | unset: SQLite at `$DATA_DIR/wallet.sqlite` | `postgres://...` for production |
//! | `DATABASE_MAX_CONNECTIONS` | `10` | PostgreSQL pool size |
//! | `DATA_DIR` | `./data` | embedded database and generated secret |
//! | `REDIS_URL` | unset: in-process bus | Redis for pub/sub and shared limits |
//! | `JWT_SECRET` | development: generated under `DATA_DIR` | HMAC key for access tokens, at least 32 bytes; required in production |
//! | `APP_ENV` | `development` | `development` or `production` |
//! | `RUST_LOG` | `info` | log filter |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//! | `ACCESS_TOKEN_TTL_SECS` | `900` | access token lifetime |
//! | `REFRESH_TOKEN_TTL_SECS` | `2592000` | refresh token lifetime (30 days) |
//! | `IDEMPOTENCY_KEY_RETENTION_SECS` | `86400` | how long keys are kept (at least 24 h) |
//! | `IDEMPOTENCY_KEY_LEASE_SECS` | `30` | how long a crashed `startDeposit` request blocks its key (a money movement's key is free once its transaction ends) |
//! | `GRAPHIQL_ENABLED` | `true` in development, `false` in production | serve GraphiQL at `GET /graphql` |
//! | `GRAPHQL_INTROSPECTION` | `true` in development, `false` in production | allow schema introspection |
//! | `GRAPHQL_FIELD_SUGGESTIONS` | as `GRAPHQL_INTROSPECTION` | "did you mean ...?" in validation errors (they reveal field names) |
//! | `GRAPHQL_TRUSTED_DOCUMENTS` | `off` | `off`, `allow` (manifest documents by id, others too) or `require` (only manifest documents; recommended in production) |
//! | `GRAPHQL_TRUSTED_DOCUMENTS_FILE` | none; required unless `off` | persisted-documents manifests, comma-separated (keep every app release's) |
//! | `REQUEST_BODY_LIMIT_BYTES` | `1048576` | largest accepted request body |
//! | `REQUEST_TIMEOUT_SECS` | `30` | longest request execution |
//! | `OUTBOX_RELAY_ENABLED` | `true` | run the outbox relay in this process |
//! | `OUTBOX_POLL_INTERVAL_MS` | `500` | relay polling when no `NOTIFY` arrives |
//! | `OUTBOX_GATHER_MS` | `5` | while events keep coming, how long they gather between relay rounds (fewer, fuller rounds; 0 publishes each round at once) |
//! | `OUTBOX_RETENTION_SECS` | `604800` | published events older than this (7 days) are pruned; `afterSequence` before them answers `REPLAY_UNAVAILABLE` |
//! | `OUTBOX_PRUNE_INTERVAL_SECS` | `300` | how often pruning runs (in bounded batches) |
//! | `SUBSCRIPTION_BUFFER` | `256` | events buffered per subscriber before it is cut off |
//! | `WS_INIT_TIMEOUT_SECS` | `10` | time a WebSocket client has to send `connection_init` |
//! | `WS_KEEPALIVE_SECS` | `15` | server ping interval; two missed pongs close the socket |
//! | `WS_MAX_SUBSCRIPTIONS` | `25` | subscriptions per WebSocket connection |
//! | `WS_MAX_MESSAGE_BYTES` | `65536` | largest WebSocket message accepted |
//! | `WS_READ_BUFFER_BYTES` | `1024` | per-socket read buffer; longer messages take several reads (tungstenite's default is 131072) |
//! | `WS_WRITE_BUFFER_BYTES` | `4096` | per-socket write buffer (tungstenite's default is 131072) |
//! | `WEBAUTHN_RP_ID` | `localhost` | WebAuthn relying party id: the site's registrable domain |
//! | `WEBAUTHN_RP_ORIGIN` | `http://localhost:8080` | origin of the web app that runs the ceremonies (on `WEBAUTHN_RP_ID`) |
//! | `WEBAUTHN_EXTRA_ORIGINS` | empty | more allowed origins, comma-separated (other web apps, native app origins) |
//! | `WEBAUTHN_RP_NAME` | `wallet-bff` | name authenticators show |
//! | `WEBAUTHN_CEREMONY_TTL_SECS` | `120` | how long a registration, login or step-up ceremony may take |
//! | `STEP_UP_TOKEN_TTL_SECS` | `300` | lifetime of a step-up token (single use) |
//! | `STEP_UP_TRANSFER_THRESHOLDS` | `USD=1000,EUR=1000,USDC=1000,BTC=0.02,ETH=0.5` | transfers of at least this amount need a step-up token |
//! | `RATE_LIMITS_ENABLED` | `true` | enforce the rate limits below (in Redis when `REDIS_URL` is set) |
//! | `RATE_LIMIT_PREFIX` | `wallet-bff:rl` | Redis key prefix of the counters (instances sharing it share limits) |
//! | `RATE_LOGIN_PER_ACCOUNT` | `10/900` | sign-in attempts per account: count/window seconds |
//! | `RATE_LOGIN_PER_ADDRESS` | `50/900` | sign-in attempts per client address |
//! | `RATE_MONEY_PER_USER` | `30/60` | money mutations per user |
//! | `RATE_REQUESTS_ANONYMOUS` | `300/60` | requests per client address without a token |
//! | `RATE_REQUESTS_USER` | `600/60` | requests per signed-in user |
//! | `RATE_REQUESTS_STAFF` | `3000/60` | requests per user with a staff role (support, compliance, admin) |
//! | `TRUST_FORWARDED_FOR` | `false` | take the client address from `X-Forwarded-For` (only behind a proxy that sets it) |
//! | `METRICS_BIND_ADDR` | unset | a second listen address serving only `/metrics`, for the scraper's network |
//! | `METRICS_TOKEN` | unset | bearer token `/metrics` on the main address requires (16+ characters); in production, without it the main address does not serve `/metrics` |
//!
//! OAuth2 sign-in (`OAUTH_*`) is in [`oauth`]. The notifier's settings (`SMTP_*`,
//! `NOTIFY_*`) are in [`notify`]; KYC, tier limits
//! and personal-data keys (`KYC_*`, `TIER_LIMITS`, `PII_KEYS`) in [`kyc`]; exchange
//! (`FX_*`) in [`payments`].

pub mod kyc;
pub mod notify;
pub mod oauth;
pub mod payments;
pub mod traces;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use domain::Currency;
use rust_decimal::Decimal;

pub use kyc::KycSettings;
pub use notify::NotifySettings;
pub use oauth::{ClientAuth, OauthProviderSettings};

/// Where the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// Local development: GraphiQL and introspection on, secrets may be generated.
    Development,
    /// Production: everything sensitive must be configured.
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server. `Debug` never prints secrets.
#[derive(Clone)]
pub struct Settings {
    /// Listen address.
    pub bind_addr: SocketAddr,
    /// Database URL (PostgreSQL, or the SQLite file of the embedded default).
    pub database_url: String,
    /// True when running on the embedded SQLite default.
    pub embedded: bool,
    /// PostgreSQL pool size.
    pub database_max_connections: u32,
    /// Data directory for the embedded default.
    pub data_dir: PathBuf,
    /// Redis URL, if any.
    pub redis_url: Option<String>,
    /// HMAC key for access tokens; `None` means generate or load under `data_dir`.
    pub jwt_secret: Option<String>,
    /// Environment.
    pub app_env: AppEnv,
    /// Log format.
    pub log_format: LogFormat,
    /// Access token lifetime, seconds.
    pub access_token_ttl_secs: i64,
    /// Refresh token lifetime, seconds.
    pub refresh_token_ttl_secs: i64,
    /// Idempotency key retention, seconds.
    pub idempotency_retention_secs: i64,
    /// Idempotency key lease, seconds.
    pub idempotency_lease_secs: i64,
    /// Whether GraphiQL is served.
    pub graphiql_enabled: bool,
    /// Whether introspection is allowed.
    pub introspection_enabled: bool,
    /// Whether validation errors suggest field names.
    pub suggestions_enabled: bool,
    /// How trusted documents are enforced.
    pub trusted_documents: crate::graphql::trusted::TrustedMode,
    /// The persisted-documents manifests.
    pub trusted_documents_files: Vec<PathBuf>,
    /// Largest request body, bytes.
    pub body_limit_bytes: usize,
    /// Request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Whether this process runs the outbox relay.
    pub outbox_relay_enabled: bool,
    /// Relay poll interval, milliseconds.
    pub outbox_poll_interval_ms: u64,
    /// While events keep coming, how long they gather between relay
    /// rounds, milliseconds.
    pub outbox_gather_ms: u64,
    /// Published events are kept this long, seconds.
    pub outbox_retention_secs: u64,
    /// How often pruning runs, seconds.
    pub outbox_prune_interval_secs: u64,
    /// Events buffered per subscriber.
    pub subscription_buffer: usize,
    /// Seconds a WebSocket client has to initialise.
    pub ws_init_timeout_secs: u64,
    /// WebSocket keep-alive interval, seconds.
    pub ws_keepalive_secs: u64,
    /// Subscriptions per WebSocket connection.
    pub ws_max_subscriptions: usize,
    /// Largest WebSocket message, bytes.
    pub ws_max_message_bytes: usize,
    /// Per-socket read buffer, bytes.
    pub ws_read_buffer_bytes: usize,
    /// Per-socket write buffer, bytes.
    pub ws_write_buffer_bytes: usize,
    /// WebAuthn relying party id.
    pub webauthn_rp_id: String,
    /// Origin of the web app running the ceremonies.
    pub webauthn_rp_origin: String,
    /// More allowed origins.
    pub webauthn_extra_origins: Vec<String>,
    /// Relying party name.
    pub webauthn_rp_name: String,
    /// Ceremony lifetime, seconds.
    pub webauthn_ceremony_ttl_secs: u64,
    /// Step-up token lifetime, seconds.
    pub step_up_token_ttl_secs: i64,
    /// Transfers of at least this amount need step-up, per currency.
    pub step_up_thresholds: BTreeMap<Currency, Decimal>,
    /// Configured OAuth2 providers.
    pub oauth_providers: Vec<OauthProviderSettings>,
    /// Redirect URIs apps may use.
    pub oauth_redirect_uris: Vec<String>,
    /// Authorization lifetime, seconds.
    pub oauth_flow_ttl_secs: i64,
    /// Whether rate limits apply.
    pub rate_limits_enabled: bool,
    /// Redis key prefix of the rate limit counters.
    pub rate_limit_prefix: String,
    /// Sign-in attempts per account.
    pub rate_login_per_account: RateSetting,
    /// Sign-in attempts per client address.
    pub rate_login_per_address: RateSetting,
    /// Money mutations per user.
    pub rate_money_per_user: RateSetting,
    /// Requests per anonymous client address.
    pub rate_requests_anonymous: RateSetting,
    /// Requests per user.
    pub rate_requests_user: RateSetting,
    /// Requests per staff user.
    pub rate_requests_staff: RateSetting,
    /// Whether `X-Forwarded-For` names the client.
    pub trust_forwarded_for: bool,
    /// A listen address serving only `/metrics`.
    pub metrics_bind_addr: Option<SocketAddr>,
    /// The bearer token `/metrics` on the main address requires.
    pub metrics_token: Option<String>,
    /// The notifier: SMTP, delivery workers, retries.
    pub notify: NotifySettings,
    /// KYC provider, tier limits, personal-data keys.
    pub kyc: KycSettings,
    /// Currency exchange.
    pub fx: payments::FxSettings,
    /// The card payment provider.
    pub payments: payments::PaymentsSettings,
    /// OpenTelemetry traces; `None` when off.
    pub traces: Option<traces::TraceSettings>,
}

/// A rate: at most `limit` events per `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSetting {
    /// Events allowed per window.
    pub limit: u64,
    /// Window length, seconds.
    pub window_secs: u64,
}

impl std::str::FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (limit, window) = s
            .split_once('/')
            .ok_or_else(|| "expected count/seconds such as 10/60".to_owned())?;
        let limit: u64 = limit
            .trim()
            .parse()
            .map_err(|_| "count is not a number".to_owned())?;
        let window_secs: u64 = window
            .trim()
            .parse()
            .map_err(|_| "seconds is not a number".to_owned())?;
        if limit == 0 || window_secs == 0 {
            return Err("count and seconds must be above 0".to_owned());
        }
        Ok(Self { limit, window_secs })
    }
}

/// Parses `USD=1000,BTC=0.02`: every currency must be given.
pub fn parse_thresholds(raw: &str) -> anyhow::Result<BTreeMap<Currency, Decimal>> {
    let mut map = BTreeMap::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (code, amount) = part
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{part:?} is not CURRENCY=amount"))?;
        let currency =
            Currency::parse(code).map_err(|e| anyhow::anyhow!("{part:?}: {}", e.message))?;
        let amount = domain::money::parse_exact(amount.trim())
            .map_err(|e| anyhow::anyhow!("{part:?}: {}", e.message))?;
        if amount.is_sign_negative() {
            bail!("{part:?}: the threshold must not be negative");
        }
        map.insert(currency, amount);
    }
    for currency in Currency::ALL {
        if !map.contains_key(&currency) {
            bail!("no threshold for {currency}");
        }
    }
    Ok(map)
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind_addr", &self.bind_addr)
            .field("embedded", &self.embedded)
            .field("data_dir", &self.data_dir)
            .field("redis", &self.redis_url.is_some())
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("app_env", &self.app_env)
            .finish_non_exhaustive()
    }
}

/// Default of `STEP_UP_TRANSFER_THRESHOLDS`.
pub const DEFAULT_STEP_UP_THRESHOLDS: &str = "USD=1000,EUR=1000,USDC=1000,BTC=0.02,ETH=0.5";

const fn rate(limit: u64, window_secs: u64) -> RateSetting {
    RateSetting { limit, window_secs }
}

/// Where settings are read from: the process environment, or a map in tests.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.var(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={raw:?} is invalid: {e}")),
        }
    }

    fn flag(&self, name: &str, default: bool) -> anyhow::Result<bool> {
        match self.var(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => bail!("{name}={v:?} is not a boolean (true/false)"),
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.var(name)
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Settings {
    /// Reads every variable; fails with a message naming the bad one.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads every variable through `lookup` ([`Settings::from_env`] reads
    /// the process environment).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = &Env(lookup);
        let app_env = match env.var("APP_ENV").as_deref().map(str::trim) {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => bail!("APP_ENV={other:?} must be development or production"),
        };
        let dev = app_env == AppEnv::Development;
        let log_format = match env.var("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT={other:?} must be text or json"),
        };
        let data_dir = PathBuf::from(env.var("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let (database_url, embedded) = match env.var("DATABASE_URL") {
            Some(url) => (url, false),
            None => (
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("wallet.sqlite").display()
                ),
                true,
            ),
        };
        let jwt_secret = env.var("JWT_SECRET");
        if let Some(secret) = &jwt_secret
            && secret.len() < 32
        {
            bail!("JWT_SECRET must have at least 32 bytes");
        }
        if jwt_secret.is_none() && !dev {
            bail!("JWT_SECRET is required when APP_ENV=production");
        }
        let idempotency_retention_secs = env.parsed("IDEMPOTENCY_KEY_RETENTION_SECS", 86_400i64)?;
        if idempotency_retention_secs < 86_400 {
            bail!("IDEMPOTENCY_KEY_RETENTION_SECS must be at least 86400 (24 hours)");
        }
        let introspection_enabled = env.flag("GRAPHQL_INTROSPECTION", dev)?;
        let settings = Self {
            bind_addr: env.parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url,
            embedded,
            database_max_connections: env.parsed("DATABASE_MAX_CONNECTIONS", 10u32)?,
            data_dir,
            redis_url: env.var("REDIS_URL"),
            jwt_secret,
            app_env,
            log_format,
            access_token_ttl_secs: env.parsed("ACCESS_TOKEN_TTL_SECS", 900i64)?,
            refresh_token_ttl_secs: env.parsed("REFRESH_TOKEN_TTL_SECS", 2_592_000i64)?,
            idempotency_retention_secs,
            idempotency_lease_secs: env.parsed("IDEMPOTENCY_KEY_LEASE_SECS", 30i64)?,
            graphiql_enabled: env.flag("GRAPHIQL_ENABLED", dev)?,
            introspection_enabled,
            suggestions_enabled: env.flag("GRAPHQL_FIELD_SUGGESTIONS", introspection_enabled)?,
            trusted_documents: env.parsed(
                "GRAPHQL_TRUSTED_DOCUMENTS",
                crate::graphql::trusted::TrustedMode::Off,
            )?,
            trusted_documents_files: env
                .list("GRAPHQL_TRUSTED_DOCUMENTS_FILE")
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            body_limit_bytes: env.parsed("REQUEST_BODY_LIMIT_BYTES", 1_048_576usize)?,
            request_timeout_secs: env.parsed("REQUEST_TIMEOUT_SECS", 30u64)?,
            outbox_relay_enabled: env.flag("OUTBOX_RELAY_ENABLED", true)?,
            outbox_poll_interval_ms: env.parsed("OUTBOX_POLL_INTERVAL_MS", 500u64)?,
            outbox_gather_ms: env.parsed("OUTBOX_GATHER_MS", 5u64)?,
            outbox_retention_secs: env.parsed("OUTBOX_RETENTION_SECS", 604_800u64)?,
            outbox_prune_interval_secs: env.parsed("OUTBOX_PRUNE_INTERVAL_SECS", 300u64)?.max(1),
            subscription_buffer: env.parsed("SUBSCRIPTION_BUFFER", 256usize)?,
            ws_init_timeout_secs: env.parsed("WS_INIT_TIMEOUT_SECS", 10u64)?,
            ws_keepalive_secs: env.parsed("WS_KEEPALIVE_SECS", 15u64)?,
            ws_max_subscriptions: env.parsed("WS_MAX_SUBSCRIPTIONS", 25usize)?,
            ws_max_message_bytes: env.parsed("WS_MAX_MESSAGE_BYTES", 65_536usize)?,
            ws_read_buffer_bytes: env.parsed("WS_READ_BUFFER_BYTES", 1_024usize)?,
            ws_write_buffer_bytes: env.parsed("WS_WRITE_BUFFER_BYTES", 4_096usize)?,
            webauthn_rp_id: env
                .var("WEBAUTHN_RP_ID")
                .unwrap_or_else(|| "localhost".to_owned()),
            webauthn_rp_origin: env
                .var("WEBAUTHN_RP_ORIGIN")
                .unwrap_or_else(|| "http://localhost:8080".to_owned()),
            webauthn_extra_origins: env.list("WEBAUTHN_EXTRA_ORIGINS"),
            webauthn_rp_name: env
                .var("WEBAUTHN_RP_NAME")
                .unwrap_or_else(|| "wallet-bff".to_owned()),
            webauthn_ceremony_ttl_secs: env.parsed("WEBAUTHN_CEREMONY_TTL_SECS", 120u64)?,
            step_up_token_ttl_secs: env.parsed("STEP_UP_TOKEN_TTL_SECS", 300i64)?,
            step_up_thresholds: parse_thresholds(
                &env.var("STEP_UP_TRANSFER_THRESHOLDS")
                    .unwrap_or_else(|| DEFAULT_STEP_UP_THRESHOLDS.to_owned()),
            )
            .context("STEP_UP_TRANSFER_THRESHOLDS")?,
            oauth_providers: oauth::providers(env)?,
            oauth_redirect_uris: env.list("OAUTH_REDIRECT_URIS"),
            oauth_flow_ttl_secs: env.parsed("OAUTH_FLOW_TTL_SECS", 600i64)?,
            rate_limits_enabled: env.flag("RATE_LIMITS_ENABLED", true)?,
            rate_limit_prefix: env
                .var("RATE_LIMIT_PREFIX")
                .unwrap_or_else(|| "wallet-bff:rl".to_owned()),
            rate_login_per_account: env.parsed("RATE_LOGIN_PER_ACCOUNT", rate(10, 900))?,
            rate_login_per_address: env.parsed("RATE_LOGIN_PER_ADDRESS", rate(50, 900))?,
            rate_money_per_user: env.parsed("RATE_MONEY_PER_USER", rate(30, 60))?,
            rate_requests_anonymous: env.parsed("RATE_REQUESTS_ANONYMOUS", rate(300, 60))?,
            rate_requests_user: env.parsed("RATE_REQUESTS_USER", rate(600, 60))?,
            rate_requests_staff: env.parsed("RATE_REQUESTS_STAFF", rate(3000, 60))?,
            trust_forwarded_for: env.flag("TRUST_FORWARDED_FOR", false)?,
            metrics_bind_addr: env
                .var("METRICS_BIND_ADDR")
                .map(|v| {
                    v.parse()
                        .with_context(|| format!("METRICS_BIND_ADDR={v:?} is not an address"))
                })
                .transpose()?,
            metrics_token: match env.var("METRICS_TOKEN") {
                Some(t) if t.len() < 16 => bail!("METRICS_TOKEN must have at least 16 characters"),
                other => other,
            },
            notify: NotifySettings::read(env, !dev)?,
            kyc: KycSettings::read(env, !dev)?,
            fx: payments::FxSettings::read(env, !dev)?,
            payments: payments::PaymentsSettings::read(env, !dev)?,
            traces: traces::TraceSettings::read(env)?,
        };
        if settings.webauthn_ceremony_ttl_secs == 0 || settings.step_up_token_ttl_secs <= 0 {
            bail!("WEBAUTHN_CEREMONY_TTL_SECS and STEP_UP_TOKEN_TTL_SECS must be positive");
        }
        if settings.trusted_documents != crate::graphql::trusted::TrustedMode::Off
            && settings.trusted_documents_files.is_empty()
        {
            bail!(
                "GRAPHQL_TRUSTED_DOCUMENTS_FILE is required when GRAPHQL_TRUSTED_DOCUMENTS is allow or require"
            );
        }
        if settings.oauth_flow_ttl_secs <= 0 {
            bail!("OAUTH_FLOW_TTL_SECS must be positive");
        }
        if !settings.oauth_providers.is_empty() && settings.oauth_redirect_uris.is_empty() {
            bail!("OAUTH_REDIRECT_URIS is required when OAUTH_PROVIDERS is set");
        }
        if !dev {
            // The client secret and the users' codes and tokens travel there.
            for p in &settings.oauth_providers {
                for url in [&p.issuer, &p.auth_url, &p.token_url, &p.userinfo_url]
                    .into_iter()
                    .flatten()
                {
                    if !url.starts_with("https://") {
                        bail!(
                            "OAuth2 provider {}: {url} must be an https:// URL in production",
                            p.name
                        );
                    }
                }
            }
        }
        if settings.access_token_ttl_secs <= 0 || settings.refresh_token_ttl_secs <= 0 {
            bail!("token lifetimes must be positive");
        }
        if settings.ws_max_message_bytes < 1024
            || settings.ws_read_buffer_bytes == 0
            || settings.ws_write_buffer_bytes == 0
        {
            bail!("WS_MAX_MESSAGE_BYTES must be at least 1024 and the WebSocket buffers above 0");
        }
        if settings.subscription_buffer == 0 || settings.ws_max_subscriptions == 0 {
            bail!("SUBSCRIPTION_BUFFER and WS_MAX_SUBSCRIPTIONS must be above 0");
        }
        if settings.idempotency_lease_secs <= 0 {
            bail!("IDEMPOTENCY_KEY_LEASE_SECS must be positive");
        }
        Ok(settings)
    }

    /// The JWT secret: configured, or generated once and kept in `DATA_DIR`
    /// (development only).
    pub fn resolve_jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = &self.jwt_secret {
            return Ok(secret.as_bytes().to_vec());
        }
        let path = self.data_dir.join("jwt_secret");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            let trimmed = existing.trim();
            if trimmed.len() >= 32 {
                return Ok(trimmed.as_bytes().to_vec());
            }
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let secret = crate::auth::tokens::random_token();
        write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a JWT secret for development");
        Ok(secret.into_bytes())
    }

    /// The personal-data master keys: `PII_KEYS`, or (development only) a
    /// key generated once and kept in `DATA_DIR`.
    pub fn resolve_pii_keys(&self) -> anyhow::Result<entity::pii::Keyring> {
        if let Some(raw) = &self.kyc.pii_keys {
            return entity::pii::Keyring::parse(raw).map_err(|e| anyhow::anyhow!("PII_KEYS: {e}"));
        }
        let path = self.data_dir.join("pii_keys");
        if let Ok(existing) = std::fs::read_to_string(&path) {
            return entity::pii::Keyring::parse(existing.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        let generated = entity::pii::Keyring::generate("dev-1");
        write_private(&path, &generated).with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "generated a personal-data key for development");
        entity::pii::Keyring::parse(&generated).map_err(|e| anyhow::anyhow!("generated key: {e}"))
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn production_hides_the_schema_graphiql_and_suggestions_by_default() {
        let secret = ("JWT_SECRET", "0123456789abcdef0123456789abcdef");
        let keys = (
            "PII_KEYS",
            "*k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        );
        let prod = settings_of(&[("APP_ENV", "production"), secret, keys]).expect("production");
        assert!(!prod.introspection_enabled);
        assert!(!prod.suggestions_enabled);
        assert!(!prod.graphiql_enabled);
        let dev = settings_of(&[]).expect("development");
        assert!(dev.introspection_enabled && dev.suggestions_enabled && dev.graphiql_enabled);
        assert!(dev.embedded);
        // Each can be switched on its own.
        let mixed = settings_of(&[
            ("APP_ENV", "production"),
            secret,
            keys,
            ("GRAPHQL_INTROSPECTION", "true"),
            ("GRAPHQL_FIELD_SUGGESTIONS", "false"),
        ])
        .expect("mixed");
        assert!(mixed.introspection_enabled && !mixed.suggestions_enabled);
        assert!(
            settings_of(&[("APP_ENV", "production")]).is_err(),
            "no JWT_SECRET"
        );
        let provider = |issuer: &'static str| {
            settings_of(&[
                ("APP_ENV", "production"),
                secret,
                keys,
                ("OAUTH_PROVIDERS", "idp"),
                ("OAUTH_IDP_ISSUER", issuer),
                ("OAUTH_IDP_CLIENT_ID", "c"),
                ("OAUTH_IDP_CLIENT_SECRET", "s"),
                ("OAUTH_REDIRECT_URIS", "https://app.example/cb"),
            ])
        };
        assert!(provider("https://idp.example").is_ok());
        assert!(provider("http://idp.example").is_err(), "plain HTTP");
        assert!(settings_of(&[("GRAPHIQL_ENABLED", "maybe")]).is_err());
    }

    #[test]
    fn wrong_pii_keys_refuse_to_start_and_name_the_variable_not_the_key() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        assert!(settings_of(&[("PII_KEYS", &format!("*k1={key}"))]).is_ok());
        for raw in [
            format!("k1={key}"),
            "*k1=c2hvcnQ=".to_owned(),
            format!("*k1={key},*k2={key}"),
        ] {
            let err = format!("{:#}", settings_of(&[("PII_KEYS", &raw)]).expect_err(&raw));
            assert!(err.contains("PII_KEYS"), "{err}");
            assert!(!err.contains(key) && !err.contains("c2hvcnQ="), "{err}");
        }
        let production = settings_of(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]);
        let err = format!("{:#}", production.expect_err("no PII_KEYS"));
        assert!(err.contains("PII_KEYS"), "{err}");
    }

    #[test]
    fn development_generates_one_pii_key_under_data_dir_and_keeps_it() {
        let dir = std::env::temp_dir().join(format!("wallet-bff-pii-{}", uuid::Uuid::new_v4()));
        let settings = settings_of(&[("DATA_DIR", dir.to_str().expect("path"))]).expect("dev");
        let first = settings.resolve_pii_keys().expect("generated");
        let again = settings.resolve_pii_keys().expect("read back");
        assert_eq!(first.current_id(), again.current_id());
        let user = entity::pii::UserKey::generate();
        let at = entity::pii::Field::new("users", "phone", uuid::Uuid::now_v7());
        let sealed = first.seal(&user, at, "+15550000000");
        assert_eq!(
            again.open(&user, at, &sealed).expect("same key"),
            "+15550000000"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("pii_keys"))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn exchange_settings_are_checked_and_production_has_no_fixed_table() {
        use payments::RatesSource;
        assert_eq!(settings_of(&[]).expect("dev").fx.rates, RatesSource::Fixed);
        let production = settings_of(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            (
                "PII_KEYS",
                "*k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ])
        .expect("production");
        assert_eq!(production.fx.rates, RatesSource::Off);
        let err = |vars: &[(&str, &str)]| format!("{:#}", settings_of(vars).expect_err("refused"));
        assert!(err(&[("FX_FEE_BPS", "10000")]).contains("FX_FEE_BPS"));
        assert!(err(&[("FX_RATES_URL", "ftp://rates")]).contains("FX_RATES_URL"));
        assert!(err(&[("FX_QUOTE_TTL_SECS", "0")]).contains("FX_QUOTE_TTL_SECS"));
    }

    #[test]
    fn kyc_provider_settings_come_together() {
        let err = |vars: &[(&str, &str)]| format!("{:#}", settings_of(vars).expect_err("refused"));
        assert!(err(&[("KYC_PROVIDER_BASE_URL", "http://kyc.local")]).contains("KYC_APP_TOKEN"));
        assert!(err(&[("KYC_APP_TOKEN", "t")]).contains("KYC_PROVIDER_BASE_URL"));
        assert!(err(&[("TIER_LIMITS", "0:*:USD=5")]).contains("TIER_LIMITS"));
        assert!(err(&[("KYC_LEVEL_NAME", "gold")]).contains("KYC_LEVEL_NAME"));
        let ok = settings_of(&[
            ("KYC_PROVIDER_BASE_URL", "http://kyc.local/"),
            ("KYC_APP_TOKEN", "t"),
            ("KYC_SECRET_KEY", "s"),
            ("KYC_WEBHOOK_SECRET", "0123456789abcdef"),
        ])
        .expect("complete");
        assert_eq!(
            ok.kyc.provider.expect("provider").base_url,
            "http://kyc.local"
        );
    }

    #[test]
    fn every_variable_read_is_documented_in_readme_and_env_sample() {
        let asked = std::sync::Mutex::new(Vec::<String>::new());
        Settings::from_lookup(&|name| {
            asked.lock().expect("names").push(name.to_owned());
            None
        })
        .expect("defaults");
        let asked = asked.into_inner().expect("names");
        assert!(asked.len() > 40, "{asked:?}");
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for file in ["README.md", ".env.sample"] {
            let text = std::fs::read_to_string(format!("{root}/{file}")).expect(file);
            let missing: Vec<&String> = asked
                .iter()
                .filter(|n| !text.contains(n.as_str()))
                .collect();
            assert!(missing.is_empty(), "{file} does not document {missing:?}");
        }
    }

    #[test]
    fn a_malformed_smtp_setting_refuses_to_start_and_names_the_variable_not_the_password() {
        let err = |vars: &[(&str, &str)]| format!("{:#}", settings_of(vars).expect_err("refused"));
        let bad_url = err(&[
            ("SMTP_URL", "smpt://user:s3cret@mail:587"),
            ("SMTP_FROM", "a@b.example"),
        ]);
        assert!(bad_url.contains("SMTP_URL"), "{bad_url}");
        assert!(!bad_url.contains("s3cret"), "{bad_url}");
        let no_from = err(&[("SMTP_URL", "smtp://mail:25")]);
        assert!(no_from.contains("SMTP_FROM"), "{no_from}");
        let bad_from = err(&[
            ("SMTP_URL", "smtp://mail:25"),
            ("SMTP_FROM", "not an address"),
        ]);
        assert!(bad_from.contains("SMTP_FROM"), "{bad_from}");
        assert!(err(&[("NOTIFY_MAX_ATTEMPTS", "0")]).contains("NOTIFY_MAX_ATTEMPTS"));
        for url in [
            "smtp://user:pass@mail.example:587?tls=required",
            "smtps://user:pass@mail.example",
            "smtp://127.0.0.1:2525",
        ] {
            let s = settings_of(&[
                ("SMTP_URL", url),
                ("SMTP_FROM", "Wallet <no-reply@wallet.example>"),
            ])
            .unwrap_or_else(|e| panic!("{url}: {e:#}"));
            assert!(s.notify.smtp.is_some());
        }
        assert!(
            settings_of(&[]).expect("default").notify.smtp.is_none(),
            "e-mail off by default"
        );
    }

    #[test]
    fn a_malformed_service_account_file_refuses_to_start_and_names_the_variable() {
        let dir =
            std::env::temp_dir().join(format!("wallet-bff-fcm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("sa.json");
        let path = file.display().to_string();
        let err = |contents: Option<&str>| {
            match contents {
                Some(c) => std::fs::write(&file, c).expect("write"),
                None => {
                    let _ = std::fs::remove_file(&file);
                }
            }
            format!(
                "{:#}",
                settings_of(&[("FCM_SERVICE_ACCOUNT_FILE", &path)]).expect_err("refused")
            )
        };
        for (contents, why) in [
            (None, "missing"),
            (Some("{ not json"), "not JSON"),
            (
                Some(r#"{"client_email": "a@b", "token_uri": "https://t"}"#),
                "no key",
            ),
            (
                Some(
                    r#"{"client_email": "a@b", "token_uri": "https://t", "private_key": "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n", "project_id": "p"}"#,
                ),
                "not an RSA key",
            ),
        ] {
            let e = err(contents);
            assert!(e.contains("FCM_SERVICE_ACCOUNT_FILE"), "{why}: {e}");
            assert!(!e.contains("c2VjcmV0"), "{why}: the key leaked: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rates_parse_as_count_per_seconds() {
        assert_eq!(
            "10/900".parse::<RateSetting>(),
            Ok(RateSetting {
                limit: 10,
                window_secs: 900
            })
        );
        for bad in ["10", "0/60", "10/0", "ten/60", "10/sixty", ""] {
            assert!(bad.parse::<RateSetting>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn thresholds_need_every_currency_and_exact_amounts() {
        let map = parse_thresholds(DEFAULT_STEP_UP_THRESHOLDS).expect("default parses");
        assert_eq!(map.len(), Currency::ALL.len());
        assert_eq!(map[&Currency::Btc].to_string(), "0.02");
        assert!(parse_thresholds("USD=1000").is_err(), "missing currencies");
        assert!(
            parse_thresholds("USD=-1,EUR=1,USDC=1,BTC=1,ETH=1").is_err(),
            "negative"
        );
        assert!(parse_thresholds("USD=1,EUR=1,USDC=1,BTC=1,ETH=1,XYZ=1").is_err());
        assert!(parse_thresholds("USD=1.5e3,EUR=1,USDC=1,BTC=1,ETH=1").is_err());
    }
}
