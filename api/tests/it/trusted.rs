//! Trusted documents with the manifest frontend-contract generates: in
//! `require` mode only its documents run (by `documentId`, by APQ hash, or
//! as their exact text); in `allow` mode they run by id beside any other.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, WsClient, error_code};

fn manifest_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../frontend-contract/src/gql/persisted-documents.json")
}

/// The manifest's id and text of the operation `op name` (exact name:
/// `Register` is not `RegisterPushDevice`).
fn document(op: &str, name: &str) -> (String, String) {
    let text = std::fs::read_to_string(manifest_path()).expect("manifest");
    let manifest: std::collections::HashMap<String, String> =
        serde_json::from_str(&text).expect("json");
    manifest
        .into_iter()
        .find(|(_, doc)| {
            doc.contains(&format!("{op} {name}(")) || doc.contains(&format!("{op} {name} {{"))
        })
        .unwrap_or_else(|| panic!("no {op} {name} in the manifest"))
}

async fn app(mode: api::graphql::trusted::TrustedMode) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, move |s| {
        s.trusted_documents = mode;
        s.trusted_documents_files = vec![manifest_path()];
    })
    .await
}

/// Registers through the manifest's `Register` document, by id (a raw
/// `register` mutation is refused in `require` mode).
async fn register_by_id(app: &TestApp) -> String {
    let (id, _) = document("mutation", "Register");
    let body = json!({
        "documentId": id,
        "variables": { "input": { "email": "trusted@example.com", "password": "correct horse battery", "displayName": "Trusted" } },
    });
    let got: Value = app
        .post_graphql(None, &body)
        .await
        .json()
        .await
        .expect("json");
    got["data"]["register"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{got}"))
        .to_owned()
}

#[tokio::test]
async fn require_mode_runs_only_the_apps_documents() {
    let app = app(api::graphql::trusted::TrustedMode::Require).await;
    let u = register_by_id(&app).await;
    let (id, text) = document("query", "Me");
    let hex = id.trim_start_matches("sha256:").to_owned();
    let me = |body: Value| {
        let app = &app;
        let token = u.clone();
        async move {
            let resp = app.post_graphql(Some(&token), &body).await;
            resp.json::<Value>().await.expect("json")
        }
    };
    // By GraphQL-over-HTTP documentId, by APQ hash, and as its exact text.
    for body in [
        json!({ "documentId": id }),
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hex } } }),
        json!({ "query": text }),
    ] {
        let got = me(body.clone()).await;
        assert!(got["errors"].is_null(), "{body}: {got}");
        assert!(got["data"]["me"]["id"].is_string(), "{body}: {got}");
    }
    // Anything else is refused before it runs.
    for body in [
        json!({ "query": "{ me { id email } }" }),
        json!({ "documentId": "sha256:0000000000000000000000000000000000000000000000000000000000000000" }),
        json!({ "documentId": id, "query": "{ me { id } }" }),
        json!({ "query": "{ me { id } }", "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "abc" } } }),
    ] {
        let got = me(body.clone()).await;
        assert_eq!(
            error_code(&got),
            "TRUSTED_DOCUMENT_REQUIRED",
            "{body}: {got}"
        );
    }
    // By documentId over GET too (queries only: a mutation's id is refused).
    let get = |params: Vec<(&'static str, String)>| {
        let app = &app;
        let token = u.clone();
        async move {
            app.client
                .get(app.url("/graphql"))
                .query(&params)
                .header("apollo-require-preflight", "true")
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let got = get(vec![("documentId", id.clone())]).await;
    assert!(got["data"]["me"]["id"].is_string(), "{got}");
    let (register_id, _) = document("mutation", "Register");
    let got = get(vec![("documentId", register_id)]).await;
    assert!(
        got["errors"].is_array() && got["data"]["register"].is_null(),
        "a mutation over GET: {got}"
    );
    // Over the WebSocket too: a manifest subscription runs, another is refused.
    let (_, balances) = document("subscription", "BalanceUpdated");
    let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &u).await;
    ws.subscribe("ok", &balances, json!({})).await;
    ws.subscribe("raw", "subscription { kycStatus { status } }", json!({}))
        .await;
    let msg = ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("refusal");
    assert_eq!(msg["id"], "raw", "{msg}");
    let errors = if msg["type"] == "error" {
        msg["payload"].clone()
    } else {
        msg["payload"]["errors"].clone()
    };
    assert_eq!(
        errors[0]["extensions"]["code"], "TRUSTED_DOCUMENT_REQUIRED",
        "{msg}"
    );
}

#[tokio::test]
async fn allow_mode_runs_manifest_documents_by_id_and_others_as_before() {
    let app = app(api::graphql::trusted::TrustedMode::Allow).await;
    let (id, _) = document("query", "Me");
    let by_id = app
        .post_graphql(None, &json!({ "documentId": id }))
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert!(by_id["errors"].is_null(), "{by_id}");
    assert_eq!(by_id["data"]["me"], Value::Null);
    let raw = app
        .post_graphql(None, &json!({ "query": "{ me { id } }" }))
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert!(raw["errors"].is_null(), "{raw}");
}
