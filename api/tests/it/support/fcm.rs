//! A local server speaking FCM HTTP v1 and Google's OAuth2 token endpoint,
//! for the push tests: `POST /token` takes the JWT-bearer grant and checks
//! the RS256 assertion against the service account's public key (issuer,
//! audience, scope, expiry); `POST /v1/projects/{project}/messages:send`
//! takes only bearer tokens it issued and answers per device token as the
//! test scripted it (accepted, `UNREGISTERED`, 503 with `Retry-After`, 401).
//!
//! The service account's RSA key is made per server with `openssl`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub const PROJECT: &str = "wallet-test";
const CLIENT_EMAIL: &str = "notifier@wallet-test.iam.gserviceaccount.com";

/// How the server answers the next send to one device token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// 404 with `errorCode: UNREGISTERED`.
    Unregistered,
    /// 503 with `Retry-After` in seconds.
    Unavailable { retry_after: u64 },
    /// 401, as for a revoked token.
    Unauthorized,
}

/// One send the server saw.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The device token.
    pub token: String,
    /// When it came.
    pub at: Instant,
    /// The status answered.
    pub status: u16,
    /// The `message` object sent.
    pub message: Value,
}

#[derive(Default)]
struct Inner {
    issued: Vec<String>,
    token_requests: usize,
    script: HashMap<String, VecDeque<Reply>>,
    attempts: Vec<Attempt>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    public_pem: Arc<Vec<u8>>,
    token_url: Arc<String>,
}

/// A running fake FCM.
pub struct FakeFcm {
    pub addr: SocketAddr,
    /// The service-account key file the server is configured with.
    pub service_account_file: PathBuf,
    shared: Shared,
    dir: PathBuf,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed for the push tests (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl FakeFcm {
    pub async fn start() -> FakeFcm {
        let dir = std::env::temp_dir().join(format!("wallet-bff-fcm-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let key_path = dir.join("key.pem");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &key_path.display().to_string(),
        ]);
        let public_pem = openssl(&["pkey", "-in", &key_path.display().to_string(), "-pubout"]);
        let private_pem = std::fs::read_to_string(&key_path).expect("key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let token_url = format!("http://{addr}/token");
        let service_account_file = dir.join("service-account.json");
        std::fs::write(
            &service_account_file,
            json!({
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": "test-key-1",
                "private_key": private_pem,
                "client_email": CLIENT_EMAIL,
                "client_id": "1",
                "token_uri": token_url,
            })
            .to_string(),
        )
        .expect("service account");
        let shared = Shared {
            inner: Arc::default(),
            public_pem: Arc::new(public_pem),
            token_url: Arc::new(token_url),
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/messages:send", post(send))
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeFcm {
            addr,
            service_account_file,
            shared,
            dir,
        }
    }

    /// `FCM_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Scripts the next answers to sends to `token` (then: accepted).
    pub fn script(&self, token: &str, replies: &[Reply]) {
        let mut inner = self.shared.inner.lock().expect("lock");
        inner
            .script
            .entry(token.to_owned())
            .or_default()
            .extend(replies.iter().copied());
    }

    /// Makes every token issued so far invalid (as if revoked).
    pub fn revoke_tokens(&self) {
        self.shared.inner.lock().expect("lock").issued.clear();
    }

    /// Every send seen, in order.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.shared.inner.lock().expect("lock").attempts.clone()
    }

    /// How many access tokens were asked for.
    pub fn token_requests(&self) -> usize {
        self.shared.inner.lock().expect("lock").token_requests
    }

    /// Waits until `pred` holds for the attempts seen, or `within` passed.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        pred: impl Fn(&[Attempt]) -> bool,
    ) -> Vec<Attempt> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let attempts = self.attempts();
            if pred(&attempts) || tokio::time::Instant::now() >= deadline {
                return attempts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn oauth_error(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid_grant", "error_description": description })),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    s.inner.lock().expect("lock").token_requests += 1;
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error("unsupported grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("no assertion");
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&s.public_pem).expect("public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[s.token_url.as_str()]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
        Ok(data) => {
            if data.header.kid.as_deref() != Some("test-key-1") {
                return oauth_error("unknown key id");
            }
            data.claims
        }
        Err(e) => return oauth_error(&format!("bad assertion: {e}")),
    };
    if claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
        return oauth_error("wrong scope");
    }
    let access = format!("ya29.test-{}", uuid::Uuid::new_v4().simple());
    s.inner.lock().expect("lock").issued.push(access.clone());
    Json(json!({ "access_token": access, "expires_in": 3599, "token_type": "Bearer" }))
        .into_response()
}

fn fcm_error(status: StatusCode, name: &str, code: Option<&str>) -> Response {
    let details = code.map_or_else(Vec::new, |c| {
        vec![json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c })]
    });
    (
        status,
        Json(json!({ "error": { "code": status.as_u16(), "message": name, "status": name, "details": details } })),
    )
        .into_response()
}

async fn send(
    State(s): State<Shared>,
    Path(project): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let message = body["message"].clone();
    let token = message["token"].as_str().unwrap_or_default().to_owned();
    let mut inner = s.inner.lock().expect("lock");
    let scripted = inner.script.get_mut(&token).and_then(VecDeque::pop_front);
    let authorized = inner.issued.contains(&bearer);
    let (status, response) = if project != PROJECT {
        (404, fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", None))
    } else if !authorized || scripted == Some(Reply::Unauthorized) {
        (
            401,
            fcm_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", None),
        )
    } else if message["notification"]["title"].as_str().is_none() || token.is_empty() {
        (
            400,
            fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
            ),
        )
    } else {
        match scripted {
            Some(Reply::Unregistered) => (404, fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", Some("UNREGISTERED"))),
            Some(Reply::Unavailable { retry_after }) => {
                let mut r = fcm_error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", Some("UNAVAILABLE"));
                r.headers_mut().insert("retry-after", retry_after.to_string().parse().expect("header"));
                (503, r)
            }
            _ => (
                200,
                Json(json!({ "name": format!("projects/{PROJECT}/messages/{}", uuid::Uuid::new_v4().simple()) }))
                    .into_response(),
            ),
        }
    };
    inner.attempts.push(Attempt {
        token,
        at: Instant::now(),
        status,
        message,
    });
    response
}
