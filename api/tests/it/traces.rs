//! OpenTelemetry traces: the real binary exports over OTLP/HTTP (JSON) to a
//! local collector. A transfer that arrives with a `traceparent` gets a
//! server span in the caller's trace, named after the operation, with its
//! database transaction and rate-limit Redis call as children; the outbox
//! carries the trace on to the relay's Redis publication and the
//! notifier's delivery. Variables (personal data) are never exported.

use std::time::Duration;

use serde_json::json;

use crate::support::otlp::Collector;
use crate::support::{ServerProcess, TestApp, data, fresh_database};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_transfer_and_its_notification_share_the_callers_trace() {
    let collector = Collector::start().await;
    let db = fresh_database().await;
    let endpoint = collector.endpoint();
    let server = ServerProcess::start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_SERVICE_NAME", "wallet-bff-traces-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let app = TestApp::attach(server.addr, &db).await;
    let alice = app.register("alice.traces@example.com").await;
    let bob = app.register("bob.traces@example.com").await;
    let from = app.open_wallet(&alice, "USD").await;
    let to = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &from, "100", "fund").await;

    let answer: serde_json::Value = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&alice.token)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({
            "query": "mutation SendMoney($i: TransferInput!, $k: String!) { transfer(input: $i, idempotencyKey: $k) { transaction { id } } }",
            "operationName": "SendMoney",
            "variables": { "i": { "fromWalletId": from, "toWalletId": to, "amount": "12.34", "memo": "rent for the flat" }, "k": "secret-key-4711" },
        }))
        .send()
        .await
        .expect("transfer")
        .json()
        .await
        .expect("json");
    assert!(
        data(&answer, "transfer")["transaction"]["id"].is_string(),
        "{answer}"
    );

    let within = Duration::from_secs(20);
    let server_span = collector
        .wait_for(within, |s| {
            s.trace_id == TRACE_ID && s.parent_span_id == CALLER_SPAN
        })
        .await;
    assert_eq!(server_span.name, "mutation SendMoney");
    assert_eq!(server_span.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(server_span.service, "wallet-bff-traces-test");
    assert_eq!(server_span.attr("graphql.operation.type"), Some("mutation"));
    assert_eq!(
        server_span.attr("graphql.operation.name"),
        Some("SendMoney")
    );

    let child_of = |parent: &str, s: &crate::support::otlp::Span| {
        s.trace_id == TRACE_ID && s.parent_span_id == parent
    };
    let txn = collector
        .wait_for(within, |s| {
            child_of(&server_span.span_id, s) && s.name == "transfer transaction"
        })
        .await;
    assert_eq!(txn.attr("db.system.name"), Some("postgresql"));
    assert_eq!(txn.kind, 3, "SPAN_KIND_CLIENT");
    let limit = collector
        .wait_for(within, |s| {
            child_of(&server_span.span_id, s) && s.attr("db.system.name") == Some("redis")
        })
        .await;
    assert_eq!(limit.kind, 3);

    // The relay publishes the events of the transfer in its trace, and
    // Bob's in-app notification is delivered in it too.
    let publish = collector
        .wait_for(within, |s| {
            s.trace_id == TRACE_ID && s.name == "publish transaction.received"
        })
        .await;
    assert_eq!(publish.kind, 4, "SPAN_KIND_PRODUCER");
    collector
        .wait_for(within, |s| {
            child_of(&publish.span_id, s) && s.name == "PUBLISH"
        })
        .await;
    let deliver = collector
        .wait_for(within, |s| {
            s.trace_id == TRACE_ID
                && s.name.starts_with("deliver ")
                && s.attr("notification.topic") == Some("transaction.received")
        })
        .await;
    assert_eq!(deliver.attr("notification.channel"), Some("IN_APP"));

    // A request without a traceparent starts a trace of its own.
    let me = app
        .gql(Some(&bob.token), "query Me { me { id } }", json!({}))
        .await;
    assert!(data(&me, "me")["id"].is_string(), "{me}");
    let own = collector.wait_for(within, |s| s.name == "query Me").await;
    assert!(own.parent_span_id.is_empty(), "{own:?}");
    assert_ne!(own.trace_id, TRACE_ID);

    // Nothing personal left the process: no variable, e-mail or key.
    let exported = collector.bodies.lock().expect("bodies").join("\n");
    for secret in [
        "12.34",
        "rent for the flat",
        "secret-key-4711",
        "alice.traces@example.com",
        "bob.traces@example.com",
        alice.token.as_str(),
    ] {
        assert!(!exported.contains(secret), "{secret:?} was exported");
    }
    drop(server);
}
