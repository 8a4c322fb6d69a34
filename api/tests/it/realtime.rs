//! Live events end to end: outbox -> relay -> bus -> hub -> WebSocket, with
//! real WebSocket clients, real Redis and, where the issue asks for
//! processes, the real binary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Backend, TestApp, WsClient, WsEnd, data, redis_url};

const BALANCES: &str =
    "subscription($w: ID, $after: Int) { balanceUpdated(walletId: $w, afterSequence: $after) {
    id sequence delta transactionId wallet { id balance availableBalance frozenBalance } } }";

async fn redis_app() -> TestApp {
    TestApp::spawn_with(Backend::Postgres, |s| s.redis_url = Some(redis_url())).await
}

#[tokio::test]
async fn a_transfer_reaches_websocket_subscribers_over_both_subprotocols() {
    let app = redis_app().await;
    let alice = app.register("ws-alice@example.com").await;
    let bob = app.register("ws-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "100", "d").await;
    for (i, protocol) in ["graphql-transport-ws", "graphql-ws"]
        .into_iter()
        .enumerate()
    {
        let mut ws = WsClient::authed(app.addr, protocol, &bob.token).await;
        ws.subscribe("1", BALANCES, json!({ "w": bw })).await;
        // The subscription is registered once the server has read the message.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let amount = format!("{}.25", i + 1);
        let t = app
            .transfer(
                &alice,
                json!({ "fromWalletId": aw, "toWalletId": bw, "amount": amount }),
                &format!("t{i}"),
            )
            .await;
        let tx_id = data(&t, "transfer")["transaction"]["id"].clone();
        let payload = ws.next_data("1", Duration::from_secs(5)).await;
        let event = &payload["data"]["balanceUpdated"];
        assert_eq!(event["transactionId"], tx_id, "{protocol}: {payload}");
        assert_eq!(event["delta"], json!(amount));
        assert_eq!(event["wallet"]["id"], json!(bw));
        let expected = if i == 0 { "1.25" } else { "3.50" };
        assert_eq!(event["wallet"]["balance"], expected, "{protocol}");
    }
}

const SENT: &str = "subscription($after: Int) { transactionSent(afterSequence: $after) {
    id sequence transaction { id kind status amount currency fromWalletId toWalletId memo } } }";

#[tokio::test]
async fn the_sender_gets_transaction_sent_over_both_subprotocols_replayed_then_live() {
    let app = redis_app().await;
    let alice = app.register("sent-alice@example.com").await;
    let bob = app.register("sent-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "100", "d").await;
    let transfer = |amount: &str, key: &str| {
        let input = json!({ "fromWalletId": aw, "toWalletId": bw, "amount": amount, "memo": key });
        let (app, alice, key) = (&app, &alice, key.to_owned());
        async move {
            let t = app.transfer(alice, input, &key).await;
            data(&t, "transfer")["transaction"]["id"].clone()
        }
    };
    // Bob listens for sent transfers too: he sends none, so he gets none.
    let mut bob_ws = WsClient::authed(app.addr, "graphql-ws", &bob.token).await;
    bob_ws.subscribe("sent", SENT, json!({ "after": 0 })).await;
    let mut sent = vec![transfer("1.50", "t-before").await];
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        let mut ws = WsClient::authed(app.addr, protocol, &alice.token).await;
        ws.subscribe("s", SENT, json!({ "after": 0 })).await;
        // Every transfer so far is replayed, in order ...
        let mut seen = Vec::new();
        for _ in 0..sent.len() {
            seen.push(ws.next_data("s", Duration::from_secs(5)).await);
        }
        // ... then a new one arrives live.
        sent.push(transfer("2.25", &format!("t-{protocol}")).await);
        seen.push(ws.next_data("s", Duration::from_secs(5)).await);
        let events: Vec<&Value> = seen.iter().map(|p| &p["data"]["transactionSent"]).collect();
        let ids: Vec<Value> = events
            .iter()
            .map(|e| e["transaction"]["id"].clone())
            .collect();
        assert_eq!(ids, sent, "{protocol}: {seen:?}");
        let seqs: Vec<i64> = events
            .iter()
            .map(|e| e["sequence"].as_i64().expect("seq"))
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{protocol}: {seqs:?}");
        let last = events.last().expect("live event");
        assert_eq!(last["transaction"]["kind"], "TRANSFER");
        assert_eq!(last["transaction"]["status"], "COMPLETED");
        assert_eq!(last["transaction"]["amount"], "2.25");
        assert_eq!(last["transaction"]["currency"], "USD");
        assert_eq!(last["transaction"]["fromWalletId"], json!(aw));
        assert_eq!(last["transaction"]["toWalletId"], json!(bw));
        assert_eq!(last["transaction"]["memo"], json!(format!("t-{protocol}")));
        assert!(
            ws.silent_for(Duration::from_millis(300)).await,
            "{protocol}: a duplicate arrived"
        );
        // A reconnect after the last sequence seen replays nothing.
        let mut again = WsClient::authed(app.addr, protocol, &alice.token).await;
        again
            .subscribe("s", SENT, json!({ "after": seqs.last() }))
            .await;
        assert!(
            again.silent_for(Duration::from_millis(300)).await,
            "{protocol}"
        );
    }
    assert!(
        bob_ws.silent_for(Duration::from_millis(300)).await,
        "bob sent nothing"
    );
}

#[tokio::test]
async fn users_never_see_other_users_events_and_bad_tokens_cannot_subscribe() {
    let app = redis_app().await;
    let a = app.register("iso-a@example.com").await;
    let b = app.register("iso-b@example.com").await;
    let aw = app.open_wallet(&a, "USD").await;
    let mut b_ws = WsClient::authed(app.addr, "graphql-transport-ws", &b.token).await;
    b_ws.subscribe("all", BALANCES, json!({})).await;
    // B may not filter on A's wallet either.
    b_ws.subscribe("theirs", BALANCES, json!({ "w": aw })).await;
    let refused = b_ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("message");
    assert_eq!(refused["id"], "theirs", "{refused}");
    assert_eq!(refused["type"], "next", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "NOT_FOUND"
    );
    let done = b_ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("complete");
    assert_eq!(
        (done["id"].clone(), done["type"].clone()),
        (json!("theirs"), json!("complete"))
    );
    app.deposit(&a, &aw, "5", "d").await;
    assert!(
        b_ws.silent_for(Duration::from_millis(800)).await,
        "B received A's event"
    );

    // Forged, expired and missing tokens are closed with 4403.
    let expired_keys = api::auth::tokens::TokenKeys::new(
        crate::support::JWT_SECRET.as_bytes(),
        chrono::Duration::seconds(-120),
        chrono::Duration::days(1),
    );
    let user_id = uuid::Uuid::parse_str(&a.user_id).expect("uuid");
    let (expired, _) = expired_keys
        .issue_access(user_id, uuid::Uuid::new_v4(), &[domain::Role::User])
        .expect("token");
    for (protocol, token) in [
        ("graphql-transport-ws", Some("forged.jwt.token".to_owned())),
        ("graphql-ws", Some("forged.jwt.token".to_owned())),
        ("graphql-transport-ws", Some(expired)),
        ("graphql-transport-ws", None),
    ] {
        let mut ws = WsClient::connect(app.addr, protocol).await;
        let payload = token.map_or(
            json!({}),
            |t| json!({ "authorization": format!("Bearer {t}") }),
        );
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let mut end = ws.next_message(Duration::from_secs(5)).await;
        if protocol == "graphql-ws" {
            assert_eq!(
                end.as_ref().map(|m| m["type"].clone()).ok(),
                Some(json!("connection_error"))
            );
            end = ws.next_message(Duration::from_secs(5)).await;
        }
        assert_eq!(end, Err(WsEnd::Closed(4403)), "{protocol}");
    }
}

#[tokio::test]
async fn a_client_closing_the_socket_gets_its_close_answered_as_graphql_ws_expects() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let u = app.register("close@example.com").await;
    for protocol in ["graphql-transport-ws", "graphql-ws"] {
        // Before init, with a subscription running, and idle.
        for subscribed in [false, true] {
            let mut ws = WsClient::authed(app.addr, protocol, &u.token).await;
            if subscribed {
                ws.subscribe("1", BALANCES, json!({})).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ws.close(1000, "Normal Closure").await;
            assert_eq!(
                ws.next_message(Duration::from_secs(5)).await,
                Err(WsEnd::Closed(1000)),
                "{protocol}, subscribed: {subscribed}: the server answers the close frame"
            );
        }
        let mut ws = WsClient::connect(app.addr, protocol).await;
        ws.close(1000, "Normal Closure").await;
        assert_eq!(
            ws.next_message(Duration::from_secs(5)).await,
            Err(WsEnd::Closed(1000)),
            "{protocol}: before connection_init"
        );
    }
}

#[tokio::test]
async fn a_socket_without_connection_init_is_closed_and_a_subprotocol_is_required() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.ws_init_timeout_secs = 1).await;
    let mut ws = WsClient::connect(app.addr, "graphql-transport-ws").await;
    assert_eq!(
        ws.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(4408))
    );
    // Without a subprotocol the upgrade is refused.
    let resp = app
        .client
        .get(app.url("/graphql/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
}

/// Sequences of a stream of balanceUpdated payloads.
fn sequences(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| {
            e["data"]["balanceUpdated"]["sequence"]
                .as_i64()
                .expect("sequence")
        })
        .collect()
}

#[tokio::test]
async fn replay_then_live_loses_and_duplicates_nothing_while_events_arrive() {
    let app = std::sync::Arc::new(redis_app().await);
    let u = app.register("race-replay@example.com").await;
    let w = app.open_wallet(&u, "USD").await;
    for round in 0..8 {
        // Deposits keep committing while the subscriber replays and switches to live.
        let writer = {
            let (app, u, w) = (app.clone(), u.clone(), w.clone());
            tokio::spawn(async move {
                for i in 0..12 {
                    let body = app.deposit(&u, &w, "1", &format!("r{round}-{i}")).await;
                    assert!(body["data"]["deposit"].is_object(), "{body}");
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(round * 15)).await;
        let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
        ws.subscribe("s", BALANCES, json!({ "after": 0 })).await;
        writer.await.expect("writer");
        let total = 12 * (round as i64 + 1);
        let mut got = Vec::new();
        while got.len() < total as usize {
            got.push(ws.next_data("s", Duration::from_secs(5)).await);
        }
        assert_eq!(
            sequences(&got),
            (1..=total).collect::<Vec<_>>(),
            "round {round}"
        );
        assert!(
            ws.silent_for(Duration::from_millis(300)).await,
            "a duplicate arrived in round {round}"
        );
    }
}

#[tokio::test]
async fn a_mutation_on_one_server_process_reaches_a_subscriber_on_another_within_a_second() {
    let db = crate::support::fresh_database().await;
    let a = crate::support::ServerProcess::start(&db, &[]);
    let b = crate::support::ServerProcess::start(&db, &[]);
    let on_a = TestApp::attach(a.addr, &db).await;
    let alice = on_a.register("proc-alice@example.com").await;
    let bob = on_a.register("proc-bob@example.com").await;
    let aw = on_a.open_wallet(&alice, "EUR").await;
    let bw = on_a.open_wallet(&bob, "EUR").await;
    on_a.deposit(&alice, &aw, "50", "d").await;
    let mut ws = WsClient::authed(b.addr, "graphql-transport-ws", &bob.token).await;
    ws.subscribe("1", BALANCES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = on_a
        .transfer(
            &alice,
            json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "7.5" }),
            "t",
        )
        .await;
    let committed = std::time::Instant::now();
    assert!(t["data"]["transfer"].is_object(), "{t}");
    let payload = ws.next_data("1", Duration::from_secs(1)).await;
    assert!(committed.elapsed() < Duration::from_secs(1));
    assert_eq!(
        payload["data"]["balanceUpdated"]["wallet"]["balance"],
        "7.50"
    );
}

#[tokio::test]
async fn events_held_back_while_redis_is_down_are_delivered_when_it_returns() {
    let mut redis = crate::support::PrivateRedis::start();
    let url = redis.url();
    let app = TestApp::spawn_with(Backend::Postgres, move |s| s.redis_url = Some(url)).await;
    let u = app.register("outage@example.com").await;
    let w = app.open_wallet(&u, "USD").await;
    let mut live = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    live.subscribe("live", BALANCES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.deposit(&u, &w, "1", "before").await;
    let first = live.next_data("live", Duration::from_secs(5)).await;
    let seen = first["data"]["balanceUpdated"]["sequence"]
        .as_i64()
        .expect("sequence");

    redis.stop();
    // Queries and mutations keep working without Redis.
    for i in 0..5 {
        let body = app.deposit(&u, &w, "1", &format!("during-{i}")).await;
        assert!(body["data"]["deposit"].is_object(), "{body}");
    }
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let me = app
        .gql(Some(&u.token), "{ me { wallets { balance } } }", json!({}))
        .await;
    assert_eq!(data(&me, "me")["wallets"][0]["balance"], "6.00");

    redis.restart();
    // The open subscription gets every held-back event, in order, once.
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(live.next_data("live", Duration::from_secs(20)).await);
    }
    assert_eq!(
        sequences(&got),
        ((seen + 1)..=(seen + 5)).collect::<Vec<_>>()
    );
    assert!(
        live.silent_for(Duration::from_millis(500)).await,
        "a duplicate arrived"
    );
    // A client that reconnects with afterSequence gets exactly the missed ones.
    let mut again = WsClient::authed(app.addr, "graphql-ws", &u.token).await;
    again
        .subscribe("again", BALANCES, json!({ "after": seen }))
        .await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(again.next_data("again", Duration::from_secs(5)).await);
    }
    assert_eq!(
        sequences(&replayed),
        ((seen + 1)..=(seen + 5)).collect::<Vec<_>>()
    );
    assert!(
        again.silent_for(Duration::from_millis(500)).await,
        "a duplicate arrived"
    );
}

#[tokio::test]
async fn events_committed_by_a_server_killed_before_publishing_are_delivered_after_restart() {
    use entity::entities::outbox_events;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

    let db = crate::support::fresh_database().await;
    // An instance that only serves subscribers (no relay of its own).
    let observer = TestApp::spawn_on(Some(db.clone()), |s| {
        s.redis_url = Some(redis_url());
        s.outbox_relay_enabled = false;
    })
    .await;
    // The writer commits but never publishes: it is killed first.
    let writer = crate::support::ServerProcess::start(&db, &[("OUTBOX_RELAY_ENABLED", "false")]);
    let on_writer = TestApp::attach(writer.addr, &db).await;
    let u = on_writer.register("killed@example.com").await;
    let w = on_writer.open_wallet(&u, "USD").await;
    let mut ws = WsClient::authed(observer.addr, "graphql-transport-ws", &u.token).await;
    ws.subscribe("s", BALANCES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..4 {
        let body = on_writer.deposit(&u, &w, "2", &format!("k{i}")).await;
        assert!(body["data"]["deposit"].is_object(), "{body}");
    }
    writer.kill();
    let unpublished = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(&observer.db)
        .await
        .expect("count");
    assert_eq!(unpublished, 4, "nothing was published before the kill");
    assert!(ws.silent_for(Duration::from_millis(300)).await);

    let restarted = crate::support::ServerProcess::start(&db, &[]);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(ws.next_data("s", Duration::from_secs(10)).await);
    }
    assert_eq!(sequences(&got), vec![1, 2, 3, 4]);
    let balances: Vec<&str> = got
        .iter()
        .map(|e| {
            e["data"]["balanceUpdated"]["wallet"]["balance"]
                .as_str()
                .expect("balance")
        })
        .collect();
    assert_eq!(balances, ["2.00", "4.00", "6.00", "8.00"]);
    let unpublished = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(&observer.db)
        .await
        .expect("count");
    assert_eq!(unpublished, 0);
    drop(restarted);
}

const KYC: &str = "subscription($after: Int) { kycStatus(afterSequence: $after) { id sequence status level reason } }";
const REVIEW: &str = "mutation($u: ID!, $d: KycDecision!, $r: String) { reviewKyc(userId: $u, decision: $d, reason: $r) { id kycStatus kycLevel } }";

#[tokio::test]
async fn a_compliance_review_reaches_the_users_kyc_subscription() {
    let app = redis_app().await;
    let user = app.register("kyc-user@example.com").await;
    let officer = app.register("officer@example.com").await;
    entity::store::users::grant_role(
        &app.db,
        None,
        &domain::Email::parse("officer@example.com").expect("email"),
        domain::Role::Compliance,
    )
    .await
    .expect("grant");
    let officer = app.login(&officer.email).await;
    let mut ws = WsClient::authed(app.addr, "graphql-ws", &user.token).await;
    ws.subscribe("k", KYC, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Users cannot review themselves, and neither can officers.
    let denied = app
        .gql(
            Some(&user.token),
            REVIEW,
            json!({ "u": user.user_id, "d": "APPROVE" }),
        )
        .await;
    assert_eq!(crate::support::error_code(&denied), "FORBIDDEN");
    let own = app
        .gql(
            Some(&officer.token),
            REVIEW,
            json!({ "u": officer.user_id, "d": "START_REVIEW" }),
        )
        .await;
    assert_eq!(crate::support::error_code(&own), "FORBIDDEN");
    // Nothing to approve before the case is in review.
    let early = app
        .gql(
            Some(&officer.token),
            REVIEW,
            json!({ "u": user.user_id, "d": "APPROVE" }),
        )
        .await;
    assert_eq!(crate::support::error_code(&early), "BAD_USER_INPUT");
    let reviewed = app
        .gql(
            Some(&officer.token),
            REVIEW,
            json!({ "u": user.user_id, "d": "START_REVIEW" }),
        )
        .await;
    assert_eq!(data(&reviewed, "reviewKyc")["kycStatus"], "IN_REVIEW");
    let approved = app
        .gql(
            Some(&officer.token),
            REVIEW,
            json!({ "u": user.user_id, "d": "APPROVE" }),
        )
        .await;
    assert_eq!(data(&approved, "reviewKyc")["kycLevel"], 1);
    let rejected = app
        .gql(
            Some(&officer.token),
            REVIEW,
            json!({ "u": user.user_id, "d": "REJECT" }),
        )
        .await;
    assert_eq!(
        crate::support::error_code(&rejected),
        "BAD_USER_INPUT",
        "a rejection needs a reason"
    );

    let first = ws.next_data("k", Duration::from_secs(5)).await;
    let second = ws.next_data("k", Duration::from_secs(5)).await;
    assert_eq!(first["data"]["kycStatus"]["status"], "IN_REVIEW");
    assert_eq!(second["data"]["kycStatus"]["status"], "APPROVED");
    assert_eq!(second["data"]["kycStatus"]["level"], 1);
    let me = app
        .gql(
            Some(&user.token),
            "{ me { kycStatus kycLevel } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&me, "me")["kycStatus"], "APPROVED");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_ended_with_the_sequence_to_resume_from() {
    use futures_util::StreamExt;
    let dir =
        std::env::temp_dir().join(format!("wallet-bff-lag-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}?mode=rwc", dir.join("w.sqlite").display());
    std::fs::create_dir_all(&dir).expect("dir");
    let mut settings = crate::support::test_settings(url, true, dir.clone());
    settings.subscription_buffer = 3;
    let state = api::build_state(settings).await.expect("state");
    let schema = api::graphql::build_schema(state.clone());
    let user = uuid::Uuid::now_v7();
    let viewer = api::auth::Viewer::User(api::auth::AuthUser {
        id: user,
        session_id: uuid::Uuid::now_v7(),
        roles: vec![domain::Role::User],
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
    });
    let request = async_graphql::Request::new(
        "subscription { transactionReceived(afterSequence: 0) { sequence } }",
    )
    .data(viewer);
    let mut stream = schema.execute_stream(request);
    // Nothing stored yet: the first poll replays nothing and subscribes.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.next())
            .await
            .is_err()
    );
    // Ten events arrive while the client reads nothing.
    let now = chrono::Utc::now();
    let tx = entity::store::records::TransactionRecord {
        id: uuid::Uuid::now_v7(),
        kind: domain::TransactionKind::Transfer,
        status: domain::TransactionStatus::Completed,
        amount: rust_decimal::Decimal::ONE,
        currency: domain::Currency::Usd,
        from_wallet_id: None,
        to_wallet_id: None,
        memo: None,
        destination: None,
        created_at: now,
        updated_at: now,
        original_id: None,
    };
    for sequence in 1..=10 {
        let received = domain::events::TransactionMoved {
            transaction: tx.clone(),
            counterparty_id: None,
        };
        state
            .bus
            .hub()
            .dispatch(std::sync::Arc::new(domain::Envelope {
                id: uuid::Uuid::now_v7(),
                user_id: user,
                sequence,
                occurred_at: now,
                body: domain::EventBody::TransactionReceived(received),
            }));
    }
    // The three that fit the buffer come out, then the stream ends with
    // LIMIT_EXCEEDED and the sequence to resume after.
    let mut responses = Vec::new();
    while let Some(resp) = stream.next().await {
        responses.push(serde_json::to_value(resp).expect("json"));
    }
    let seqs: Vec<Value> = responses[..3]
        .iter()
        .map(|r| r["data"]["transactionReceived"]["sequence"].clone())
        .collect();
    assert_eq!(seqs, [json!(1), json!(2), json!(3)], "{responses:?}");
    let last = &responses[3];
    assert_eq!(responses.len(), 4);
    assert_eq!(
        last["errors"][0]["extensions"]["code"], "LIMIT_EXCEEDED",
        "{last}"
    );
    assert_eq!(
        last["errors"][0]["extensions"]["afterSequence"], 3,
        "{last}"
    );
    assert_eq!(state.bus.hub().stats().dropped_for_lag, 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn connection_limits_token_expiry_and_shutdown_close_sockets_cleanly() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.ws_max_subscriptions = 2;
        s.access_token_ttl_secs = 3;
    })
    .await;
    let u = app.register("limits@example.com").await;
    let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    ws.subscribe("1", BALANCES, json!({})).await;
    ws.subscribe("2", BALANCES, json!({})).await;
    ws.subscribe("3", BALANCES, json!({})).await;
    let refused = ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("error");
    assert_eq!(
        (refused["id"].clone(), refused["type"].clone()),
        (json!("3"), json!("error"))
    );
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "LIMIT_EXCEEDED"
    );
    // An oversize message is refused with 1009 on its own socket.
    let mut big = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    big.subscribe(
        "big",
        &format!("{{ __typename }} # {}", "x".repeat(70_000)),
        json!({}),
    )
    .await;
    assert_eq!(
        big.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(1009))
    );
    // A message longer than the read buffer (1 KiB) but within the limit
    // arrives in several reads and runs.
    let mut long = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    long.subscribe(
        "long",
        &format!("{{ __typename }} # {}", "x".repeat(20_000)),
        json!({}),
    )
    .await;
    let answer = long
        .next_message(Duration::from_secs(5))
        .await
        .expect("next");
    assert_eq!(
        (
            answer["type"].clone(),
            answer["payload"]["data"]["__typename"].clone()
        ),
        (json!("next"), json!("Query"))
    );
    // A duplicate operation id is a protocol violation.
    ws.subscribe("1", BALANCES, json!({})).await;
    assert_eq!(
        ws.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(4409))
    );

    // The token expires: the socket closes with 4403 so the client reconnects.
    let mut expiring = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    assert_eq!(
        expiring.next_message(Duration::from_secs(8)).await,
        Err(WsEnd::Closed(4403))
    );

    // Shutdown completes running operations, then closes with 1001.
    let fresh = app.login("limits@example.com").await;
    let mut ws = WsClient::authed(app.addr, "graphql-ws", &fresh.token).await;
    ws.subscribe("live", BALANCES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.shutdown();
    let done = ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("complete");
    assert_eq!(
        (done["id"].clone(), done["type"].clone()),
        (json!("live"), json!("complete"))
    );
    assert_eq!(
        ws.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(1001))
    );
}

#[tokio::test]
async fn received_money_creates_a_notification_live_and_in_the_list() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let alice = app.register("n-alice@example.com").await;
    let bob = app.register("n-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "20", "d").await;
    let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &bob.token).await;
    ws.subscribe(
        "n",
        "subscription { notificationCreated { id sequence kind title body read data } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = app
        .transfer(
            &alice,
            json!({ "fromWalletId": aw, "toEmail": bob.email, "amount": "4.5" }),
            "t",
        )
        .await;
    let tx_id = data(&t, "transfer")["transaction"]["id"].clone();
    let live = ws.next_data("n", Duration::from_secs(5)).await;
    let n = &live["data"]["notificationCreated"];
    assert_eq!(n["kind"], "transfer.received");
    let body = n["body"].as_str().expect("body");
    assert!(
        body.starts_with("You received 4.50 USD from n-alice@example.com on ")
            && body.ends_with(" UTC."),
        "{body}"
    );
    assert_eq!(n["data"]["transactionId"], tx_id);
    assert_eq!(n["read"], false);

    const LIST: &str =
        "query($u: Boolean) { notifications(unreadOnly: $u) { edges { node { id kind read } } } }";
    let list = app.gql(Some(&bob.token), LIST, json!({})).await;
    let edges = data(&list, "notifications")["edges"]
        .as_array()
        .expect("edges")
        .clone();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["id"], n["id"]);
    // Alice cannot mark Bob's notification read; Bob can.
    let mark = "mutation($ids: [ID!]!) { markNotificationsRead(ids: $ids) }";
    let theirs = app
        .gql(Some(&alice.token), mark, json!({ "ids": [n["id"]] }))
        .await;
    assert_eq!(data(&theirs, "markNotificationsRead"), 0);
    let mine = app
        .gql(Some(&bob.token), mark, json!({ "ids": [n["id"]] }))
        .await;
    assert_eq!(data(&mine, "markNotificationsRead"), 1);
    let unread = app.gql(Some(&bob.token), LIST, json!({ "u": true })).await;
    assert_eq!(data(&unread, "notifications")["edges"], json!([]));
    // Alice sees only her own confirmation of the transfer.
    const KINDS: &str = "{ notifications { edges { node { kind data } } } }";
    let hers = app.notifications(&alice, KINDS, 1).await;
    assert_eq!(
        json!(hers),
        json!([{ "node": { "kind": "transfer.sent", "data": { "transactionId": tx_id, "walletId": aw } } }])
    );
}

#[tokio::test]
async fn sockets_of_an_ended_session_close_and_socket_operations_keep_the_time_limit() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.ws_keepalive_secs = 1;
        s.request_timeout_secs = 3;
    })
    .await;
    let phone = app.register("ended@example.com").await;
    let laptop = app.login("ended@example.com").await;
    let usd = app.open_wallet(&laptop, "USD").await;
    let mut on_phone = WsClient::authed(app.addr, "graphql-ws", &phone.token).await;
    let mut on_laptop = WsClient::authed(app.addr, "graphql-transport-ws", &laptop.token).await;
    on_phone.subscribe("b", BALANCES, json!({})).await;
    on_laptop.subscribe("b", BALANCES, json!({})).await;

    // Signing out on the phone ends the phone's socket, not the laptop's.
    let out = app
        .gql(Some(&phone.token), "mutation { logout }", json!({}))
        .await;
    assert_eq!(data(&out, "logout"), true);
    assert_eq!(
        on_phone.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(4403))
    );
    assert!(on_laptop.silent_for(Duration::from_secs(3)).await);
    // Nor does the ended session's token open a new socket.
    let mut again = WsClient::connect(app.addr, "graphql-transport-ws").await;
    again
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", phone.token) } }))
        .await;
    assert_eq!(
        again.next_message(Duration::from_secs(5)).await,
        Err(WsEnd::Closed(4403))
    );

    // A mutation sent over the socket is held to REQUEST_TIMEOUT_SECS like
    // one over HTTP: here it waits for a wallet another transaction locks.
    let blocker = app.lock_wallet(&usd).await;
    on_laptop
        .subscribe(
            "slow",
            "mutation($i: DepositInput!, $k: String!) { deposit(input: $i, idempotencyKey: $k) { replayed } }",
            json!({ "i": { "walletId": usd, "amount": "5" }, "k": "ws-slow" }),
        )
        .await;
    let refused = on_laptop
        .next_message(Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(refused["id"], "slow", "{refused}");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "INTERNAL_SERVER_ERROR",
        "{refused}"
    );
    assert_eq!(refused["payload"][0]["extensions"]["timedOut"], true);
    blocker.rollback().await.expect("release the lock");
    let wallet = app.wallet(&laptop, &usd).await;
    assert_eq!(data(&wallet, "wallet")["balance"], "0.00", "{wallet}");
}

#[tokio::test]
async fn under_a_backlog_the_relay_takes_users_by_how_long_they_have_waited() {
    use entity::entities::outbox_events;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    for backend in [Backend::Postgres, Backend::Sqlite] {
        // No relay: the test looks at what one would take next.
        let app = TestApp::spawn_with(backend, |s| s.outbox_relay_enabled = false).await;
        let busy = app.register("busy.relay@example.com").await;
        let late = app.register("late.relay@example.com").await;
        let user = |s: &crate::support::Session| s.user_id.parse::<uuid::Uuid>().expect("id");
        let (busy, late) = (user(&busy), user(&late));
        // What registering wrote is out of the way.
        let earlier: Vec<uuid::Uuid> = entity::store::events::unpublished(&app.db, 1000)
            .await
            .expect("backlog")
            .iter()
            .map(|r| r.id)
            .collect();
        entity::store::events::mark_published(&app.db, &earlier)
            .await
            .expect("mark");
        // The later-registered user (the higher id) has waited longest;
        // the first one keeps writing.
        let t0 = entity::store::now() - chrono::Duration::seconds(60);
        let mut written = std::collections::HashMap::new();
        let mut row = |user_id: uuid::Uuid, sequence: i64, secs: i64| {
            let id = uuid::Uuid::now_v7();
            written.insert(id, (user_id, sequence));
            outbox_events::ActiveModel {
                id: Set(id),
                user_id: Set(user_id),
                sequence: Set(1000 + sequence),
                topic: Set("test.backlog".to_owned()),
                payload: Set(json!({})),
                created_at: Set(t0 + chrono::Duration::seconds(secs)),
                published_at: Set(None),
                trace_parent: Set(None),
            }
        };
        let mut rows = vec![row(late, 1, 0), row(late, 2, 30)];
        rows.extend((1..=5).map(|n| row(busy, n, n)));
        outbox_events::Entity::insert_many(rows)
            .exec(&app.db)
            .await
            .expect("backlog rows");

        let batch = entity::store::events::unpublished(&app.db, 4)
            .await
            .expect("batch");
        let order: Vec<(uuid::Uuid, i64)> = batch.iter().map(|r| written[&r.id]).collect();
        // Both of the waiting user's events first (a prefix of theirs, in
        // sequence order), then the busy user's oldest two, in order.
        assert_eq!(
            order,
            vec![(late, 1), (late, 2), (busy, 1), (busy, 2)],
            "{backend:?}"
        );
        if matches!(backend, Backend::Postgres) {
            // The relay's form takes the leader's lock in the same
            // statement: while another transaction holds it, it reads
            // nothing; once it is free, the same batch.
            use sea_orm::{ConnectionTrait, TransactionTrait};
            const KEY: i64 = 0x7465_7374;
            let holder = app.db.begin().await.expect("begin");
            holder
                .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({KEY})"))
                .await
                .expect("take the lock");
            let follower = entity::store::events::unpublished_as_leader(&app.db, 4, KEY)
                .await
                .expect("batch without the lock");
            assert!(
                follower.is_empty(),
                "read {} events without the lock",
                follower.len()
            );
            holder.rollback().await.expect("release the lock");
            let leader = entity::store::events::unpublished_as_leader(&app.db, 4, KEY)
                .await
                .expect("batch with the lock");
            assert_eq!(
                leader.iter().map(|r| r.id).collect::<Vec<_>>(),
                batch.iter().map(|r| r.id).collect::<Vec<_>>()
            );
        }
    }
}
