//! `TestApp`: spawns the server against a fresh database and talks GraphQL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use api::config::{AppEnv, LogFormat, Settings};

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
    _stop: oneshot::Sender<()>,
    _dir: Option<TempDir>,
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

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
        body_limit_bytes: 1_048_576,
        request_timeout_secs: 30,
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        if std::env::var("TEST_LOG").is_ok() {
            api::init_tracing(LogFormat::Text);
        }
        let (url, embedded, dir) = match backend {
            Backend::Postgres => (fresh_postgres().await, false, None),
            Backend::Sqlite => {
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
            _stop: stop,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs an operation; returns the whole response body.
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

    /// Registers a user and returns its session.
    pub async fn register(&self, email: &str) -> Session {
        let body = self
            .gql(
                None,
                "mutation($i: RegisterInput!) { register(input: $i) { accessToken refreshToken user { id } } }",
                json!({ "i": { "email": email, "password": "correct horse battery", "displayName": email } }),
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
        let body = self
            .gql(
                None,
                "mutation($i: LoginInput!) { login(input: $i) { ... on AuthPayload { accessToken refreshToken user { id } } } }",
                json!({ "i": { "email": email, "password": "correct horse battery" } }),
            )
            .await;
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
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = Arc::new(TestApp::spawn(backend).await);
        f(app).await;
    }
}
