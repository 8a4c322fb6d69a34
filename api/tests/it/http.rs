//! GraphQL over HTTP as the spec and Apollo Client expect it, GraphiQL served
//! offline, health and readiness, and masking of internal errors.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, error_code};

#[tokio::test]
async fn graphiql_and_all_its_assets_are_served_by_the_binary() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app
        .client
        .get(app.url("/graphql"))
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("html");
    assert!(html.contains("graphiql"), "{html}");
    assert!(
        !html.contains("https://"),
        "no asset may come from the internet"
    );
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/graphiql/assets/"))
        .collect();
    assert!(
        assets.len() >= 4,
        "expected script and style links in {html}"
    );
    for asset in assets {
        let resp = app.client.get(app.url(asset)).send().await.expect("asset");
        assert_eq!(resp.status(), StatusCode::OK, "{asset}");
        assert!(
            resp.bytes().await.expect("bytes").len() > 1_000,
            "{asset} is too small"
        );
    }
}

#[tokio::test]
async fn requests_follow_the_graphql_over_http_spec() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let post = |body: &'static str, content_type: &'static str, accept: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .header(CONTENT_TYPE, content_type)
            .header(ACCEPT, accept)
            .body(body)
            .send()
    };
    // A simple (CSRF-prone) content type is refused.
    let r = post("{\"query\":\"{ me { id } }\"}", "text/plain", "*/*")
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Not a GraphQL request body.
    let r = post("{not json", "application/json", "application/json")
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A syntax error: 400 with application/graphql-response+json ...
    let r = post(
        "{\"query\":\"{ me { \"}",
        "application/json",
        "application/graphql-response+json",
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()[CONTENT_TYPE].to_str().expect("ct"),
        "application/graphql-response+json"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    // ... and 200 with application/json.
    let r = post(
        "{\"query\":\"{ me { \"}",
        "application/json; charset=utf-8",
        "application/json",
    )
    .await
    .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[CONTENT_TYPE].to_str().expect("ct"),
        "application/json"
    );

    // A GET without a preflight header could be forged cross-site.
    let r = app
        .client
        .get(app.url("/graphql"))
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // GET runs queries ...
    let r = app
        .client
        .get(app.url("/graphql"))
        .header("apollo-require-preflight", "true")
        .query(&[("query", "{ __typename }")])
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["data"]["__typename"], "Query");
    // ... never mutations.
    let r = app
        .client
        .get(app.url("/graphql"))
        .header("x-apollo-operation-name", "Logout")
        .query(&[("query", "mutation { logout }")])
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test]
async fn health_and_readiness_report_the_database() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::OK);
    app.db.clone().close().await.expect("close pool");
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn database_errors_are_masked_for_clients() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("masked@example.com").await;
    let leaks = |body: &Value| {
        let text = body.to_string().to_lowercase();
        for leak in [
            "pool",
            "sqlx",
            "database",
            "connection",
            "closed",
            "relation",
            "exist",
        ] {
            assert!(!text.contains(leak), "leaked `{leak}`: {body}");
        }
    };
    // A statement failing inside a resolver: coded and masked.
    app.db
        .execute_unprepared("DROP TABLE notifications CASCADE")
        .await
        .expect("drop a table");
    let body = app
        .gql(
            Some(&s.token),
            "{ notifications(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    leaks(&body);
    // The database gone: the session cannot be checked, so the request is
    // a retryable 503 (not UNAUTHENTICATED, which would sign the app out).
    app.db.clone().close().await.expect("close pool");
    let resp = app
        .post_graphql(
            Some(&s.token),
            &json!({ "query": "{ me { wallets { id } } }" }),
        )
        .await;
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    leaks(&body);
}

/// The introspection query GraphiQL sends to load docs and autocompletion
/// (same shape and `ofType` depth as graphql-js's `getIntrospectionQuery`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}"#;

#[tokio::test]
async fn graphiql_can_introspect_but_abusive_depth_is_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = app.gql(None, INTROSPECTION, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    // Valid, but nested far deeper than any client needs.
    let mut deep = String::from("{ __schema { types ");
    for _ in 0..30 {
        deep.push_str("{ ofType ");
    }
    deep.push_str("{ name }");
    deep.push_str(&"}".repeat(32));
    let body = app.gql(None, &deep, json!({})).await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
}

#[tokio::test]
async fn connection_pages_count_towards_complexity_per_node() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.register("pages@example.com").await;
    let page = |alias: &str, first: u32| {
        format!(
            "{alias}: transactions(first: {first}) {{ edges {{ cursor node {{ id kind status amount currency fromWalletId toWalletId memo createdAt }} }} pageInfo {{ hasNextPage endCursor }} }}"
        )
    };
    // Shallow and with few aliases, but five full pages of a wide node.
    let heavy: String = (0..5).map(|i| page(&format!("p{i}"), 100)).collect();
    let body = app
        .gql(Some(&s.token), &format!("{{ {heavy} }}"), json!({}))
        .await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    // The same selection over small pages is fine.
    let light: String = (0..5).map(|i| page(&format!("p{i}"), 10)).collect();
    let body = app
        .gql(Some(&s.token), &format!("{{ {light} }}"), json!({}))
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["p4"]["edges"], json!([]));
}

#[tokio::test]
async fn batches_are_capped() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let op = json!({ "query": "{ __typename }" });
    let send = |n: usize| {
        app.client
            .post(app.url("/graphql"))
            .json(&Value::Array(vec![op.clone(); n]))
            .send()
    };
    let ok = send(2).await.expect("send");
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    let too_many = send(api::http::MAX_BATCH + 1).await.expect("send");
    assert_eq!(too_many.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_expose_the_live_parts_in_prometheus_format() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("metrics@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    app.deposit(&s, &w, "1", "m").await;
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("text");
    for name in [
        "wallet_bff_ws_connections 0",
        "wallet_bff_subscriptions 0",
        "wallet_bff_subscriptions_dropped_for_lag_total 0",
        "wallet_bff_bus_connected 1",
        "wallet_bff_outbox_relay_healthy",
        "wallet_bff_outbox_pending",
        "wallet_bff_outbox_oldest_pending_age_seconds",
        "wallet_bff_db_pool_connections{state=\"in_use\"}",
        "wallet_bff_db_pool_max_connections",
    ] {
        assert!(text.contains(name), "missing `{name}` in:\n{text}");
    }
}

/// The value of the sample `series` (name and labels) in a Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_operations_durations_errors_and_refusals() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.rate_limits_enabled = true;
        s.rate_login_per_account = api::config::RateSetting {
            limit: 2,
            window_secs: 600,
        };
    })
    .await;
    let s = app.register("counted@example.com").await;
    for _ in 0..3 {
        app.gql(Some(&s.token), "query Me { me { id } }", json!({}))
            .await;
    }
    let refused = app
        .gql(
            Some(&s.token),
            "mutation Open { openWallet(currency: \"XYZ\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
    for _ in 0..3 {
        app.gql(
            None,
            "mutation($i: LoginInput!) { login(input: $i) { __typename } }",
            json!({ "i": { "email": "counted@example.com", "password": "wrong password!" } }),
        )
        .await;
    }
    let text = app.metrics().await;
    let at =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    assert_eq!(
        at("wallet_bff_graphql_operations_total{type=\"query\",name=\"Me\"}"),
        3.0
    );
    assert_eq!(
        at("wallet_bff_graphql_operations_total{type=\"mutation\",name=\"Open\"}"),
        1.0
    );
    assert_eq!(
        at("wallet_bff_graphql_operations_total{type=\"mutation\",name=\"anonymous\"}"),
        4.0,
        "register and three logins"
    );
    assert!(at("wallet_bff_graphql_operation_duration_seconds_count{type=\"query\"}") >= 3.0);
    assert!(
        at("wallet_bff_graphql_operation_duration_seconds_bucket{type=\"query\",le=\"+Inf\"}")
            >= 3.0
    );
    assert!(at("wallet_bff_graphql_errors_total{code=\"BAD_USER_INPUT\"}") >= 1.0);
    assert!(
        at("wallet_bff_rate_limited_total{bucket=\"login_account\"}") >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_need_their_token_or_their_own_address_in_production() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let metrics_addr = free.local_addr().expect("addr");
    drop(free);
    let app = TestApp::spawn_with(Backend::Sqlite, move |s| {
        s.app_env = api::config::AppEnv::Production;
        s.metrics_bind_addr = Some(metrics_addr);
    })
    .await;
    let main = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("main");
    assert_eq!(
        main.status(),
        StatusCode::NOT_FOUND,
        "not on the main address without a token"
    );
    let own = app
        .client
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .expect("own address");
    assert_eq!(own.status(), StatusCode::OK);
    assert!(
        own.text()
            .await
            .expect("text")
            .contains("wallet_bff_graphql_operations_total")
    );
    let other = app
        .client
        .get(format!("http://{metrics_addr}/graphql"))
        .send()
        .await
        .expect("only metrics there");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.app_env = api::config::AppEnv::Production;
        s.metrics_token = Some("scrape-token-0123456789".to_owned());
    })
    .await;
    let get = |token: Option<&'static str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(
        get(None).await.expect("none").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some("scrape-token-0123456788"))
            .await
            .expect("wrong")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(Some("scrape-token-0123456789"))
            .await
            .expect("right")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn automatic_persisted_queries_follow_apollos_protocol() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let query = "{ __typename }";
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(query.as_bytes()))
    };
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let send = |body: Value| app.client.post(app.url("/graphql")).json(&body).send();
    // The hash alone is unknown at first ...
    let miss: Value = send(json!({ "extensions": ext }))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(error_code(&miss), "PERSISTED_QUERY_NOT_FOUND", "{miss}");
    assert_eq!(miss["errors"][0]["message"], "PersistedQueryNotFound");
    // ... the client sends the text once ...
    let full: Value = send(json!({ "query": query, "extensions": ext }))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(full["data"]["__typename"], "Query");
    // ... and afterwards the hash is enough.
    let hit: Value = send(json!({ "extensions": ext }))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(hit["data"]["__typename"], "Query", "{hit}");
}

#[tokio::test]
async fn only_valid_persisted_queries_are_kept_and_each_address_registers_a_bounded_number() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let ext = |query: &str| {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
        json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
    };
    let app = &app;
    let send = |body: Value| async move { app.post_json(&body).await };
    // A document that parses but does not validate runs (and fails) once,
    // and is not kept.
    let invalid = "{ noSuchField }";
    let first = send(json!({ "query": invalid, "extensions": ext(invalid) })).await;
    assert_eq!(error_code(&first), "BAD_USER_INPUT", "{first}");
    let again = send(json!({ "extensions": ext(invalid) })).await;
    assert_eq!(error_code(&again), "PERSISTED_QUERY_NOT_FOUND", "{again}");
    // A hash that does not match its text is refused.
    let wrong =
        send(json!({ "query": "{ __typename }", "extensions": ext("{ me { id } }") })).await;
    assert!(
        wrong["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("does not match")),
        "{wrong}"
    );

    // Valid documents: an address registers at most REGISTRATIONS_PER_HOUR;
    // past that its documents still run but are not kept.
    let limit = api::graphql::apq::REGISTRATIONS_PER_HOUR;
    let query = |i: u64| format!("query Q{i} {{ __typename }}");
    for i in 0..=limit {
        let q = query(i);
        let ran = send(json!({ "query": q, "extensions": ext(&q) })).await;
        assert_eq!(ran["data"]["__typename"], "Query", "{ran}");
    }
    let kept = send(json!({ "extensions": ext(&query(limit - 1)) })).await;
    assert_eq!(kept["data"]["__typename"], "Query", "{kept}");
    let dropped = send(json!({ "extensions": ext(&query(limit)) })).await;
    assert_eq!(
        error_code(&dropped),
        "PERSISTED_QUERY_NOT_FOUND",
        "{dropped}"
    );
}

#[tokio::test]
async fn graphiql_opens_on_the_walkthrough_and_every_step_of_it_runs() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let page = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("graphiql")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("defaultQuery: \"# wallet-bff: a walkthrough"),
        "{page}"
    );
    let doc = api::http::graphiql::WALKTHROUGH;
    let run = |op: &'static str, token: Option<String>, doc: String| {
        let app = &app;
        async move {
            let mut req = app
                .client
                .post(app.url("/graphql"))
                .json(&json!({ "query": doc, "operationName": op }));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let body: Value = req.send().await.expect("post").json().await.expect("json");
            assert!(body.get("errors").is_none(), "{op}: {body}");
            body["data"].clone()
        }
    };
    // Bob exists with a USD wallet, as step 4 says.
    let bob = app.register("bob@example.com").await;
    app.open_wallet(&bob, "USD").await;
    let reg = run("Register", None, doc.to_owned()).await;
    let token = reg["register"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let wallet = run("OpenWallet", Some(token.clone()), doc.to_owned()).await;
    let id = wallet["openWallet"]["id"].as_str().expect("id").to_owned();
    let doc = doc.replace("WALLET_ID", &id);
    let dep = run("Deposit", Some(token.clone()), doc.clone()).await;
    assert_eq!(dep["deposit"]["wallet"]["balance"], "100.00");
    let t = run("Transfer", Some(token.clone()), doc.clone()).await;
    assert_eq!(t["transfer"]["wallet"]["balance"], "87.50");
    let history = run("History", Some(token), doc.clone()).await;
    assert_eq!(
        history["transactions"]["edges"].as_array().map(Vec::len),
        Some(2)
    );
    // The subscription is valid too (run over the WebSocket by GraphiQL).
    let mut ws =
        crate::support::WsClient::authed(app.addr, "graphql-transport-ws", &bob.token).await;
    ws.send(json!({ "id": "b", "type": "subscribe", "payload": { "query": doc, "operationName": "Balances" } }))
        .await;
    assert!(
        ws.silent_for(std::time::Duration::from_millis(300)).await,
        "no error for the subscription"
    );
}

/// graphql-http's `serverAudits` (installed with frontend-contract by
/// scripts/test.sh) against the running server.
async fn conformance_audit(app: &TestApp, preflight: bool) -> Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../frontend-contract/scripts/audit.mjs");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script).arg(app.url("/graphql"));
    if preflight {
        cmd.arg("--preflight");
    }
    let out = cmd.output().await.expect(
        "node must be installed (scripts/test.sh installs it and frontend-contract's packages)",
    );
    assert!(
        out.status.success(),
        "the audit did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("audit JSON")
}

#[tokio::test]
async fn every_graphql_over_http_audit_passes_with_apollos_preflight_header() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.rate_limits_enabled = false).await;
    let with = conformance_audit(&app, true).await;
    assert_eq!(with["total"], 61, "{with}");
    assert_eq!(with["ok"], 61, "{with}");
    // Without it, only the plain GETs are refused, by the CSRF rule: a
    // browser sends such a GET cross-site without asking.
    let without = conformance_audit(&app, false).await;
    let mut refused: Vec<String> = without["notOk"]
        .as_array()
        .expect("notOk")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect();
    refused.sort();
    assert_eq!(refused, ["5A70", "6A70", "D6D5"], "{without}");
}

#[tokio::test]
async fn a_missing_variable_is_bad_user_input_not_an_internal_error() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let body = app
        .post_json(&json!({
            "query": "mutation M($token: String!, $platform: PushPlatform!) { registerPushDevice(token: $token, platform: $platform) { id } }",
            "variables": {},
        }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
}

/// A value of the wrong kind for a scalar that validation lets through
/// (`Decimal` and `DateTime` are strings of a form only their parser knows)
/// is the client's mistake: `BAD_USER_INPUT`, not an internal error, in a
/// variable's input object as in a literal argument.
#[tokio::test]
async fn a_value_of_the_wrong_kind_for_a_scalar_is_bad_user_input() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.register("wrong-kind@example.com").await;
    let wallet = app.open_wallet(&s, "USD").await;
    let to = app.register("wrong-kind-to@example.com").await;
    let to_wallet = app.open_wallet(&to, "USD").await;
    let transfer = app
        .transfer(
            &s,
            json!({ "fromWalletId": wallet, "toWalletId": to_wallet, "amount": true }),
            "wrong-kind-1",
        )
        .await;
    assert_eq!(error_code(&transfer), "BAD_USER_INPUT", "{transfer}");
    let message = transfer["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("\"Decimal\""), "{transfer}");
    let page = app
        .gql(
            Some(&s.token),
            "{ transactions(from: true) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&page), "BAD_USER_INPUT", "{page}");
    let message = page["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("\"DateTime\""), "{page}");
}

/// Runs a contract test script of `frontend-contract/tests/` against the
/// server; it prints `ok` when every check held.
async fn contract_script(app: &TestApp, name: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../frontend-contract/tests")
        .join(name);
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(app.url("/graphql"))
        .output()
        .await
        .expect(
            "node must be installed (scripts/test.sh installs it and frontend-contract's packages)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Apollo Client 4 (`frontend-contract/tests/apollo.mjs`, with the generated
/// documents) against the running server: HttpLink and GraphQLWsLink,
/// Relay pages merged by `fetchMore`, `extensions.code`, a live event, and
/// graphql-ws seeing close code 1000 when it disposes.
#[tokio::test]
async fn apollo_client_runs_the_generated_documents_over_http_and_websocket() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.rate_limits_enabled = false;
        s.redis_url = Some(crate::support::redis_url());
    })
    .await;
    contract_script(&app, "apollo.mjs").await;
}

/// A React-Native-like client (`frontend-contract/tests/websocket-only.mjs`):
/// every operation over graphql-ws; a socket closed with 4403 when the
/// access token expires recovers through refreshSession in
/// `connectionParams`, and its subscription delivers again.
#[tokio::test]
async fn a_websocket_only_client_recovers_from_4403_by_refreshing_its_session() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.rate_limits_enabled = false;
        s.access_token_ttl_secs = 3;
    })
    .await;
    contract_script(&app, "websocket-only.mjs").await;
}
