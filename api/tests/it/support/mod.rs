//! `TestApp`: spawns the server against a fresh database and talks GraphQL.

pub mod books;
pub mod fcm;
pub mod kyc;
pub mod otlp;
pub mod rates;
pub mod smtp;
pub mod stripe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::config::{AppEnv, LogFormat, RateSetting, Settings};

use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, oneshot};
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

const TEMPLATE_DB: &str = "wallet_bff_test_template";
const TEST_DB_PREFIX: &str = "wallet_bff_test_";
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// The PostgreSQL server URL without a database name.
fn pg_server_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

async fn pg_admin() -> DatabaseConnection {
    let url = format!("{}/postgres", pg_server_url());
    entity::store::connect::connect(&url, 2).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is required for the tests and is not reachable at {url}: {e}. Run scripts/test.sh, which starts it.")
    })
}

/// Builds the migrated template database once per test process (guarded by
/// an advisory lock against other processes) and drops leftovers.
async fn template() -> &'static str {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let admin = pg_admin().await;
            admin
                .execute_unprepared("SELECT pg_advisory_lock(727274)")
                .await
                .expect("advisory lock");
            let stale: Vec<String> = admin
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!(
                        "SELECT datname FROM pg_database WHERE datname LIKE '{TEST_DB_PREFIX}%'"
                    ),
                ))
                .await
                .expect("list databases")
                .into_iter()
                .map(|row| row.try_get::<String>("", "datname").expect("datname"))
                .collect();
            for name in stale {
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .expect("drop stale database");
            }
            admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{TEMPLATE_DB}\" WITH (FORCE)"
                ))
                .await
                .expect("drop template");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{TEMPLATE_DB}\""))
                .await
                .expect("create template");
            let db =
                entity::store::connect::connect(&format!("{}/{TEMPLATE_DB}", pg_server_url()), 1)
                    .await
                    .expect("connect template");
            <migration::Migrator as migration::MigratorTrait>::up(&db, None)
                .await
                .expect("migrate template");
            db.close().await.expect("close template");
            admin
                .execute_unprepared("SELECT pg_advisory_unlock(727274)")
                .await
                .expect("unlock");
            admin.close().await.expect("close admin");
        })
        .await;
    TEMPLATE_DB
}

async fn fresh_postgres() -> String {
    let template = template().await;
    let name = format!("{TEST_DB_PREFIX}{}", Uuid::new_v4().simple());
    let admin = pg_admin().await;
    admin
        .execute_unprepared(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .await
        .expect("clone template");
    admin.close().await.expect("close admin");
    format!("{}/{name}", pg_server_url())
}

/// A running server and a client for it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: DatabaseConnection,
    pub backend: Backend,
    _stop: Option<oneshot::Sender<()>>,
    _dir: Option<TempDir>,
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn test_settings(database_url: String, embedded: bool, data_dir: PathBuf) -> Settings {
    Settings {
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url,
        embedded,
        database_max_connections: 8,
        data_dir,
        redis_url: None,
        jwt_secret: Some(JWT_SECRET.to_owned()),
        app_env: AppEnv::Development,
        log_format: LogFormat::Text,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 3600,
        idempotency_retention_secs: 86_400,
        idempotency_lease_secs: 30,
        graphiql_enabled: true,
        introspection_enabled: true,
        suggestions_enabled: true,
        trusted_documents: api::graphql::trusted::TrustedMode::Off,
        trusted_documents_files: Vec::new(),
        body_limit_bytes: 1_048_576,
        request_timeout_secs: 30,
        outbox_relay_enabled: true,
        outbox_poll_interval_ms: 100,
        outbox_gather_ms: 5,
        outbox_retention_secs: 604_800,
        outbox_prune_interval_secs: 300,
        subscription_buffer: 256,
        ws_init_timeout_secs: 10,
        ws_keepalive_secs: 15,
        ws_max_subscriptions: 25,
        ws_max_message_bytes: 65_536,
        ws_read_buffer_bytes: 1_024,
        ws_write_buffer_bytes: 4_096,
        webauthn_rp_id: "localhost".to_owned(),
        webauthn_rp_origin: WEBAUTHN_ORIGIN.to_owned(),
        webauthn_extra_origins: Vec::new(),
        webauthn_rp_name: "wallet-bff tests".to_owned(),
        webauthn_ceremony_ttl_secs: 120,
        step_up_token_ttl_secs: 300,
        // Out of reach unless a test lowers them (the step-up tests do).
        step_up_thresholds: api::config::parse_thresholds(
            "USD=9999999999,EUR=9999999999,USDC=9999999999,BTC=9999999999,ETH=9999999999",
        )
        .expect("thresholds"),
        oauth_providers: Vec::new(),
        oauth_redirect_uris: Vec::new(),
        oauth_flow_ttl_secs: 600,
        rate_limits_enabled: true,
        // Each app counts in its own namespace unless a test shares one.
        rate_limit_prefix: format!("wallet-bff-test:{}", uuid::Uuid::new_v4()),
        rate_login_per_account: RateSetting {
            limit: 10_000,
            window_secs: 60,
        },
        rate_login_per_address: RateSetting {
            limit: 10_000,
            window_secs: 60,
        },
        rate_money_per_user: RateSetting {
            limit: 10_000,
            window_secs: 60,
        },
        rate_requests_anonymous: RateSetting {
            limit: 100_000,
            window_secs: 60,
        },
        rate_requests_user: RateSetting {
            limit: 100_000,
            window_secs: 60,
        },
        rate_requests_staff: RateSetting {
            limit: 100_000,
            window_secs: 60,
        },
        trust_forwarded_for: false,
        metrics_bind_addr: None,
        metrics_token: None,
        notify: api::config::NotifySettings {
            smtp: None,
            fcm: None,
            max_push_devices: 3,
            workers: 2,
            batch: 16,
            lease: std::time::Duration::from_secs(60),
            poll_interval: std::time::Duration::from_millis(100),
            retry: domain::notify::RetryPolicy {
                max_attempts: 8,
                base: std::time::Duration::from_millis(200),
                max: std::time::Duration::from_secs(5),
            },
        },
        kyc: api::config::KycSettings {
            provider: None,
            webhook_secret: None,
            level_name: "basic-kyc-level".to_owned(),
            level_tiers: api::config::kyc::parse_level_tiers(api::config::kyc::DEFAULT_LEVEL_TIERS)
                .expect("tiers"),
            webhook_max_bytes: 65536,
            // Tests that are not about limits move amounts no tier allows.
            limits: domain::limits::TierLimits::uniform(domain::limits::Limit {
                per_transaction: rust_decimal::Decimal::from(1_000_000_000_000i64),
                daily: rust_decimal::Decimal::from(1_000_000_000_000i64),
            }),
            pii_keys: Some(PII_KEYS.to_owned()),
            retention_years: 7,
        },
        fx: api::config::payments::FxSettings {
            rates: api::config::payments::RatesSource::Fixed,
            max_age: std::time::Duration::from_secs(300),
            fee_bps: 50,
            quote_ttl: std::time::Duration::from_secs(30),
        },
        payments: api::config::payments::PaymentsSettings {
            provider: None,
            webhook_secrets: Vec::new(),
            webhook_tolerance: std::time::Duration::from_secs(300),
            // Tests that are not about risk move money in patterns every
            // rule would flag; the risk tests set their own rules.
            risk: domain::risk::RiskRules::default()
                .with_overrides(QUIET_RISK)
                .expect("quiet rules"),
        },
        traces: None,
    }
}

/// Risk rules with every weight at zero: nothing is held or blocked.
pub const QUIET_RISK: &str = "velocity.weight=0,new_recipient.weight=0,withdrawal_after_deposit.weight=0,above_history.weight=0,new_device.weight=0";

/// The personal-data master key of the tests.
pub const PII_KEYS: &str = "*test-1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// Tier limits the real binary gets in tests that are not about limits.
pub const GENEROUS_LIMITS: &str =
    "0:*:*=9999999999/9999999999,1:*:*=9999999999/9999999999,2:*:*=9999999999/9999999999";

/// The web app origin the software authenticator signs for.
pub const WEBAUTHN_ORIGIN: &str = "http://localhost:3000";

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A fresh PostgreSQL database (cloned from the migrated template); its URL.
pub async fn fresh_database() -> String {
    fresh_postgres().await
}

/// A fresh PostgreSQL database with no tables at all; its URL.
pub async fn empty_database() -> String {
    // Leftovers of earlier runs are dropped with the template's.
    template().await;
    let name = format!("{TEST_DB_PREFIX}{}", Uuid::new_v4().simple());
    let admin = pg_admin().await;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create empty database");
    admin.close().await.expect("close admin");
    format!("{}/{name}", pg_server_url())
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let url = match backend {
            Backend::Postgres => Some(fresh_postgres().await),
            Backend::Sqlite => None,
        };
        Self::spawn_on(url, tweak).await
    }

    /// Spawns a server on an existing PostgreSQL database (`Some`) or a fresh
    /// SQLite file (`None`).
    pub async fn spawn_on(pg_url: Option<String>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = api::telemetry::init(LogFormat::Text, None);
        }
        let backend = if pg_url.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let (url, embedded, dir) = match pg_url {
            Some(url) => (url, false, None),
            None => {
                let dir = std::env::temp_dir()
                    .join(format!("wallet-bff-test-{}", Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.join("wallet.sqlite").display());
                (url, true, Some(TempDir(dir)))
            }
        };
        let data_dir = dir
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or_else(std::env::temp_dir);
        let mut settings = test_settings(url, embedded, data_dir);
        tweak(&mut settings);
        let state = api::build_state(settings).await.expect("build state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestApp {
            addr,
            client: reqwest::Client::new(),
            db: state.db.clone(),

            backend,
            _stop: Some(stop),
            _dir: dir,
        }
    }

    /// A client for a server that runs elsewhere (e.g. a [`ServerProcess`]),
    /// with its own pool on the same database for assertions.
    pub async fn attach(addr: SocketAddr, database_url: &str) -> TestApp {
        TestApp {
            addr,
            client: reqwest::Client::new(),
            db: entity::store::connect::connect(database_url, 2)
                .await
                .expect("connect"),
            backend: Backend::Postgres,
            _stop: None,
            _dir: None,
        }
    }

    /// Starts the server's graceful shutdown.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self._stop.take() {
            let _ = stop.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs an operation; returns the whole response body.
    /// The text of `/metrics` on the main address.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        assert!(resp.status().is_success(), "HTTP {}", resp.status());
        resp.json().await.expect("json body")
    }

    /// POSTs a GraphQL body (single or batch) and returns the raw response,
    /// for tests that look at the status and headers.
    pub async fn post_graphql(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = self.client.post(self.url("/graphql")).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// POSTs a GraphQL body without a token and returns the JSON answer,
    /// whatever the status.
    pub async fn post_json(&self, body: &Value) -> Value {
        self.post_graphql(None, body)
            .await
            .json()
            .await
            .expect("json body")
    }

    /// A preflighted GraphQL GET with these query parameters; the JSON answer.
    pub async fn get_json(&self, params: &[(&str, String)]) -> Value {
        self.client
            .get(self.url("/graphql"))
            .header("apollo-require-preflight", "true")
            .query(params)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    /// Opens a transaction that holds the row lock of a wallet (PostgreSQL),
    /// so that money moving through it waits until the transaction ends.
    pub async fn lock_wallet(&self, wallet_id: &str) -> sea_orm::DatabaseTransaction {
        use sea_orm::TransactionTrait;
        let blocker = self.db.begin().await.expect("begin");
        blocker
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT id FROM wallets WHERE id = $1 FOR UPDATE",
                [Uuid::parse_str(wallet_id).expect("wallet id").into()],
            ))
            .await
            .expect("lock the wallet");
        blocker
    }

    /// Registers a user and returns its session.
    /// The edges of `query` (a `notifications` connection) for the user,
    /// once at least `at_least` are there: the notifier makes them from
    /// committed events, a moment after the mutation answered.
    pub async fn notifications(&self, s: &Session, query: &str, at_least: usize) -> Vec<Value> {
        let mut edges = Vec::new();
        for _ in 0..100 {
            let body = self.gql(Some(&s.token), query, json!({})).await;
            edges = data(&body, "notifications")["edges"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if edges.len() >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        edges
    }

    pub async fn register(&self, email: &str) -> Session {
        self.register_named(email, email).await
    }

    /// Registers a user whose display name differs from the address.
    pub async fn register_named(&self, email: &str, display_name: &str) -> Session {
        let body = self
            .gql(
                None,
                "mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken user { id } } }",
                json!({ "i": { "email": email, "password": "correct horse battery", "displayName": display_name } }),
            )
            .await;
        let p = data(&body, "register");
        Session {
            token: p["accessToken"].as_str().expect("token").to_owned(),
            refresh: p["refreshToken"].as_str().expect("refresh").to_owned(),
            user_id: p["user"]["id"].as_str().expect("id").to_owned(),
            email: email.to_owned(),
        }
    }

    /// Registers a user and grants it the admin role; returns a fresh session
    /// whose token carries the role.
    pub async fn admin(&self, email: &str) -> Session {
        self.register(email).await;
        entity::store::users::grant_role(
            &self.db,
            None,
            &domain::Email::parse(email).expect("email"),
            domain::Role::Admin,
        )
        .await
        .expect("grant admin");
        self.login(email).await
    }

    pub async fn login(&self, email: &str) -> Session {
        self.login_with_agent(email, None).await
    }

    /// Signs in sending this `User-Agent` (another device, to the server).
    pub async fn login_with_agent(&self, email: &str, agent: Option<&str>) -> Session {
        let mut req = self.client.post(self.url("/graphql")).json(&json!({
            "query": "mutation($i: LoginInput!) { login(input: $i) { ... on AuthPayload { accessToken refreshToken user { id } } } }",
            "variables": { "i": { "email": email, "password": "correct horse battery" } },
        }));
        if let Some(agent) = agent {
            req = req.header("user-agent", agent);
        }
        let body: Value = req
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json body");
        let p = data(&body, "login");
        Session {
            token: p["accessToken"].as_str().expect("token").to_owned(),
            refresh: p["refreshToken"].as_str().expect("refresh").to_owned(),
            user_id: p["user"]["id"].as_str().expect("id").to_owned(),
            email: email.to_owned(),
        }
    }

    pub async fn open_wallet(&self, s: &Session, currency: &str) -> String {
        let body = self
            .gql(
                Some(&s.token),
                "mutation($c: String!) { openWallet(currency: $c) { id } }",
                json!({ "c": currency }),
            )
            .await;
        data(&body, "openWallet")["id"]
            .as_str()
            .expect("wallet id")
            .to_owned()
    }

    pub async fn deposit(&self, s: &Session, wallet: &str, amount: &str, key: &str) -> Value {
        self.gql(
            Some(&s.token),
            "mutation($i: DepositInput!, $k: String!) { deposit(input: $i, idempotencyKey: $k) {
                replayed transaction { id kind status amount currency fromWalletId toWalletId }
                wallet { id balance availableBalance frozenBalance } } }",
            json!({ "i": { "walletId": wallet, "amount": amount }, "k": key }),
        )
        .await
    }

    pub async fn transfer(&self, s: &Session, input: Value, key: &str) -> Value {
        self.gql(
            Some(&s.token),
            "mutation($i: TransferInput!, $k: String!) { transfer(input: $i, idempotencyKey: $k) {
                replayed transaction { id kind status amount currency fromWalletId toWalletId memo }
                wallet { id balance availableBalance frozenBalance } } }",
            json!({ "i": input, "k": key }),
        )
        .await
    }

    pub async fn withdraw(&self, s: &Session, wallet: &str, amount: &str, key: &str) -> Value {
        self.gql(
            Some(&s.token),
            "mutation($i: WithdrawInput!, $k: String!) { withdraw(input: $i, idempotencyKey: $k) {
                replayed transaction { id kind status amount } wallet { id balance availableBalance frozenBalance } } }",
            json!({ "i": { "walletId": wallet, "amount": amount, "destination": "DE89370400440532013000" }, "k": key }),
        )
        .await
    }

    pub async fn settle(&self, admin: &Session, tx_id: &str, outcome: &str) -> Value {
        self.gql(
            Some(&admin.token),
            "mutation($id: ID!, $o: WithdrawalOutcome!) { settleWithdrawal(id: $id, outcome: $o) {
                transaction { id status } wallet { id balance availableBalance frozenBalance } } }",
            json!({ "id": tx_id, "o": outcome }),
        )
        .await
    }

    pub async fn wallet(&self, s: &Session, id: &str) -> Value {
        self.gql(
            Some(&s.token),
            "query($id: ID!) { wallet(id: $id) { id currency balance availableBalance frozenBalance status } }",
            json!({ "id": id }),
        )
        .await
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub refresh: String,
    pub user_id: String,
    pub email: String,
}

/// `body.data[field]`, failing the test with the errors when absent.
pub fn data<'a>(body: &'a Value, field: &str) -> &'a Value {
    let v = &body["data"][field];
    assert!(!v.is_null(), "no data.{field}: {body}");
    v
}

/// The code of the first error, failing the test when there is none.
pub fn error_code(body: &Value) -> String {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {body}"))
        .to_owned()
}

/// Runs a test body on both backends.
pub async fn on_both<F, Fut>(f: F)
where
    F: Fn(Arc<TestApp>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    on_both_with(|_| {}, f).await;
}

/// Runs a test body on both backends, the settings tweaked.
pub async fn on_both_with<F, Fut>(tweak: impl Fn(&mut Settings), f: F)
where
    F: Fn(Arc<TestApp>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = Arc::new(TestApp::spawn_with(backend, &tweak).await);
        f(app).await;
    }
}

/// A GraphQL WebSocket client speaking either subprotocol.
pub struct WsClient {
    pub socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub protocol: &'static str,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEnd {
    Closed(u16),
    Gone,
}

impl WsClient {
    /// Connects with the subprotocol (no `connection_init` yet).
    pub async fn connect(addr: SocketAddr, protocol: &'static str) -> WsClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().expect("header"));
        let (socket, resp) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket connect");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        WsClient { socket, protocol }
    }

    /// Connects and completes `connection_init` with the token.
    pub async fn authed(addr: SocketAddr, protocol: &'static str, token: &str) -> WsClient {
        let mut ws = Self::connect(addr, protocol).await;
        ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        let ack = ws.next_message(Duration::from_secs(5)).await.expect("ack");
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws
    }

    pub async fn send(&mut self, msg: Value) {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::text(
                msg.to_string(),
            ))
            .await
            .expect("ws send");
    }

    /// Sends a close frame, as `graphql-ws`'s `dispose()` does.
    pub async fn close(&mut self, code: u16, reason: &str) {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Close(Some(
                CloseFrame {
                    code: code.into(),
                    reason: reason.to_owned().into(),
                },
            )))
            .await
            .expect("ws close");
    }

    /// Starts an operation with this protocol's message type.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == "graphql-transport-ws" {
            "subscribe"
        } else {
            "start"
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next JSON message, skipping keep-alives; `Err` when the socket ended.
    pub async fn next_message(&mut self, within: Duration) -> Result<Value, WsEnd> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("no WebSocket message within {within:?}"));
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json message");
                    if v["type"] == "ka" || v["type"] == "ping" || v["type"] == "pong" {
                        continue;
                    }
                    return Ok(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(WsEnd::Gone, |f| WsEnd::Closed(u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(WsEnd::Gone),
            }
        }
    }

    /// The payload of the next `next`/`data` message for `id`.
    pub async fn next_data(&mut self, id: &str, within: Duration) -> Value {
        let msg = self.next_message(within).await.expect("socket open");
        assert_eq!(msg["id"], id, "{msg}");
        assert!(msg["type"] == "next" || msg["type"] == "data", "{msg}");
        msg["payload"].clone()
    }

    /// Whether no message arrives within the time.
    pub async fn silent_for(&mut self, within: Duration) -> bool {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("json");
                    if v["type"] == "ka" {
                        continue;
                    }
                    return false;
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(_) => return false,
            }
        }
    }
}

/// A server run as a separate OS process of the real binary.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `wallet-bff serve` with the given extra environment and waits
    /// for its `listening on` line.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wallet-bff"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("JWT_SECRET", JWT_SECRET)
            .env("REDIS_URL", redis_url())
            .env("OUTBOX_POLL_INTERVAL_MS", "100")
            .env("TIER_LIMITS", GENEROUS_LIMITS)
            .env("RISK_RULES", QUIET_RISK)
            .env("PII_KEYS", PII_KEYS)
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn wallet-bff");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server process printed its address");
        ServerProcess {
            child,
            addr: addr.parse().expect("socket address"),
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server of the test's own, which the test may stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = PrivateRedis { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port and waits until it accepts.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (scripts/test.sh installs it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The audit actions recorded with `user_id` as the actor, oldest first.
pub async fn audit_actions(app: &TestApp, user_id: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let id = uuid::Uuid::parse_str(user_id).expect("uuid");
    entity::entities::audit_log::Entity::find()
        .filter(entity::entities::audit_log::Column::ActorId.eq(id))
        .order_by_asc(entity::entities::audit_log::Column::CreatedAt)
        .all(&app.db)
        .await
        .expect("audit rows")
        .into_iter()
        .map(|r| r.action)
        .collect()
}
