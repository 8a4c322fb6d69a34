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
//! | `IDEMPOTENCY_KEY_LEASE_SECS` | `30` | how long a crashed request blocks its key |
//! | `GRAPHIQL_ENABLED` | `true` in development, `false` in production | serve GraphiQL at `GET /graphql` |
//! | `GRAPHQL_INTROSPECTION` | `true` in development, `false` in production | allow schema introspection |
//! | `REQUEST_BODY_LIMIT_BYTES` | `1048576` | largest accepted request body |
//! | `REQUEST_TIMEOUT_SECS` | `30` | longest request execution |
//! | `OUTBOX_RELAY_ENABLED` | `true` | run the outbox relay in this process |
//! | `OUTBOX_POLL_INTERVAL_MS` | `500` | relay polling when no `NOTIFY` arrives |
//! | `SUBSCRIPTION_BUFFER` | `256` | events buffered per subscriber before it is cut off |
//! | `WS_INIT_TIMEOUT_SECS` | `10` | time a WebSocket client has to send `connection_init` |
//! | `WS_KEEPALIVE_SECS` | `15` | server ping interval; two missed pongs close the socket |
//! | `WS_MAX_SUBSCRIPTIONS` | `25` | subscriptions per WebSocket connection |
//! | `WS_MAX_MESSAGE_BYTES` | `65536` | largest WebSocket message accepted |
//! | `WS_READ_BUFFER_BYTES` | `4096` | per-socket read buffer (tungstenite's default is 131072) |
//! | `WS_WRITE_BUFFER_BYTES` | `4096` | per-socket write buffer (tungstenite's default is 131072) |

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

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
    /// Largest request body, bytes.
    pub body_limit_bytes: usize,
    /// Request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Whether this process runs the outbox relay.
    pub outbox_relay_enabled: bool,
    /// Relay poll interval, milliseconds.
    pub outbox_poll_interval_ms: u64,
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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is invalid: {e}")),
    }
}

fn flag(name: &str, default: bool) -> anyhow::Result<bool> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => bail!("{name}={v:?} is not a boolean (true/false)"),
    }
}

impl Settings {
    /// Reads every variable; fails with a message naming the bad one.
    pub fn from_env() -> anyhow::Result<Self> {
        let app_env = match var("APP_ENV").as_deref().map(str::trim) {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(other) => bail!("APP_ENV={other:?} must be development or production"),
        };
        let dev = app_env == AppEnv::Development;
        let log_format = match var("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("LOG_FORMAT={other:?} must be text or json"),
        };
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let (database_url, embedded) = match var("DATABASE_URL") {
            Some(url) => (url, false),
            None => (
                format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("wallet.sqlite").display()
                ),
                true,
            ),
        };
        let jwt_secret = var("JWT_SECRET");
        if let Some(secret) = &jwt_secret
            && secret.len() < 32
        {
            bail!("JWT_SECRET must have at least 32 bytes");
        }
        if jwt_secret.is_none() && !dev {
            bail!("JWT_SECRET is required when APP_ENV=production");
        }
        let idempotency_retention_secs = parsed("IDEMPOTENCY_KEY_RETENTION_SECS", 86_400i64)?;
        if idempotency_retention_secs < 86_400 {
            bail!("IDEMPOTENCY_KEY_RETENTION_SECS must be at least 86400 (24 hours)");
        }
        let settings = Self {
            bind_addr: parsed("BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url,
            embedded,
            database_max_connections: parsed("DATABASE_MAX_CONNECTIONS", 10u32)?,
            data_dir,
            redis_url: var("REDIS_URL"),
            jwt_secret,
            app_env,
            log_format,
            access_token_ttl_secs: parsed("ACCESS_TOKEN_TTL_SECS", 900i64)?,
            refresh_token_ttl_secs: parsed("REFRESH_TOKEN_TTL_SECS", 2_592_000i64)?,
            idempotency_retention_secs,
            idempotency_lease_secs: parsed("IDEMPOTENCY_KEY_LEASE_SECS", 30i64)?,
            graphiql_enabled: flag("GRAPHIQL_ENABLED", dev)?,
            introspection_enabled: flag("GRAPHQL_INTROSPECTION", dev)?,
            body_limit_bytes: parsed("REQUEST_BODY_LIMIT_BYTES", 1_048_576usize)?,
            request_timeout_secs: parsed("REQUEST_TIMEOUT_SECS", 30u64)?,
            outbox_relay_enabled: flag("OUTBOX_RELAY_ENABLED", true)?,
            outbox_poll_interval_ms: parsed("OUTBOX_POLL_INTERVAL_MS", 500u64)?,
            subscription_buffer: parsed("SUBSCRIPTION_BUFFER", 256usize)?,
            ws_init_timeout_secs: parsed("WS_INIT_TIMEOUT_SECS", 10u64)?,
            ws_keepalive_secs: parsed("WS_KEEPALIVE_SECS", 15u64)?,
            ws_max_subscriptions: parsed("WS_MAX_SUBSCRIPTIONS", 25usize)?,
            ws_max_message_bytes: parsed("WS_MAX_MESSAGE_BYTES", 65_536usize)?,
            ws_read_buffer_bytes: parsed("WS_READ_BUFFER_BYTES", 4_096usize)?,
            ws_write_buffer_bytes: parsed("WS_WRITE_BUFFER_BYTES", 4_096usize)?,
        };
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
