//! WebAuthn with a software authenticator performing full ceremonies against
//! the running server: registration, the second factor of a login, step-up
//! for large transfers, key removal and password change; replayed and stale
//! assertions; the audit trail of it all.

use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::support::{Backend, Session, TestApp, WEBAUTHN_ORIGIN, audit_actions, data, error_code};

fn origin() -> Url {
    Url::parse(WEBAUTHN_ORIGIN).expect("origin")
}

/// A security key: a software passkey that signs for the web app origin.
pub(crate) struct Key(SoftPasskey);

impl Key {
    pub(crate) fn new() -> Key {
        // `true`: the soft key reports user verification, as a real passkey would.
        Key(SoftPasskey::new(true))
    }

    fn create(&mut self, options: &Value) -> Value {
        let options: CreationChallengeResponse =
            serde_json::from_value(options.clone()).expect("creation options");
        let credential = self
            .0
            .do_registration(origin(), options)
            .expect("the authenticator registers");
        serde_json::to_value(credential).expect("credential json")
    }

    fn assert(&mut self, options: &Value) -> Value {
        let options: RequestChallengeResponse =
            serde_json::from_value(options.clone()).expect("request options");
        let assertion = self
            .0
            .do_authentication(origin(), options)
            .expect("the authenticator asserts");
        serde_json::to_value(assertion).expect("assertion json")
    }
}

const LOGIN: &str = "mutation($i: LoginInput!) { login(input: $i) {
    __typename
    ... on AuthPayload { accessToken user { id twoFactorEnabled } }
    ... on MfaChallenge { mfaToken webauthnOptions } } }";

const FINISH_LOGIN: &str =
    "mutation($t: String!, $a: JSON!) { finishWebauthnLogin(mfaToken: $t, assertion: $a) {
    accessToken refreshToken user { id email twoFactorEnabled } } }";

async fn password_login(app: &TestApp, email: &str) -> Value {
    let body = app
        .gql(
            None,
            LOGIN,
            json!({ "i": { "email": email, "password": "correct horse battery" } }),
        )
        .await;
    data(&body, "login").clone()
}

pub(crate) async fn register_key(app: &TestApp, s: &Session, key: &mut Key, name: &str) -> Value {
    let body = app
        .gql(
            Some(&s.token),
            "mutation { beginWebauthnRegistration }",
            json!({}),
        )
        .await;
    let options = data(&body, "beginWebauthnRegistration").clone();
    assert!(options["publicKey"]["challenge"].is_string(), "{options}");
    let credential = key.create(&options);
    let body = app
        .gql(
            Some(&s.token),
            "mutation($c: JSON!, $n: String!, $p: String) { finishWebauthnRegistration(credential: $c, name: $n, currentPassword: $p) { id name createdAt lastUsedAt } }",
            json!({ "c": credential, "n": name, "p": "correct horse battery" }),
        )
        .await;
    data(&body, "finishWebauthnRegistration").clone()
}

/// `finishWebauthnLogin` with this challenge's token and an assertion.
async fn finish_login(app: &TestApp, mfa_token: impl serde::Serialize, assertion: &Value) -> Value {
    app.gql(
        None,
        FINISH_LOGIN,
        json!({ "t": mfa_token, "a": assertion }),
    )
    .await
}

/// `finishStepUp` with an assertion.
async fn finish_step_up(app: &TestApp, s: &Session, assertion: &Value) -> Value {
    app.gql(
        Some(&s.token),
        "mutation($a: JSON!) { finishStepUp(assertion: $a) { token expiresAt } }",
        json!({ "a": assertion }),
    )
    .await
}

pub(crate) async fn step_up(app: &TestApp, s: &Session, key: &mut Key) -> String {
    let body = app
        .gql(Some(&s.token), "mutation { beginStepUp }", json!({}))
        .await;
    let options = data(&body, "beginStepUp").clone();
    let assertion = key.assert(&options);
    let body = finish_step_up(app, s, &assertion).await;
    data(&body, "finishStepUp")["token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn two_factor_login(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let s = app.register("mfa@example.com").await;
    let mut key = Key::new();
    let cred = register_key(&app, &s, &mut key, "Laptop key").await;
    assert_eq!(cred["name"], "Laptop key");
    assert!(cred["lastUsedAt"].is_null());

    let me = app
        .gql(
            Some(&s.token),
            "{ me { twoFactorEnabled } webauthnCredentials { id name } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&me, "me")["twoFactorEnabled"], true);
    assert_eq!(
        data(&me, "webauthnCredentials").as_array().map(Vec::len),
        Some(1)
    );

    // The password alone is no longer enough.
    let first = password_login(&app, &s.email).await;
    assert_eq!(first["__typename"], "MfaChallenge", "{first}");
    assert!(first.get("accessToken").is_none());
    let token = first["mfaToken"].as_str().expect("mfa token").to_owned();
    let assertion = key.assert(&first["webauthnOptions"]);

    // Another challenge's token with this assertion: refused.
    let other = password_login(&app, &s.email).await;
    let crossed = finish_login(&app, &other["mfaToken"], &assertion).await;
    assert_eq!(error_code(&crossed), "UNAUTHENTICATED", "{crossed}");

    let done = finish_login(&app, &token, &assertion).await;
    let payload = data(&done, "finishWebauthnLogin");
    assert_eq!(payload["user"]["email"], "mfa@example.com");
    let new_token = payload["accessToken"].as_str().expect("access token");
    let me = app.gql(Some(new_token), "{ me { id } }", json!({})).await;
    assert_eq!(data(&me, "me")["id"], s.user_id.as_str());

    // The same assertion again: the challenge is spent.
    let replay = finish_login(&app, &token, &assertion).await;
    assert_eq!(error_code(&replay), "UNAUTHENTICATED", "{replay}");
    // A wrong password never reaches the second factor.
    let wrong = app
        .gql(
            None,
            LOGIN,
            json!({ "i": { "email": s.email, "password": "wrong horse battery" } }),
        )
        .await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");

    let actions = audit_actions(&app, &s.user_id).await;
    for expected in [
        "mfa.credential_added",
        "auth.first_factor",
        "auth.login",
        "mfa.assertion_failed",
        "auth.login_failed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "no {expected} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn a_security_key_becomes_the_second_factor_of_login_on_postgres() {
    two_factor_login(Backend::Postgres).await;
}

#[tokio::test]
async fn a_security_key_becomes_the_second_factor_of_login_on_sqlite() {
    two_factor_login(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_assertion_older_than_one_accepted_is_refused() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("counter@example.com").await;
    let mut key = Key::new();
    register_key(&app, &s, &mut key, "Key").await;

    // Two logins in flight; the key signs the first one first (counter n),
    // then the second (n + 1). The second is completed first.
    let a = password_login(&app, &s.email).await;
    let b = password_login(&app, &s.email).await;
    let older = key.assert(&a["webauthnOptions"]);
    let newer = key.assert(&b["webauthnOptions"]);
    let ok = finish_login(&app, &b["mfaToken"], &newer).await;
    data(&ok, "finishWebauthnLogin");
    // The held-back assertion now carries a counter that did not increase:
    // a cloned key or a stale assertion. Its challenge is still valid, so
    // only the counter check stops it.
    let stale = finish_login(&app, &a["mfaToken"], &older).await;
    assert_eq!(error_code(&stale), "UNAUTHENTICATED", "{stale}");
    // Recorded as what it is, a counter that went backwards at sign-in.
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let failures = entity::entities::audit_log::Entity::find()
        .filter(entity::entities::audit_log::Column::Action.eq("mfa.assertion_failed"))
        .all(&app.db)
        .await
        .expect("audit rows");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].details["reason"], "counter_regression");
    assert_eq!(failures[0].details["ceremony"], "login");
    assert!(
        audit_actions(&app, &s.user_id)
            .await
            .iter()
            .any(|a| a == "auth.login_failed")
    );
    // The stale assertion moved nothing: the newer one still cannot be
    // replayed against a fresh challenge either.
    let c = password_login(&app, &s.email).await;
    let replayed = finish_login(&app, &c["mfaToken"], &newer).await;
    assert_eq!(error_code(&replayed), "UNAUTHENTICATED", "{replayed}");
}

#[tokio::test]
async fn large_transfers_key_removal_and_password_change_need_a_step_up() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.step_up_thresholds =
            api::config::parse_thresholds("USD=500,EUR=500,USDC=500,BTC=0.01,ETH=0.1")
                .expect("thresholds");
    })
    .await;
    let s = app.register("stepup@example.com").await;
    let other_device = app.login("stepup@example.com").await;
    let friend = app.register("friend@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    let friend_usd = app.open_wallet(&friend, "USD").await;
    app.deposit(&s, &usd, "5000", "fund").await;
    app.deposit(&friend, &friend_usd, "5000", "fund").await;
    let transfer = |amount: &str, token: Option<&str>| json!({ "fromWalletId": usd, "toEmail": "friend@example.com", "amount": amount, "stepUpToken": token });

    // Below the threshold nothing extra is asked.
    data(
        &app.transfer(&s, transfer("499.99", None), "small").await,
        "transfer",
    );
    // At the threshold without a key: STEP_UP_REQUIRED, and step-up itself
    // says a key is needed.
    assert_eq!(
        error_code(&app.transfer(&s, transfer("500", None), "big-0").await),
        "STEP_UP_REQUIRED"
    );
    let no_key = app
        .gql(Some(&s.token), "mutation { beginStepUp }", json!({}))
        .await;
    assert_eq!(error_code(&no_key), "STEP_UP_REQUIRED");

    let mut key = Key::new();
    let cred = register_key(&app, &s, &mut key, "Phone").await;
    assert_eq!(
        error_code(&app.transfer(&s, transfer("500", None), "big-1").await),
        "STEP_UP_REQUIRED"
    );
    let forged = app
        .transfer(&s, transfer("500", Some("not-a-token")), "big-1")
        .await;
    assert_eq!(error_code(&forged), "STEP_UP_REQUIRED");

    let token = step_up(&app, &s, &mut key).await;
    // The longest idempotency key the contract allows.
    let long_key = "k".repeat(255);
    let sent = app
        .transfer(&s, transfer("750", Some(&token)), &long_key)
        .await;
    assert_eq!(data(&sent, "transfer")["transaction"]["amount"], "750.00");
    // A retry of the same request (same key) replays with the same token,
    // and without one: a completed transfer needs no new confirmation.
    for retry_token in [Some(token.as_str()), None] {
        let again = app
            .transfer(&s, transfer("750", retry_token), &long_key)
            .await;
        assert_eq!(data(&again, "transfer")["replayed"], true, "{again}");
    }
    // ...but the token does not authorise a second transfer.
    let reused = app
        .transfer(&s, transfer("750", Some(&token)), "big-3")
        .await;
    assert_eq!(error_code(&reused), "STEP_UP_REQUIRED", "{reused}");
    // Nor is it anyone else's: the friend's own large transfer with a
    // fresh token of `s` is refused, and the token stays `s`'s to use.
    let fresh = step_up(&app, &s, &mut key).await;
    let theirs = app
        .transfer(
            &friend,
            json!({ "fromWalletId": friend_usd, "toEmail": s.email, "amount": "600", "stepUpToken": fresh }),
            "big-4",
        )
        .await;
    assert_eq!(error_code(&theirs), "STEP_UP_REQUIRED", "{theirs}");
    // Two different transfers racing on one token: exactly one is sent.
    let (a, b) = tokio::join!(
        app.transfer(&s, transfer("501", Some(&fresh)), "race-a"),
        app.transfer(&s, transfer("502", Some(&fresh)), "race-b"),
    );
    let sent: Vec<&Value> = [&a, &b]
        .into_iter()
        .filter(|r| r["data"]["transfer"].is_object())
        .collect();
    assert_eq!(sent.len(), 1, "{a} {b}");
    let refused = if sent[0] == &a { &b } else { &a };
    assert_eq!(error_code(refused), "STEP_UP_REQUIRED", "{refused}");

    // A step-up answered with an assertion for another challenge fails
    // without signing the app out (not UNAUTHENTICATED).
    let body = app
        .gql(Some(&s.token), "mutation { beginStepUp }", json!({}))
        .await;
    let first_options = data(&body, "beginStepUp").clone();
    let stale = key.assert(&first_options);
    app.gql(Some(&s.token), "mutation { beginStepUp }", json!({}))
        .await;
    let mismatch = finish_step_up(&app, &s, &stale).await;
    assert_eq!(error_code(&mismatch), "STEP_UP_REQUIRED", "{mismatch}");

    // Changing the password with two-factor on needs a step-up too.
    let change = "mutation($i: ChangePasswordInput!) { changePassword(input: $i) }";
    let without = app
        .gql(
            Some(&s.token),
            change,
            json!({ "i": { "currentPassword": "correct horse battery", "newPassword": "an even longer passphrase" } }),
        )
        .await;
    assert_eq!(error_code(&without), "STEP_UP_REQUIRED");
    let token = step_up(&app, &s, &mut key).await;
    let wrong_current = app
        .gql(
            Some(&s.token),
            change,
            json!({ "i": { "currentPassword": "not my password!", "newPassword": "an even longer passphrase", "stepUpToken": token } }),
        )
        .await;
    assert_eq!(error_code(&wrong_current), "BAD_USER_INPUT");
    let changed = app
        .gql(
            Some(&s.token),
            change,
            json!({ "i": { "currentPassword": "correct horse battery", "newPassword": "an even longer passphrase", "stepUpToken": token } }),
        )
        .await;
    assert_eq!(data(&changed, "changePassword"), true);
    // Other devices are signed out; this one keeps its session.
    let refresh = "mutation($r: String!) { refreshSession(refreshToken: $r) { accessToken } }";
    let gone = app
        .gql(None, refresh, json!({ "r": other_device.refresh }))
        .await;
    assert_eq!(error_code(&gone), "UNAUTHENTICATED", "{gone}");
    let kept = app.gql(None, refresh, json!({ "r": s.refresh })).await;
    data(&kept, "refreshSession");
    let old = app
        .gql(
            None,
            LOGIN,
            json!({ "i": { "email": s.email, "password": "correct horse battery" } }),
        )
        .await;
    assert_eq!(error_code(&old), "UNAUTHENTICATED");

    // Removing the key: refused without a step-up, then done with one.
    let remove =
        "mutation($id: ID!, $t: String) { removeWebauthnCredential(id: $id, stepUpToken: $t) }";
    let refused = app
        .gql(
            Some(&s.token),
            remove,
            json!({ "id": cred["id"], "t": null }),
        )
        .await;
    assert_eq!(error_code(&refused), "STEP_UP_REQUIRED");
    let token = step_up(&app, &s, &mut key).await;
    let removed = app
        .gql(
            Some(&s.token),
            remove,
            json!({ "id": cred["id"], "t": token }),
        )
        .await;
    assert_eq!(data(&removed, "removeWebauthnCredential"), true);
    let me = app
        .gql(Some(&s.token), "{ me { twoFactorEnabled } }", json!({}))
        .await;
    assert_eq!(data(&me, "me")["twoFactorEnabled"], false);
    // Without a key, the new password signs in directly again.
    let back = app
        .gql(
            None,
            LOGIN,
            json!({ "i": { "email": s.email, "password": "an even longer passphrase" } }),
        )
        .await;
    assert_eq!(data(&back, "login")["__typename"], "AuthPayload");

    let actions = audit_actions(&app, &s.user_id).await;
    for expected in [
        "mfa.step_up",
        "mfa.step_up_refused",
        "user.password_changed",
        "mfa.credential_removed",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "no {expected} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn ceremonies_are_tied_to_their_user_and_expire() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.webauthn_ceremony_ttl_secs = 1).await;
    let s = app.register("slow@example.com").await;
    let mut key = Key::new();
    let body = app
        .gql(
            Some(&s.token),
            "mutation { beginWebauthnRegistration }",
            json!({}),
        )
        .await;
    let credential = key.create(data(&body, "beginWebauthnRegistration"));
    // Ceremonies belong to the session that began them: a second session
    // of the same user begins its own without replacing this one, and
    // cannot finish this one; nor can another user.
    let second = app.login("slow@example.com").await;
    let other = app.register("other-slow@example.com").await;
    let begun = app
        .gql(
            Some(&second.token),
            "mutation { beginWebauthnRegistration }",
            json!({}),
        )
        .await;
    data(&begun, "beginWebauthnRegistration");
    let in_progress = {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        entity::entities::auth_flows::Entity::find()
            .filter(
                entity::entities::auth_flows::Column::Kind.eq(api::auth::webauthn::kinds::REGISTER),
            )
            .count(&app.db)
            .await
            .expect("count flows")
    };
    assert_eq!(in_progress, 2, "one ceremony per session");
    for (who, token) in [
        ("second session", &second.token),
        ("other user", &other.token),
    ] {
        let theirs = app
            .gql(
                Some(token),
                "mutation($c: JSON!) { finishWebauthnRegistration(credential: $c, name: \"k\", currentPassword: \"correct horse battery\") { id } }",
                json!({ "c": credential }),
            )
            .await;
        assert_eq!(error_code(&theirs), "BAD_USER_INPUT", "{who}: {theirs}");
    }
    let keys = app
        .gql(Some(&s.token), "{ webauthnCredentials { id } }", json!({}))
        .await;
    assert_eq!(data(&keys, "webauthnCredentials"), &json!([]));
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let late = app
        .gql(
            Some(&s.token),
            "mutation($c: JSON!) { finishWebauthnRegistration(credential: $c, name: \"k\", currentPassword: \"correct horse battery\") { id } }",
            json!({ "c": credential }),
        )
        .await;
    assert_eq!(error_code(&late), "BAD_USER_INPUT", "{late}");
    // Garbage is a clear input error, not an internal one.
    let garbage = app
        .gql(
            Some(&s.token),
            "mutation { finishWebauthnRegistration(credential: {id: 1}, name: \"k\", currentPassword: \"correct horse battery\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&garbage), "BAD_USER_INPUT", "{garbage}");
    // Registration needs a signed-in user.
    let anon = app
        .gql(None, "mutation { beginWebauthnRegistration }", json!({}))
        .await;
    assert_eq!(error_code(&anon), "UNAUTHENTICATED");
}

#[tokio::test]
async fn admins_grant_and_revoke_roles_with_a_step_up() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = app.admin("root@example.com").await;
    let staff = app.register("helper@example.com").await;
    let mut key = Key::new();
    register_key(&app, &admin, &mut key, "Admin key").await;
    let grant = "mutation($u: ID!, $r: Role!, $t: String) { grantRole(userId: $u, role: $r, stepUpToken: $t) { id roles } }";
    let revoke = "mutation($u: ID!, $r: Role!, $t: String) { revokeRole(userId: $u, role: $r, stepUpToken: $t) { id roles } }";

    let without = app
        .gql(
            Some(&admin.token),
            grant,
            json!({ "u": staff.user_id, "r": "SUPPORT" }),
        )
        .await;
    assert_eq!(error_code(&without), "STEP_UP_REQUIRED");
    let token = step_up(&app, &admin, &mut key).await;
    let granted = app
        .gql(
            Some(&admin.token),
            grant,
            json!({ "u": staff.user_id, "r": "SUPPORT", "t": token }),
        )
        .await;
    assert_eq!(
        data(&granted, "grantRole")["roles"],
        json!(["USER", "SUPPORT"])
    );
    // The token was spent on that grant.
    let again = app
        .gql(
            Some(&admin.token),
            grant,
            json!({ "u": staff.user_id, "r": "COMPLIANCE", "t": token }),
        )
        .await;
    assert_eq!(error_code(&again), "STEP_UP_REQUIRED");

    // The role reaches the user's token at the next refresh.
    let refreshed = app
        .gql(
            None,
            "mutation($r: String!) { refreshSession(refreshToken: $r) { accessToken } }",
            json!({ "r": staff.refresh }),
        )
        .await;
    let staff_token = data(&refreshed, "refreshSession")["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let lookup = app
        .gql(
            Some(&staff_token),
            "query($id: ID!) { user(id: $id) { email } }",
            json!({ "id": admin.user_id }),
        )
        .await;
    assert_eq!(data(&lookup, "user")["email"], "root@example.com");

    // The last admin cannot demote itself.
    let token = step_up(&app, &admin, &mut key).await;
    let last = app
        .gql(
            Some(&admin.token),
            revoke,
            json!({ "u": admin.user_id, "r": "ADMIN", "t": token }),
        )
        .await;
    assert_eq!(error_code(&last), "BAD_USER_INPUT", "{last}");
    let token = step_up(&app, &admin, &mut key).await;
    let revoked = app
        .gql(
            Some(&admin.token),
            revoke,
            json!({ "u": staff.user_id, "r": "SUPPORT", "t": token }),
        )
        .await;
    assert_eq!(data(&revoked, "revokeRole")["roles"], json!(["USER"]));

    let audit = app
        .gql(
            Some(&admin.token),
            "query($a: ID) { auditLog(first: 50, actorId: $a) { edges { node { action subjectId } } } }",
            json!({ "a": admin.user_id }),
        )
        .await;
    let actions: Vec<String> = data(&audit, "auditLog")["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["action"].as_str().map(str::to_owned))
        .collect();
    for expected in [
        "user.role_granted",
        "user.role_revoked",
        "mfa.step_up",
        "mfa.credential_added",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "no {expected} in {actions:?}"
        );
    }
}

#[tokio::test]
async fn a_stolen_access_token_alone_cannot_add_a_key() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("victim@example.com").await;
    let finish = "mutation($c: JSON!, $p: String, $t: String) { finishWebauthnRegistration(credential: $c, name: \"k\", currentPassword: $p, stepUpToken: $t) { id } }";
    let begin = "mutation { beginWebauthnRegistration }";

    // Without the password (a thief holding only the token): refused.
    let mut thief_key = Key::new();
    let options = app.gql(Some(&s.token), begin, json!({})).await;
    let credential = thief_key.create(data(&options, "beginWebauthnRegistration"));
    let refused = app
        .gql(Some(&s.token), finish, json!({ "c": credential }))
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    let me = app
        .gql(Some(&s.token), "{ me { twoFactorEnabled } }", json!({}))
        .await;
    assert_eq!(data(&me, "me")["twoFactorEnabled"], false);

    // The owner adds a first key with the password ...
    let mut key = Key::new();
    register_key(&app, &s, &mut key, "First").await;
    // ... and a second one needs the password and a step-up with the first.
    let mut second = Key::new();
    let options = app.gql(Some(&s.token), begin, json!({})).await;
    let credential = second.create(data(&options, "beginWebauthnRegistration"));
    let no_step_up = app
        .gql(
            Some(&s.token),
            finish,
            json!({ "c": credential, "p": "correct horse battery" }),
        )
        .await;
    assert_eq!(error_code(&no_step_up), "STEP_UP_REQUIRED", "{no_step_up}");
    let token = step_up(&app, &s, &mut key).await;
    let options = app.gql(Some(&s.token), begin, json!({})).await;
    let credential = second.create(data(&options, "beginWebauthnRegistration"));
    let added = app
        .gql(
            Some(&s.token),
            finish,
            json!({ "c": credential, "p": "correct horse battery", "t": token }),
        )
        .await;
    data(&added, "finishWebauthnRegistration");
    let list = app
        .gql(
            Some(&s.token),
            "{ webauthnCredentials { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&list, "webauthnCredentials").as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn second_factor_challenges_and_step_up_tokens_expire() {
    // Long enough to register a key (with a password check) on a loaded
    // machine, short enough to wait out.
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.webauthn_ceremony_ttl_secs = 3;
        s.step_up_token_ttl_secs = 3;
        s.step_up_thresholds =
            api::config::parse_thresholds("USD=500,EUR=500,USDC=500,BTC=0.01,ETH=0.1")
                .expect("thresholds");
    })
    .await;
    let s = app.register("expiry@example.com").await;
    let mut key = Key::new();
    register_key(&app, &s, &mut key, "Key").await;
    let usd = app.open_wallet(&s, "USD").await;
    app.deposit(&s, &usd, "1000", "fund").await;
    let payee = app.register("payee@example.com").await;
    app.open_wallet(&payee, "USD").await;
    let pay = |token: &str| json!({ "fromWalletId": usd, "toEmail": "payee@example.com", "amount": "600", "stepUpToken": token });

    // A sign-in challenge answered too late.
    let challenge = password_login(&app, &s.email).await;
    let assertion = key.assert(&challenge["webauthnOptions"]);
    // A step-up token used too late.
    let token = step_up(&app, &s, &mut key).await;
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let late_login = finish_login(&app, &challenge["mfaToken"], &assertion).await;
    assert_eq!(error_code(&late_login), "UNAUTHENTICATED", "{late_login}");
    let late_transfer = app.transfer(&s, pay(&token), "late-1").await;
    assert_eq!(
        error_code(&late_transfer),
        "STEP_UP_REQUIRED",
        "{late_transfer}"
    );
    // A step-up ceremony begun and finished too late.
    let body = app
        .gql(Some(&s.token), "mutation { beginStepUp }", json!({}))
        .await;
    let options = data(&body, "beginStepUp").clone();
    let assertion = key.assert(&options);
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let late_step_up = finish_step_up(&app, &s, &assertion).await;
    assert_eq!(
        error_code(&late_step_up),
        "STEP_UP_REQUIRED",
        "{late_step_up}"
    );
    // In time, the same steps work.
    let fresh = step_up(&app, &s, &mut key).await;
    let sent = app.transfer(&s, pay(&fresh), "late-2").await;
    assert_eq!(data(&sent, "transfer")["transaction"]["amount"], "600.00");
}
