//! OAuth2 / OpenID Connect login against a real provider: `oidc-provider`
//! (panva) run by scripts/oidc/server.mjs, driven without a browser.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entity::entities::{audit_log, oauth_identities, users};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use api::config::ClientAuth;

use crate::support::{Backend, TestApp, data, error_code};

const PROVIDER: &str = "local";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";
const OIDC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/oidc");

const START: &str = "mutation($p: String!, $r: String!) {
    startOAuthLogin(provider: $p, redirectUri: $r) { authorizationUrl state } }";
const COMPLETE: &str = "mutation($p: String!, $c: String!, $s: String!) {
    completeOAuthLogin(provider: $p, code: $c, state: $s) {
        __typename
        ... on AuthPayload { accessToken refreshToken expiresAt user { id email } }
        ... on MfaChallenge { mfaToken } } }";

/// The local OpenID Connect provider process; killed on drop.
struct OidcProvider {
    child: Child,
    /// How the provider wants clients to authenticate at its token endpoint.
    auth: ClientAuth,
    issuer: String,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts `node scripts/oidc/server.mjs 0` and waits for its
    /// `listening on` line. Panics (never skips) when node or the provider's
    /// packages are missing.
    fn start() -> OidcProvider {
        Self::start_with(ClientAuth::Basic)
    }

    /// Starts the provider requiring `auth` at its token endpoint.
    fn start_with(auth: ClientAuth) -> OidcProvider {
        let dir = Path::new(OIDC_DIR);
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{}/node_modules/oidc-provider is missing: the OAuth2 tests need the local OpenID \
             provider's packages. Run `npm ci --prefix scripts/oidc` (scripts/test.sh does it).",
            dir.display()
        );
        let method = match auth {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::Post => "client_secret_post",
        };
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg("0")
            .env("OIDC_TOKEN_AUTH_METHOD", method)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `node` ({e}): the OAuth2 tests need Node.js >= 20.19 for the \
                     local OpenID provider (scripts/test.sh installs it)"
                )
            });
        // Its diagnostics, shown when a test fails.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0_u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr buffer")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("listening on ") {
                    let _ = tx.send(issuer.trim().to_owned());
                }
            }
        });
        let mut provider = OidcProvider {
            child,
            auth,
            issuer: String::new(),
            stderr,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(issuer) => provider.issuer = issuer,
            Err(_) => {
                let status = provider.child.try_wait().ok().flatten();
                panic!(
                    "the local OpenID provider did not start (exit: {status:?}); stderr:\n{}",
                    provider.stderr.lock().expect("stderr buffer")
                );
            }
        }
        provider
    }

    /// How the client presented its secret at the last token request.
    async fn token_client_auth(&self) -> String {
        self.http
            .get(format!("{}/_test/token-client-auth", self.issuer))
            .send()
            .await
            .expect("ask the provider")
            .text()
            .await
            .expect("text")
    }

    /// The app's provider settings for this issuer (endpoints by discovery).
    fn settings(&self) -> api::config::OauthProviderSettings {
        api::config::OauthProviderSettings {
            name: PROVIDER.to_owned(),
            issuer: Some(self.issuer.clone()),
            auth_url: None,
            token_url: None,
            userinfo_url: None,
            client_id: "wallet-bff".to_owned(),
            client_secret: "wallet-bff-secret".to_owned(),
            scopes: vec![
                "openid".to_owned(),
                "email".to_owned(),
                "profile".to_owned(),
            ],
            client_auth: self.auth,
        }
    }

    /// Spawns the app with this provider configured.
    async fn app(&self) -> TestApp {
        let provider = self.settings();
        TestApp::spawn_with(Backend::Postgres, move |s| {
            s.oauth_providers = vec![provider];
            s.oauth_redirect_uris = vec![REDIRECT_URI.to_owned()];
        })
        .await
    }

    /// Plays the browser: follows the authorization URL through the
    /// provider's (automatic) login and consent, as the user `email` with
    /// subject `sub`, and returns the query of the redirect to the app.
    async fn authorize(
        &self,
        authorization_url: &str,
        email: &str,
        verified: bool,
        sub: &str,
    ) -> Redirect {
        let mut url = url::Url::parse(authorization_url).expect("authorization URL");
        url.query_pairs_mut()
            .append_pair("login_hint", email)
            .append_pair("x_email_verified", if verified { "true" } else { "false" })
            .append_pair("x_sub", sub);
        // A fresh cookie jar per login: name -> value.
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut next = url;
        for _ in 0..5 {
            let mut req = self.http.get(next.clone());
            if !cookies.is_empty() {
                let header = cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                req = req.header(reqwest::header::COOKIE, header);
            }
            let resp = req.send().await.expect("request to the provider");
            for set in resp.headers().get_all(reqwest::header::SET_COOKIE) {
                let set = set.to_str().expect("Set-Cookie is text");
                let pair = set.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    cookies.retain(|(k, _)| k != name.trim());
                    cookies.push((name.trim().to_owned(), value.trim().to_owned()));
                }
            }
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = resp.text().await.unwrap_or_default();
                panic!(
                    "the provider answered {status} at {next} instead of redirecting: {body}\n{}",
                    self.stderr.lock().expect("stderr buffer")
                );
            };
            let target = next.join(&location).expect("Location URL");
            if target.as_str().starts_with(REDIRECT_URI) {
                let query: std::collections::HashMap<String, String> =
                    target.query_pairs().into_owned().collect();
                if let Some(error) = query.get("error") {
                    panic!(
                        "the provider refused the authorization: {error} {:?}",
                        query.get("error_description")
                    );
                }
                return Redirect {
                    code: query.get("code").expect("code in the redirect").clone(),
                    state: query.get("state").expect("state in the redirect").clone(),
                    iss: query.get("iss").cloned(),
                };
            }
            assert!(
                target.as_str().starts_with(&self.issuer),
                "the provider redirected elsewhere: {target}"
            );
            next = target;
        }
        panic!("the provider did not redirect back to the app within 5 steps");
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Ok(stderr) = self.stderr.lock()
            && !stderr.is_empty()
        {
            eprintln!("--- local OpenID provider stderr ---\n{stderr}");
        }
    }
}

/// What the provider sent to the app's redirect URI.
#[derive(Debug)]
struct Redirect {
    code: String,
    state: String,
    iss: Option<String>,
}

async fn start(app: &TestApp, provider: &str, redirect_uri: &str) -> Value {
    app.gql(None, START, json!({ "p": provider, "r": redirect_uri }))
        .await
}

/// `startOAuthLogin` with the configured provider: (authorizationUrl, state).
async fn started(app: &TestApp) -> (String, String) {
    let body = start(app, PROVIDER, REDIRECT_URI).await;
    let s = data(&body, "startOAuthLogin");
    (
        s["authorizationUrl"].as_str().expect("url").to_owned(),
        s["state"].as_str().expect("state").to_owned(),
    )
}

async fn complete(app: &TestApp, code: &str, state: &str) -> Value {
    app.gql(
        None,
        COMPLETE,
        json!({ "p": PROVIDER, "c": code, "s": state }),
    )
    .await
}

/// A whole login as `email`/`sub`; the `completeOAuthLogin` response.
async fn login(app: &TestApp, idp: &OidcProvider, email: &str, verified: bool, sub: &str) -> Value {
    let (url, state) = started(app).await;
    let redirect = idp.authorize(&url, email, verified, sub).await;
    assert_eq!(redirect.state, state);
    assert_eq!(redirect.iss.as_deref(), Some(idp.issuer.as_str()));
    complete(app, &redirect.code, &redirect.state).await
}

/// The `AuthPayload` of a successful login.
fn payload(body: &Value) -> &Value {
    let p = data(body, "completeOAuthLogin");
    assert_eq!(p["__typename"], "AuthPayload", "{body}");
    p
}

async fn identities(app: &TestApp) -> u64 {
    oauth_identities::Entity::find()
        .count(&app.db)
        .await
        .expect("count identities")
}

async fn user_exists(app: &TestApp, email: &str) -> bool {
    users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(&app.db)
        .await
        .expect("find user")
        .is_some()
}

#[tokio::test]
async fn first_login_creates_the_account_and_the_next_one_finds_it() {
    let idp = OidcProvider::start();
    let app = idp.app().await;

    let first = login(&app, &idp, "newcomer@example.com", true, "sub-newcomer").await;
    let first = payload(&first);
    assert_eq!(first["user"]["email"], "newcomer@example.com");
    assert!(
        first["refreshToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(first["expiresAt"].is_string());
    let user_id = first["user"]["id"].as_str().expect("user id").to_owned();
    let me = app
        .gql(
            Some(first["accessToken"].as_str().expect("access token")),
            "{ me { id email } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&me, "me")["email"], "newcomer@example.com");
    assert_eq!(data(&me, "me")["id"], json!(user_id));

    let linked = oauth_identities::Entity::find()
        .one(&app.db)
        .await
        .expect("identity")
        .expect("an identity was linked");
    assert_eq!(linked.provider, PROVIDER);
    assert_eq!(linked.subject, "sub-newcomer");
    assert_eq!(linked.user_id.to_string(), user_id);

    // The same subject again: the same account, nothing new linked.
    let second = login(&app, &idp, "newcomer@example.com", true, "sub-newcomer").await;
    assert_eq!(payload(&second)["user"]["id"], json!(user_id));
    assert_eq!(identities(&app).await, 1);

    // Another subject of the same provider with the same address (an
    // address the provider gave to someone new) does not get in.
    let recycled = login(&app, &idp, "newcomer@example.com", true, "sub-someone-else").await;
    assert_eq!(error_code(&recycled), "FORBIDDEN", "{recycled}");
    assert_eq!(identities(&app).await, 1);
}

#[tokio::test]
async fn two_first_logins_of_one_identity_racing_make_one_account() {
    let idp = OidcProvider::start();
    let app = idp.app().await;
    for round in 0..3 {
        let email = format!("racer{round}@example.com");
        let sub = format!("sub-racer-{round}");
        let (url_a, _) = started(&app).await;
        let (url_b, _) = started(&app).await;
        let a = idp.authorize(&url_a, &email, true, &sub).await;
        let b = idp.authorize(&url_b, &email, true, &sub).await;
        let (one, two) = tokio::join!(
            complete(&app, &a.code, &a.state),
            complete(&app, &b.code, &b.state)
        );
        let (one, two) = (payload(&one), payload(&two));
        assert_eq!(one["user"]["id"], two["user"]["id"], "{one} {two}");
        assert_eq!(identities(&app).await, round + 1);
    }
}

#[tokio::test]
async fn a_password_account_is_linked_through_the_same_verified_email() {
    let idp = OidcProvider::start();
    let app = idp.app().await;
    let existing = app.register("linked@example.com").await;

    let body = login(&app, &idp, "linked@example.com", true, "sub-linked").await;
    let p = payload(&body);
    assert_eq!(p["user"]["id"], json!(existing.user_id));
    assert_eq!(p["user"]["email"], "linked@example.com");

    let user_id: Uuid = existing.user_id.parse().expect("uuid");
    let audit = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("oauth.linked"))
        .filter(audit_log::Column::SubjectId.eq(user_id))
        .all(&app.db)
        .await
        .expect("audit rows");
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].details["provider"], PROVIDER);
    assert_eq!(audit[0].details["new_account"], false);

    assert_eq!(audit[0].details["credentials_reset"], true);

    // Sign-up never verified the address, so whoever chose the password may
    // not own it (an account pre-registered with someone else's e-mail): the
    // password and the sessions made with it end; the verified owner keeps
    // the account.
    let old_password = app
        .gql(
            None,
            "mutation($i: LoginInput!) { login(input: $i) { __typename } }",
            json!({ "i": { "email": "linked@example.com", "password": "correct horse battery" } }),
        )
        .await;
    assert_eq!(
        old_password["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{old_password}"
    );
    let old_session = app
        .gql(
            None,
            "mutation($r: String!) { refreshSession(refreshToken: $r) { accessToken } }",
            json!({ "r": existing.refresh }),
        )
        .await;
    assert_eq!(
        old_session["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    // The new session may set a password again (a fresh sign-in stands in for
    // the old one), and the provider login keeps finding the same account.
    let token = p["accessToken"].as_str().expect("token");
    let set = app
        .gql(
            Some(token),
            "mutation { changePassword(input: {newPassword: \"a brand new passphrase\"}) }",
            json!({}),
        )
        .await;
    assert_eq!(set["data"]["changePassword"], true, "{set}");
    let again = login(&app, &idp, "linked@example.com", true, "sub-linked").await;
    assert_eq!(payload(&again)["user"]["id"], json!(existing.user_id));
    assert_eq!(identities(&app).await, 1);
}

#[tokio::test]
async fn an_unverified_email_neither_links_nor_creates_an_account() {
    let idp = OidcProvider::start();
    let app = idp.app().await;
    app.register("victim@example.com").await;

    let takeover = login(&app, &idp, "victim@example.com", false, "sub-attacker").await;
    assert_eq!(error_code(&takeover), "FORBIDDEN", "{takeover}");
    assert_eq!(identities(&app).await, 0);
    let linked = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq("oauth.linked"))
        .count(&app.db)
        .await
        .expect("audit count");
    assert_eq!(linked, 0);

    let fresh = login(
        &app,
        &idp,
        "unverified@example.com",
        false,
        "sub-unverified",
    )
    .await;
    assert_eq!(error_code(&fresh), "FORBIDDEN", "{fresh}");
    assert_eq!(identities(&app).await, 0);
    assert!(!user_exists(&app, "unverified@example.com").await);
}

#[tokio::test]
async fn state_works_once_and_only_with_its_own_code() {
    let idp = OidcProvider::start();
    let app = idp.app().await;

    let (url, state) = started(&app).await;
    let redirect = idp
        .authorize(&url, "once@example.com", true, "sub-once")
        .await;
    let ok = complete(&app, &redirect.code, &state).await;
    payload(&ok);
    let replay = complete(&app, &redirect.code, &state).await;
    assert_eq!(error_code(&replay), "UNAUTHENTICATED", "{replay}");

    let made_up = complete(&app, &redirect.code, "made-up-state").await;
    assert_eq!(error_code(&made_up), "UNAUTHENTICATED", "{made_up}");

    // The state of one login with the code of another: the PKCE verifier
    // kept for that state does not match the code, the provider refuses.
    let (_, state_a) = started(&app).await;
    let (url_b, state_b) = started(&app).await;
    let b = idp
        .authorize(&url_b, "swapped@example.com", true, "sub-swapped")
        .await;
    assert_eq!(b.state, state_b);
    let swapped = complete(&app, &b.code, &state_a).await;
    assert_eq!(error_code(&swapped), "UNAUTHENTICATED", "{swapped}");
    assert!(!user_exists(&app, "swapped@example.com").await);
    // ... and state A is spent by that attempt.
    let spent = complete(&app, &b.code, &state_a).await;
    assert_eq!(error_code(&spent), "UNAUTHENTICATED", "{spent}");

    // One redirect completed twice at the same moment: one sign-in.
    let (url, _) = started(&app).await;
    let c = idp
        .authorize(&url, "twice@example.com", true, "sub-twice")
        .await;
    let (one, two) = tokio::join!(
        complete(&app, &c.code, &c.state),
        complete(&app, &c.code, &c.state)
    );
    let signed_in = [&one, &two]
        .iter()
        .filter(|r| r["data"]["completeOAuthLogin"]["__typename"] == "AuthPayload")
        .count();
    assert_eq!(signed_in, 1, "{one} {two}");
}

#[tokio::test]
async fn a_login_not_completed_within_the_flow_lifetime_is_refused() {
    let idp = OidcProvider::start();
    let provider = idp.settings();
    let app = TestApp::spawn_with(Backend::Postgres, move |s| {
        s.oauth_providers = vec![provider];
        s.oauth_redirect_uris = vec![REDIRECT_URI.to_owned()];
        s.oauth_flow_ttl_secs = 1;
    })
    .await;
    let (url, state) = started(&app).await;
    let redirect = idp
        .authorize(&url, "late@example.com", true, "sub-late")
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let late = complete(&app, &redirect.code, &state).await;
    assert_eq!(error_code(&late), "UNAUTHENTICATED", "{late}");
    assert!(!user_exists(&app, "late@example.com").await);
}

#[tokio::test]
async fn the_authorization_url_carries_pkce_and_state_and_inputs_are_checked() {
    let idp = OidcProvider::start();
    let app = idp.app().await;

    let (url, state) = started(&app).await;
    let parsed = url::Url::parse(&url).expect("authorization URL");
    assert!(
        url.starts_with(&format!("{}/", idp.issuer)),
        "discovered endpoint of the issuer: {url}"
    );
    assert!(url.contains("code_challenge="), "{url}");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let query: std::collections::HashMap<String, String> =
        parsed.query_pairs().into_owned().collect();
    assert_eq!(query.get("state"), Some(&state));
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("client_id").map(String::as_str),
        Some("wallet-bff")
    );
    assert_eq!(
        query.get("redirect_uri").map(String::as_str),
        Some(REDIRECT_URI)
    );
    let challenge = query.get("code_challenge").expect("code_challenge");
    // base64url of a SHA-256 digest, no padding.
    assert_eq!(challenge.len(), 43, "{challenge}");
    let scopes: Vec<&str> = query.get("scope").expect("scope").split(' ').collect();
    for scope in ["openid", "email", "profile"] {
        assert!(scopes.contains(&scope), "{scopes:?}");
    }
    // Every login gets its own state and challenge.
    let (url2, state2) = started(&app).await;
    assert_ne!(state2, state);
    let query2: std::collections::HashMap<String, String> = url::Url::parse(&url2)
        .expect("authorization URL")
        .query_pairs()
        .into_owned()
        .collect();
    assert_ne!(query2.get("code_challenge"), Some(challenge));

    let elsewhere = start(&app, PROVIDER, "http://127.0.0.1:9/other").await;
    assert_eq!(error_code(&elsewhere), "BAD_USER_INPUT", "{elsewhere}");
    let evil = start(&app, PROVIDER, "https://evil.example/oauth/callback").await;
    assert_eq!(error_code(&evil), "BAD_USER_INPUT", "{evil}");
    let unknown = start(&app, "nope", REDIRECT_URI).await;
    assert_eq!(error_code(&unknown), "BAD_USER_INPUT", "{unknown}");
}

#[tokio::test]
async fn the_client_secret_goes_in_the_header_or_the_body_as_configured() {
    for (auth, seen) in [(ClientAuth::Basic, "header"), (ClientAuth::Post, "body")] {
        let idp = OidcProvider::start_with(auth);
        let app = idp.app().await;
        let email = format!("{seen}@example.com");
        let body = login(&app, &idp, &email, true, &format!("sub-{seen}")).await;
        assert_eq!(payload(&body)["user"]["email"], json!(email));
        assert_eq!(idp.token_client_auth().await, seen, "{auth:?}");
    }
}
