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
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = TestApp::spawn(backend).await;
        let s = app.register("bye@example.com").await;
        let usd = app.open_wallet(&s, "USD").await;
        app.deposit(&s, &usd, "3", "bye-d").await;
        let home = "{ me { id wallets { currency } } transactions(first: 5) { edges { node { amount } } } }";
        let live = app.gql(Some(&s.token), home, json!({})).await;
        assert_eq!(data(&live, "me")["wallets"][0]["currency"], "USD");
        assert_eq!(
            data(&live, "transactions")["edges"][0]["node"]["amount"],
            "3.00"
        );
        let out = app
            .gql(Some(&s.token), "mutation { logout }", json!({}))
            .await;
        assert_eq!(data(&out, "logout"), true);
        let refresh = app.gql(None, REFRESH, json!({ "t": s.refresh })).await;
        assert_eq!(error_code(&refresh), "UNAUTHENTICATED");
        // The access token of the ended session stops working at once, for
        // a query (its session check reads the wallets and the history page
        // along) as for a mutation.
        let stale = app.gql(Some(&s.token), home, json!({})).await;
        assert_eq!(error_code(&stale), "UNAUTHENTICATED", "{stale}");
        let stale = app
            .gql(
                Some(&s.token),
                "mutation { openWallet(currency: \"EUR\") { id } }",
                json!({}),
            )
            .await;
        assert_eq!(error_code(&stale), "UNAUTHENTICATED", "{stale}");
        let anon = app.gql(None, "{ me { id } }", json!({})).await;
        assert!(
            anon["data"]["me"].is_null() && anon.get("errors").is_none(),
            "{anon}"
        );
    }
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

#[tokio::test]
async fn one_sweep_ends_exactly_the_watched_sessions_that_are_no_longer_live() {
    use api::http::session_watch::{CHUNK, SessionWatch};
    use std::sync::Arc;
    use std::time::Duration;
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = TestApp::spawn(backend).await;
        app.register("swept-alive@example.com").await;
        let gone = app.register("swept-gone@example.com").await;
        let session_of = |email: &'static str| {
            let db = app.db.clone();
            async move {
                use sea_orm::{ConnectionTrait, Statement};
                let row = db
                    .query_one_raw(Statement::from_string(
                        db.get_database_backend(),
                        format!("SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE u.email = '{email}'"),
                    ))
                    .await
                    .expect("query")
                    .expect("a session");
                row.try_get_by_index::<uuid::Uuid>(0).expect("id")
            }
        };
        let (alive_id, gone_id) = (
            session_of("swept-alive@example.com").await,
            session_of("swept-gone@example.com").await,
        );
        let out = app
            .gql(Some(&gone.token), "mutation { logout }", json!({}))
            .await;
        assert_eq!(data(&out, "logout"), true);

        let watch = Arc::new(SessionWatch::default());
        // More unknown sessions than one statement asks about, so the live
        // one sits in a later chunk than some of the ended ones.
        let mut unknown: Vec<_> = (0..CHUNK + 10)
            .map(|_| watch.register(uuid::Uuid::now_v7()))
            .collect();
        let mut two_sockets = [watch.register(alive_id), watch.register(alive_id)];
        let mut ended = watch.register(gone_id);
        assert_eq!(watch.len(), CHUNK + 12, "{backend:?}");
        let swept = watch.sweep(&app.db).await.expect("sweep");
        assert_eq!(
            swept,
            CHUNK + 11,
            "{backend:?}: the unknown and the logged-out"
        );

        let soon = Duration::from_millis(200);
        assert!(tokio::time::timeout(soon, ended.ended()).await.is_ok());
        assert!(
            tokio::time::timeout(soon, unknown[CHUNK].ended())
                .await
                .is_ok()
        );
        for socket in &mut two_sockets {
            assert!(
                tokio::time::timeout(soon, socket.ended()).await.is_err(),
                "{backend:?}"
            );
        }
        // A closed socket leaves; its session stays while another is open.
        drop(unknown);
        drop(ended);
        let [first, mut second] = two_sockets;
        drop(first);
        assert_eq!(watch.len(), 1);
        assert_eq!(watch.sweep(&app.db).await.expect("sweep"), 0);
        assert!(tokio::time::timeout(soon, second.ended()).await.is_err());
        drop(second);
        assert!(watch.is_empty());
    }
}
