//! Payment requests: made, seen by the payer (list, event, notification),
//! paid once through the transfer path, declined, expired.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::support::books::assert_balanced;
use crate::support::*;

const ASK: &str = "mutation($i: RequestPaymentInput!) { requestPayment(input: $i) {
    id direction counterpartyName amount currency memo status expiresAt } }";
const LIST: &str = "query($s: PaymentRequestStatus) { paymentRequests(status: $s) {
    id direction counterpartyName amount status transactionId } }";
const PAY: &str = "mutation($id: ID!, $k: String!, $t: String) {
    payRequest(id: $id, idempotencyKey: $k, stepUpToken: $t) {
      replayed transaction { id kind status amount memo toWalletId } wallet { availableBalance } } }";
const DECLINE: &str = "mutation($id: ID!) { declineRequest(id: $id) { id status } }";

async fn list(app: &TestApp, s: &Session, status: Option<&str>) -> Vec<Value> {
    let body = app.gql(Some(&s.token), LIST, json!({ "s": status })).await;
    data(&body, "paymentRequests")
        .as_array()
        .expect("list")
        .clone()
}

async fn ask(app: &TestApp, s: &Session, from: &str, amount: &str, memo: &str) -> Value {
    let body = app
        .gql(
            Some(&s.token),
            ASK,
            json!({ "i": { "fromEmail": from, "amount": amount, "currency": "EUR", "memo": memo } }),
        )
        .await;
    data(&body, "requestPayment").clone()
}

#[tokio::test]
async fn a_request_is_seen_paid_once_declined_or_left_to_expire() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let ann = app.register_named("ann.req@example.com", "Ann").await;
    let ben = app.register_named("ben.req@example.com", "Ben").await;
    let eve = app.register("eve.req@example.com").await;
    let ann_eur = app.open_wallet(&ann, "EUR").await;
    let ben_eur = app.open_wallet(&ben, "EUR").await;
    data(
        &app.deposit(&ben, &ben_eur, "100", "req-fund").await,
        "deposit",
    );

    // Bad input first: nobody by that address, oneself, a currency without
    // a wallet to receive into, an expiry out of range.
    let nobody = app
        .gql(
            Some(&ann.token),
            ASK,
            json!({ "i": { "fromEmail": "ghost@example.com", "amount": "1", "currency": "EUR" } }),
        )
        .await;
    assert_eq!(error_code(&nobody), "NOT_FOUND");
    let myself = app
        .gql(Some(&ann.token), ASK, json!({ "i": { "fromEmail": "ann.req@example.com", "amount": "1", "currency": "EUR" } }))
        .await;
    assert_eq!(error_code(&myself), "BAD_USER_INPUT");
    let no_wallet = app
        .gql(Some(&ann.token), ASK, json!({ "i": { "fromEmail": "ben.req@example.com", "amount": "1", "currency": "BTC" } }))
        .await;
    assert_eq!(error_code(&no_wallet), "NOT_FOUND");
    let too_long = app
        .gql(Some(&ann.token), ASK, json!({ "i": { "fromEmail": "ben.req@example.com", "amount": "1", "currency": "EUR", "expiresInHours": 1000 } }))
        .await;
    assert_eq!(error_code(&too_long), "BAD_USER_INPUT");
    let too_fine = app
        .gql(Some(&ann.token), ASK, json!({ "i": { "fromEmail": "ben.req@example.com", "amount": "1.001", "currency": "EUR" } }))
        .await;
    assert_eq!(error_code(&too_fine), "BAD_USER_INPUT");

    // Ann asks Ben for dinner; Ben sees it, by name, and is told.
    let dinner = ask(&app, &ann, "ben.req@example.com", "42.50", "dinner").await;
    assert_eq!(dinner["direction"], "OUTGOING");
    assert_eq!(dinner["counterpartyName"], "Ben");
    assert_eq!(dinner["status"], "PENDING");
    let id = dinner["id"].as_str().expect("id").to_owned();
    let incoming = list(&app, &ben, Some("PENDING")).await;
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0]["direction"], "INCOMING");
    assert_eq!(incoming[0]["counterpartyName"], "Ann");
    let inbox = app
        .notifications(
            &ben,
            "{ notifications(first: 5) { edges { node { kind title body } } } }",
            1,
        )
        .await;
    assert!(
        inbox.iter().any(|n| n["node"]["kind"] == "payment.request"
            && n["node"]["body"]
                .as_str()
                .is_some_and(|b| b.contains("Ann asks you for 42.50 EUR"))),
        "{inbox:?}"
    );
    // Only the payer answers; to anyone else the request does not exist.
    for s in [&ann, &eve] {
        let pay = app
            .gql(
                Some(&s.token),
                PAY,
                json!({ "id": id, "k": format!("req-not-{}", s.email) }),
            )
            .await;
        assert_eq!(error_code(&pay), "NOT_FOUND", "{pay}");
        let decline = app.gql(Some(&s.token), DECLINE, json!({ "id": id })).await;
        assert_eq!(error_code(&decline), "NOT_FOUND");
    }

    // Ben pays: a transfer with the memo; a retry replays; paid is final.
    let vars = json!({ "id": id, "k": "req-pay-1" });
    let paid = app.gql(Some(&ben.token), PAY, vars.clone()).await;
    let paid = data(&paid, "payRequest").clone();
    assert_eq!(paid["transaction"]["kind"], "TRANSFER");
    assert_eq!(paid["transaction"]["status"], "COMPLETED");
    assert_eq!(paid["transaction"]["memo"], "dinner");
    assert_eq!(paid["transaction"]["toWalletId"], json!(ann_eur));
    assert_eq!(paid["wallet"]["availableBalance"], "57.50");
    let replay = app.gql(Some(&ben.token), PAY, vars).await;
    assert_eq!(data(&replay, "payRequest")["replayed"], true);
    let twice = app
        .gql(Some(&ben.token), PAY, json!({ "id": id, "k": "req-pay-2" }))
        .await;
    assert_eq!(error_code(&twice), "BAD_USER_INPUT", "{twice}");
    assert_eq!(
        data(&app.wallet(&ann, &ann_eur).await, "wallet")["balance"],
        "42.50"
    );
    let mine = list(&app, &ann, Some("PAID")).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["transactionId"], paid["transaction"]["id"]);
    let told = app
        .notifications(
            &ann,
            "{ notifications(first: 10) { edges { node { kind body } } } }",
            2,
        )
        .await;
    assert!(
        told.iter().any(|n| n["node"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("Ben paid your request for 42.50 EUR"))),
        "{told:?}"
    );

    // Declined: the requester hears, and it cannot be paid after.
    let taxi = ask(&app, &ann, "ben.req@example.com", "12", "taxi").await;
    let taxi_id = taxi["id"].as_str().expect("id").to_owned();
    let declined = app
        .gql(Some(&ben.token), DECLINE, json!({ "id": taxi_id }))
        .await;
    assert_eq!(data(&declined, "declineRequest")["status"], "DECLINED");
    let late = app
        .gql(
            Some(&ben.token),
            PAY,
            json!({ "id": taxi_id, "k": "req-pay-taxi" }),
        )
        .await;
    assert_eq!(error_code(&late), "BAD_USER_INPUT");

    // Expired: past its time it reads EXPIRED and cannot be paid.
    let old = ask(&app, &ann, "ben.req@example.com", "5", "old").await;
    let old_id = old["id"].as_str().expect("id").to_owned();
    entity::entities::payment_requests::Entity::update_many()
        .col_expr(
            entity::entities::payment_requests::Column::ExpiresAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::minutes(1)),
        )
        .filter(
            entity::entities::payment_requests::Column::Id
                .eq(uuid::Uuid::parse_str(&old_id).expect("uuid")),
        )
        .exec(&app.db)
        .await
        .expect("age the request");
    let expired = list(&app, &ben, Some("EXPIRED")).await;
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["id"], json!(old_id));
    assert!(list(&app, &ben, Some("PENDING")).await.is_empty());
    let pay = app
        .gql(
            Some(&ben.token),
            PAY,
            json!({ "id": old_id, "k": "req-pay-old" }),
        )
        .await;
    assert_eq!(error_code(&pay), "BAD_USER_INPUT");
    assert!(
        pay["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );
    assert_eq!(list(&app, &ben, None).await.len(), 3);
    assert_balanced(&app.db).await;
}

#[tokio::test]
async fn paying_a_large_request_needs_a_step_up_like_a_transfer() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.step_up_thresholds = api::config::parse_thresholds(
            "USD=9999999999,EUR=1000,USDC=9999999999,BTC=9999999999,ETH=9999999999",
        )
        .expect("thresholds");
    })
    .await;
    let ann = app.register("ann.big@example.com").await;
    let ben = app.register("ben.big@example.com").await;
    app.open_wallet(&ann, "EUR").await;
    let ben_eur = app.open_wallet(&ben, "EUR").await;
    data(
        &app.deposit(&ben, &ben_eur, "100000", "big-fund").await,
        "deposit",
    );
    let big = ask(&app, &ann, "ben.big@example.com", "50000", "car").await;
    let pay = app
        .gql(
            Some(&ben.token),
            PAY,
            json!({ "id": big["id"], "k": "big-pay" }),
        )
        .await;
    assert_eq!(error_code(&pay), "STEP_UP_REQUIRED", "{pay}");
    assert_eq!(
        list(&app, &ben, Some("PENDING")).await.len(),
        1,
        "still payable"
    );
}
