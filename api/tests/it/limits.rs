//! Rate limits (shared through Redis by several instances, in process on the
//! embedded default) and the limits on the shape of queries and batches.

use api::config::{AppEnv, RateSetting};
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, data, error_code, redis_url};

const LOGIN: &str = "mutation($i: LoginInput!) { login(input: $i) { __typename } }";

async fn login(app: &TestApp, email: &str, password: &str) -> Value {
    app.gql(
        None,
        LOGIN,
        json!({ "i": { "email": email, "password": password } }),
    )
    .await
}

fn rate(limit: u64) -> RateSetting {
    RateSetting {
        limit,
        window_secs: 60,
    }
}

fn assert_rate_limited(body: &Value) {
    assert_eq!(error_code(body), "RATE_LIMITED", "{body}");
    let retry = body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter: {body}"));
    assert!((1..=60).contains(&retry), "{body}");
}

#[tokio::test]
async fn sign_in_attempts_per_account_are_shared_by_instances_through_redis() {
    let prefix = format!("wallet-bff-test:{}", uuid::Uuid::new_v4());
    let tweak = |s: &mut api::config::Settings| {
        s.redis_url = Some(redis_url());
        s.rate_limit_prefix = prefix.clone();
        s.rate_login_per_account = rate(3);
    };
    let one = TestApp::spawn_with(Backend::Postgres, tweak).await;
    let two = TestApp::spawn_with(Backend::Postgres, tweak).await;
    one.register("target@example.com").await;
    one.register("bystander@example.com").await;

    // Three attempts, spread over both instances, use up the account's budget.
    for (app, password) in [
        (&one, "guess number one"),
        (&two, "guess number two"),
        (&one, "guess number 3"),
    ] {
        assert_eq!(
            error_code(&login(app, "target@example.com", password).await),
            "UNAUTHENTICATED"
        );
    }
    // The fourth is refused on either instance, even with the right password.
    assert_rate_limited(&login(&two, "target@example.com", "correct horse battery").await);
    assert_rate_limited(&login(&one, "TARGET@example.com", "correct horse battery").await);
    // Other accounts are not affected.
    let other = login(&one, "bystander@example.com", "correct horse battery").await;
    assert_eq!(data(&other, "login")["__typename"], "AuthPayload");
}

#[tokio::test]
async fn sign_in_attempts_per_address_are_limited_on_the_embedded_default() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_login_per_address = rate(4);
    })
    .await;
    app.register("spray@example.com").await;
    for i in 0..4 {
        let body = login(&app, &format!("nobody{i}@example.com"), "password spraying").await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
    }
    // Spraying other accounts from the same address is cut off.
    assert_rate_limited(&login(&app, "spray@example.com", "correct horse battery").await);
}

#[tokio::test]
async fn money_mutations_are_limited_per_user() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.redis_url = Some(redis_url());
        s.rate_money_per_user = rate(3);
    })
    .await;
    let a = app.register("busy@example.com").await;
    let b = app.register("calm@example.com").await;
    let a_usd = app.open_wallet(&a, "USD").await;
    let b_usd = app.open_wallet(&b, "USD").await;
    for i in 0..3 {
        data(
            &app.deposit(&a, &a_usd, "1", &format!("d{i}")).await,
            "deposit",
        );
    }
    assert_rate_limited(&app.deposit(&a, &a_usd, "1", "d3").await);
    let w = app.withdraw(&a, &a_usd, "1", "w0").await;
    assert_rate_limited(&w);
    // The refused deposit moved nothing.
    let wallet = app.wallet(&a, &a_usd).await;
    assert_eq!(data(&wallet, "wallet")["balance"], "3.00");
    data(&app.deposit(&b, &b_usd, "1", "d0").await, "deposit");
}

#[tokio::test]
async fn requests_are_limited_per_tier_with_http_429_and_retry_after() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_requests_anonymous = rate(5);
        s.rate_requests_user = rate(8);
    })
    .await;
    // `register` is the first anonymous request.
    let s = app.register("tier@example.com").await;
    let post = |token: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": "{ me { id } }" }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for _ in 0..4 {
        assert!(post(None).await.expect("send").status().is_success());
    }
    let refused = post(None).await.expect("send");
    assert_eq!(refused.status().as_u16(), 429);
    let retry: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    assert!((1..=60).contains(&retry));
    let body: Value = refused.json().await.expect("json");
    assert_rate_limited(&body);
    // Refused whatever it carries: a document that would not even parse
    // gets the same answer.
    let unparsed = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ me { " }))
        .send()
        .await
        .expect("send");
    assert_eq!(unparsed.status().as_u16(), 429);
    assert_rate_limited(&unparsed.json().await.expect("json"));
    // A signed-in user has a budget of its own ...
    for _ in 0..8 {
        let resp = post(Some(s.token.clone())).await.expect("send");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    // ... which runs out too.
    assert_eq!(
        post(Some(s.token.clone()))
            .await
            .expect("send")
            .status()
            .as_u16(),
        429
    );
}

#[tokio::test]
async fn aliases_root_fields_and_repeated_sign_ins_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let aliases: String = (0..31).map(|i| format!("a{i}: __typename ")).collect();
    let body = app.gql(None, &format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    let fields: String = (0..21).map(|_| "__typename ").collect();
    let body = app.gql(None, &format!("{{ {fields} }}"), json!({})).await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    // Guessing passwords through aliases in one request.
    let body = app
        .gql(
            None,
            r#"mutation { a: login(input: {email: "x@example.com", password: "first guess!"}) { __typename }
                          b: login(input: {email: "x@example.com", password: "second guess"}) { __typename } }"#,
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "QUERY_TOO_COMPLEX", "{body}");
    assert!(body["data"].is_null(), "nothing ran: {body}");
}

#[tokio::test]
async fn sign_in_and_money_mutations_cannot_be_batched() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let s = app.register("batch@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    let batch = json!([
        { "query": "{ me { id } }" },
        { "query": "mutation($w: ID!) { deposit(input: {walletId: $w, amount: \"5\"}, idempotencyKey: \"b1\") { replayed } }",
          "variables": { "w": usd } },
    ]);
    let body: Value = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&s.token)
        .json(&batch)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(body[0]["data"]["me"]["id"], s.user_id.as_str(), "{body}");
    assert_eq!(error_code(&body[1]), "BAD_USER_INPUT", "{body}");
    let wallet = app.wallet(&s, &usd).await;
    assert_eq!(
        data(&wallet, "wallet")["balance"],
        "0.00",
        "the batched deposit did not run"
    );
    // Alone, the same deposit runs.
    data(&app.deposit(&s, &usd, "5", "b1").await, "deposit");
}

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn persisted_queries_registered_on_one_instance_work_on_another() {
    let prefix = format!("wallet-bff-test:{}", uuid::Uuid::new_v4());
    let tweak = |s: &mut api::config::Settings| {
        s.redis_url = Some(redis_url());
        s.rate_limit_prefix = prefix.clone();
    };
    let one = TestApp::spawn_with(Backend::Postgres, tweak).await;
    let two = TestApp::spawn_with(Backend::Postgres, tweak).await;
    let query = "query Probe { __typename }";
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(query) } });
    let miss = two.post_json(&json!({ "extensions": ext })).await;
    assert_eq!(error_code(&miss), "PERSISTED_QUERY_NOT_FOUND");
    let full = one
        .post_json(&json!({ "query": query, "extensions": ext }))
        .await;
    assert_eq!(full["data"]["__typename"], "Query");
    let hit = two.post_json(&json!({ "extensions": ext })).await;
    assert_eq!(hit["data"]["__typename"], "Query", "{hit}");

    // A persisted sign-in is still refused inside a batch: the check runs
    // on the stored document, not on the (absent) text.
    let login = r#"mutation { login(input: {email: "apq@example.com", password: "whatever pw"}) { __typename } }"#;
    let login_ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256(login) } });
    one.post_json(&json!({ "query": login, "extensions": login_ext }))
        .await;
    let batch = two
        .post_json(&json!([{ "query": "{ __typename }" }, { "extensions": login_ext }]))
        .await;
    assert_eq!(error_code(&batch[1]), "BAD_USER_INPUT", "{batch}");

    // Over GET (Apollo's useGETForHashedQueries) a hashed query runs, but a
    // hashed mutation does not: GET never runs mutations, even when only
    // the stored document says it is one.
    let hit = two.get_json(&[("extensions", ext.to_string())]).await;
    assert_eq!(hit["data"]["__typename"], "Query", "{hit}");
    let mutation = two.get_json(&[("extensions", login_ext.to_string())]).await;
    assert_eq!(error_code(&mutation), "BAD_USER_INPUT", "{mutation}");
    assert!(
        mutation["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("GET requests may only run queries")),
        "{mutation}"
    );
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_cancelled_with_a_coded_error_and_moves_nothing() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        // Long enough for sign-up (argon2) on a loaded machine; the lease
        // outlives the limit, as it must.
        s.request_timeout_secs = 3;
        s.idempotency_lease_secs = 4;
    })
    .await;
    let s = app.register("slow-db@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    // Another transaction holds the wallet's row lock, so the deposit waits
    // for it past the time limit.
    let blocker = app.lock_wallet(&usd).await;
    let deposit = json!({
        "query": "mutation($i: DepositInput!, $k: String!) { deposit(input: $i, idempotencyKey: $k) { replayed wallet { balance } } }",
        "variables": { "i": { "walletId": usd, "amount": "10.00" }, "k": "slow-1" },
    });
    let resp = app.post_graphql(Some(&s.token), &deposit).await;
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(error_code(&body), "INTERNAL_SERVER_ERROR", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["timedOut"], true, "{body}");

    blocker.rollback().await.expect("release the lock");

    // In a batch, the cancelled operation answers in its place and the
    // others are unaffected (Apollo's BatchHttpLink needs the array). This
    // blocker keeps even readers of the history out (not the session check,
    // which in a batch reads the account and its wallets only).
    let blocker = app.db.begin().await.expect("begin");
    blocker
        .execute_unprepared("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock the transactions table");
    let batch = json!([
        { "query": "{ __typename }" },
        { "query": "{ transactions { edges { node { id } } } }" },
    ]);
    let slow_query = app.post_graphql(Some(&s.token), &batch).await;
    assert_eq!(slow_query.status().as_u16(), 200);
    let answers: Value = slow_query.json().await.expect("json");
    assert_eq!(answers[0]["data"]["__typename"], "Query", "{answers}");
    assert_eq!(
        error_code(&answers[1]),
        "INTERNAL_SERVER_ERROR",
        "{answers}"
    );
    assert_eq!(answers[1]["errors"][0]["extensions"]["timedOut"], true);
    // Alone, the same query has its page read with the session check
    // (the home screen), which runs under the same limit.
    let home = json!({ "query": "{ me { id } transactions { edges { node { id } } } }" });
    let started = std::time::Instant::now();
    let alone = app.post_graphql(Some(&s.token), &home).await;
    assert_eq!(alone.status().as_u16(), 503);
    // Answered as an executed operation that timed out would be.
    assert_eq!(alone.headers()["retry-after"], "1");
    assert_eq!(alone.headers()["content-type"], "application/json");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "answered at the limit, not when the lock went: {:?}",
        started.elapsed()
    );
    let alone: Value = alone.json().await.expect("json");
    assert_eq!(error_code(&alone), "INTERNAL_SERVER_ERROR", "{alone}");
    assert_eq!(
        alone["errors"][0]["extensions"]["timedOut"], true,
        "{alone}"
    );
    blocker.rollback().await.expect("release the lock");

    // The cancelled transaction moved nothing.
    let me = app
        .gql(Some(&s.token), "{ me { wallets { balance } } }", json!({}))
        .await;
    assert_eq!(data(&me, "me")["wallets"][0]["balance"], "0.00", "{me}");
    // Its claim on the key ends with its lease; the retry then moves the
    // money, once.
    tokio::time::sleep(std::time::Duration::from_millis(4_500)).await;
    let retry = app.deposit(&s, &usd, "10.00", "slow-1").await;
    assert_eq!(data(&retry, "deposit")["replayed"], false, "{retry}");
    assert_eq!(data(&retry, "deposit")["wallet"]["balance"], "10.00");
    let again = app.deposit(&s, &usd, "10.00", "slow-1").await;
    assert_eq!(data(&again, "deposit")["replayed"], true, "{again}");
    assert_eq!(data(&again, "deposit")["wallet"]["balance"], "10.00");
}

#[tokio::test]
async fn production_mode_hides_the_schema_and_graphiql() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.app_env = AppEnv::Production;
        // The production defaults (config's unit test checks they are).
        s.introspection_enabled = false;
        s.suggestions_enabled = false;
        s.graphiql_enabled = false;
    })
    .await;
    let body = app
        .gql(None, "{ __schema { types { name } } }", json!({}))
        .await;
    // async-graphql answers a disabled introspection with null.
    assert!(
        body["data"].is_object() && body["data"]["__schema"].is_null(),
        "{body}"
    );
    assert!(!body.to_string().contains("\"Wallet\""), "{body}");
    // No field suggestions either ("Did you mean ...").
    let typo = app.gql(None, "{ mee { id } }", json!({})).await;
    let message = typo["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{typo}");
    let page = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("send");
    assert_eq!(page.status().as_u16(), 404);
    // Queries themselves still work.
    let ok = app.gql(None, "{ __typename }", json!({})).await;
    assert_eq!(ok["data"]["__typename"], "Query");
}

#[tokio::test]
async fn limits_hold_per_instance_while_redis_is_down() {
    let mut redis = crate::support::PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, move |s| {
        s.redis_url = Some(url);
        s.rate_login_per_account = rate(3);
    })
    .await;
    app.register("outage-limit@example.com").await;
    // One attempt counted in Redis, then Redis goes away.
    let first = login(&app, "outage-limit@example.com", "guess number one").await;
    assert_eq!(error_code(&first), "UNAUTHENTICATED");
    redis.stop();
    // The instance keeps counting on its own: requests still get answers,
    // and the limit still bites.
    for password in ["guess number two", "guess number 3", "guess number four"] {
        let body = login(&app, "outage-limit@example.com", password).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    assert_rate_limited(&login(&app, "outage-limit@example.com", "correct horse battery").await);
}

#[tokio::test]
async fn request_bodies_over_the_limit_are_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.body_limit_bytes = 4_096).await;
    let padding = "x".repeat(8_192);
    let resp = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": format!("{{ __typename }} # {padding}") }))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 413);
    // Under the limit the same request runs.
    let ok = app.gql(None, "{ __typename } # short", json!({})).await;
    assert_eq!(ok["data"]["__typename"], "Query");
}

#[tokio::test]
async fn websocket_upgrades_count_against_the_address() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_requests_anonymous = rate(2);
    })
    .await;
    let upgrade = || {
        let mut req = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        tokio_tungstenite::connect_async(req)
    };
    for _ in 0..2 {
        upgrade().await.expect("upgrade within the budget");
    }
    match upgrade().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => panic!(
            "expected HTTP 429, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
}

#[tokio::test]
async fn operations_started_over_a_websocket_count_against_the_user() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        // A day-long window: no window boundary falls inside the test.
        s.rate_requests_user = RateSetting {
            limit: 5,
            window_secs: 86_400,
        };
    })
    .await;
    let s = app.register("ws-budget@example.com").await;
    // Neither `register` nor the socket's upgrade carries the user's token:
    // both count against the address. The user's five go to the socket.
    let mut ws = crate::support::WsClient::authed(app.addr, "graphql-transport-ws", &s.token).await;
    let mut answered = Vec::new();
    for i in 0..6 {
        let id = format!("q{i}");
        ws.subscribe(&id, "{ me { id } }", json!({})).await;
        let first = ws
            .next_message(std::time::Duration::from_secs(5))
            .await
            .expect("an answer");
        if first["type"] == "next" {
            let done = ws
                .next_message(std::time::Duration::from_secs(5))
                .await
                .expect("complete");
            assert_eq!(done["type"], "complete", "{done}");
        }
        answered.push(first);
    }
    let ok = answered.iter().filter(|m| m["type"] == "next").count();
    assert_eq!(ok, 5, "{answered:?}");
    let refused = answered.last().expect("six answers");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    assert!(
        refused["payload"][0]["extensions"]["retryAfter"]
            .as_u64()
            .is_some_and(|r| (1..=86_400).contains(&r)),
        "{refused}"
    );
    // Over HTTP the same user is out of budget too: one budget, two ways in.
    let resp = app
        .post_graphql(Some(&s.token), &json!({ "query": "{ me { id } }" }))
        .await;
    assert_eq!(resp.status().as_u16(), 429);
}

#[tokio::test]
async fn staff_have_a_tier_of_their_own_and_proxied_clients_count_by_their_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_requests_anonymous = rate(3);
        s.rate_requests_user = rate(2);
        s.rate_requests_staff = rate(6);
        s.trust_forwarded_for = true;
    })
    .await;
    // Each client behind the proxy has its own anonymous budget, named by
    // the address the proxy appended last.
    let from = |addr: &str| {
        app.client
            .post(app.url("/graphql"))
            .header("x-forwarded-for", format!("203.0.113.250, {addr}"))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
    };
    for _ in 0..3 {
        assert!(
            from("198.51.100.1")
                .await
                .expect("send")
                .status()
                .is_success()
        );
    }
    assert_eq!(
        from("198.51.100.1").await.expect("send").status().as_u16(),
        429
    );
    assert!(
        from("198.51.100.2")
            .await
            .expect("send")
            .status()
            .is_success()
    );
    // A header line added by the client before the proxy's does not pick
    // the address: the last line counts.
    let spoofed = app
        .client
        .post(app.url("/graphql"))
        .header("x-forwarded-for", "198.51.100.77")
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("send");
    assert_eq!(spoofed.status().as_u16(), 429);

    // A staff member's token carries the staff tier.
    let officer = app.admin("officer@example.com").await;
    let me = json!({ "query": "{ me { id } }" });
    for i in 0..6 {
        let resp = app.post_graphql(Some(&officer.token), &me).await;
        assert!(resp.status().is_success(), "request {i}: {}", resp.status());
    }
    let refused = app.post_graphql(Some(&officer.token), &me).await;
    assert_eq!(refused.status().as_u16(), 429);
}

#[tokio::test]
async fn every_operation_of_a_batch_counts() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_requests_anonymous = rate(4);
    })
    .await;
    let batch: Vec<Value> = (0..4)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let send = |body: Value| app.client.post(app.url("/graphql")).json(&body).send();
    let first = send(json!(batch)).await.expect("send");
    assert!(first.status().is_success());
    let next = send(json!({ "query": "{ __typename }" }))
        .await
        .expect("send");
    assert_eq!(next.status().as_u16(), 429);
}
