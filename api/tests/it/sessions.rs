//! Login, refresh-token rotation and reuse detection, logout.

use serde_json::json;

use crate::support::{Backend, TestApp, audit_actions, data, error_code};

const REFRESH: &str =
    "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken refreshToken } }";

#[tokio::test]
async fn login_refuses_wrong_passwords_and_unknown_accounts_alike() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.register("known@example.com").await;
    let login = |email: &'static str, password: &'static str| {
        let app = &app;
        async move {
            app.gql(
                None,
                "mutation($i: LoginInput!) { login(input: $i) { __typename ... on AuthPayload { accessToken } } }",
                json!({ "i": { "email": email, "password": password } }),
            )
            .await
        }
    };
    let wrong = login("known@example.com", "not the password").await;
    let unknown = login("unknown@example.com", "not the password").await;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");
    assert_eq!(error_code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
    let ok = login("KNOWN@example.com", "correct horse battery").await;
    assert_eq!(data(&ok, "login")["__typename"], "AuthPayload");
    let dup = app
        .gql(
            None,
            "mutation { register(input: {email: \"known@example.com\", password: \"another password\", displayName: \"X\"}) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&dup), "BAD_USER_INPUT");
    let weak = app
        .gql(
            None,
            "mutation { register(input: {email: \"weak@example.com\", password: \"short\", displayName: \"X\"}) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&weak), "BAD_USER_INPUT");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("rotate@example.com").await;
    let first = app.gql(None, REFRESH, json!({ "t": s.refresh })).await;
    let first = data(&first, "refreshSession").clone();
    let r1 = first["refreshToken"].as_str().expect("r1").to_owned();
    assert_ne!(r1, s.refresh);
    let access = first["accessToken"].as_str().expect("at");
    let me = || app.gql(Some(access), "{ me { email } }", json!({}));
    assert_eq!(data(&me().await, "me")["email"], "rotate@example.com");

    // The original token is presented again: theft is assumed.
    let reuse = app.gql(None, REFRESH, json!({ "t": s.refresh })).await;
    assert_eq!(error_code(&reuse), "UNAUTHENTICATED");
    // ... so the newest token of the family no longer works either, nor
    // does the access token issued with it (the thief's, maybe).
    let after = app.gql(None, REFRESH, json!({ "t": r1 })).await;
    assert_eq!(error_code(&after), "UNAUTHENTICATED");
    let me = me().await;
    assert_eq!(error_code(&me), "UNAUTHENTICATED", "{me}");
    // The reuse is on the audit trail, against the session's owner.
    let reused = audit_actions(&app, &s.user_id).await;
    assert_eq!(
        reused
            .iter()
            .filter(|a| *a == "auth.refresh_token_reused")
            .count(),
        1,
        "{reused:?}"
    );
    let garbage = app.gql(None, REFRESH, json!({ "t": "nonsense" })).await;
    assert_eq!(error_code(&garbage), "UNAUTHENTICATED");
}

#[tokio::test]
async fn logout_ends_the_session_and_me_is_null_without_a_token() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.register("bye@example.com").await;
    let out = app
        .gql(Some(&s.token), "mutation { logout }", json!({}))
        .await;
    assert_eq!(data(&out, "logout"), true);
    let refresh = app.gql(None, REFRESH, json!({ "t": s.refresh })).await;
    assert_eq!(error_code(&refresh), "UNAUTHENTICATED");
    // The access token of the ended session stops working at once.
    let stale = app.gql(Some(&s.token), "{ me { id } }", json!({})).await;
    assert_eq!(error_code(&stale), "UNAUTHENTICATED", "{stale}");
    let anon = app.gql(None, "{ me { id } }", json!({})).await;
    assert!(
        anon["data"]["me"].is_null() && anon.get("errors").is_none(),
        "{anon}"
    );
}

#[tokio::test]
async fn a_refresh_racing_a_logout_never_leaves_a_live_token() {
    let app = TestApp::spawn(Backend::Postgres).await;
    app.register("racer@example.com").await;
    for _ in 0..15 {
        let s = app.login("racer@example.com").await;
        let (refreshed, _) = tokio::join!(
            app.gql(None, REFRESH, json!({ "t": s.refresh })),
            app.gql(Some(&s.token), "mutation { logout }", json!({})),
        );
        if let Some(next) = refreshed["data"]["refreshSession"]["refreshToken"].as_str() {
            let after = app.gql(None, REFRESH, json!({ "t": next })).await;
            assert_eq!(
                error_code(&after),
                "UNAUTHENTICATED",
                "token survived logout: {after}"
            );
        }
    }
}
