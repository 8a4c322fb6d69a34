//! Staff reversals of transfers (with a debt when the receiver spent the
//! money) and partial refunds of card deposits through the local provider.

use serde_json::{Value, json};

use crate::support::books::assert_balanced;
use crate::support::stripe::{FakeStripe, WEBHOOK_SECRET, deliver, event, refund_event, signature};
use crate::support::*;

const REVERSE: &str = "mutation($id: ID!, $k: String!, $d: Boolean) {
    reverseTransaction(id: $id, reason: \"sent by mistake\", idempotencyKey: $k, placeDebt: $d) {
      replayed transaction { id kind status amount originalId fromWalletId toWalletId }
      wallet { id availableBalance debt } } }";
const REFUND: &str = "mutation($id: ID!, $a: Decimal!, $k: String!) {
    refundDeposit(id: $id, amount: $a, idempotencyKey: $k) {
      replayed transaction { id kind status amount originalId }
      wallet { availableBalance frozenBalance } } }";
const WALLET: &str =
    "query($id: ID!) { wallet(id: $id) { balance availableBalance frozenBalance debt } }";

async fn wallet(app: &TestApp, s: &Session, id: &str) -> Value {
    data(
        &app.gql(Some(&s.token), WALLET, json!({ "id": id })).await,
        "wallet",
    )
    .clone()
}

async fn send(app: &TestApp, s: &Session, from: &str, to: &str, amount: &str, key: &str) -> String {
    let body = app
        .transfer(
            s,
            json!({ "fromWalletId": from, "toWalletId": to, "amount": amount }),
            key,
        )
        .await;
    data(&body, "transfer")["transaction"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn status_of(app: &TestApp, s: &Session, tx: &str) -> String {
    let body = app
        .gql(
            Some(&s.token),
            "{ transactions(first: 50) { edges { node { id status } } } }",
            json!({}),
        )
        .await;
    data(&body, "transactions")["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["id"] == tx)
        .map(|e| e["node"]["status"].as_str().expect("status").to_owned())
        .unwrap_or_else(|| panic!("{tx} not in {body}"))
}

#[tokio::test]
async fn a_reversal_returns_the_money_once_and_a_shortfall_becomes_a_debt() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let admin = app.admin("reverser@example.com").await;
    let alice = app.register("alice.rev@example.com").await;
    let bob = app.register("bob.rev@example.com").await;
    let carol = app.register("carol.rev@example.com").await;
    let (a, b, c) = (
        app.open_wallet(&alice, "USD").await,
        app.open_wallet(&bob, "USD").await,
        app.open_wallet(&carol, "USD").await,
    );
    data(
        &app.deposit(&alice, &a, "100", "rev-fund-a").await,
        "deposit",
    );
    data(
        &app.deposit(&carol, &c, "20", "rev-fund-c").await,
        "deposit",
    );

    // A plain reversal: the money goes back, the original is REVERSED.
    let t1 = send(&app, &alice, &a, &b, "40", "rev-t1").await;
    let vars = json!({ "id": t1, "k": "rev-1" });
    let first = app.gql(Some(&admin.token), REVERSE, vars.clone()).await;
    let reversal = data(&first, "reverseTransaction").clone();
    assert_eq!(reversal["transaction"]["kind"], "REVERSAL");
    assert_eq!(reversal["transaction"]["originalId"], json!(t1));
    assert_eq!(reversal["transaction"]["fromWalletId"], json!(b));
    assert_eq!(reversal["transaction"]["toWalletId"], json!(a));
    assert_eq!(reversal["wallet"]["debt"], "0.00");
    assert_eq!(wallet(&app, &alice, &a).await["availableBalance"], "100.00");
    assert_eq!(wallet(&app, &bob, &b).await["balance"], "0.00");
    assert_eq!(status_of(&app, &alice, &t1).await, "REVERSED");
    // The same key replays; another key finds it reversed already.
    let again = app.gql(Some(&admin.token), REVERSE, vars).await;
    assert_eq!(data(&again, "reverseTransaction")["replayed"], true);
    assert_eq!(
        data(&again, "reverseTransaction")["transaction"]["id"],
        reversal["transaction"]["id"]
    );
    let twice = app
        .gql(
            Some(&admin.token),
            REVERSE,
            json!({ "id": t1, "k": "rev-1b" }),
        )
        .await;
    assert_eq!(error_code(&twice), "BAD_USER_INPUT", "{twice}");
    // Nobody reverses their own money; plain users reverse nothing.
    let own = app
        .gql(
            Some(&alice.token),
            REVERSE,
            json!({ "id": t1, "k": "rev-own" }),
        )
        .await;
    assert_eq!(error_code(&own), "FORBIDDEN");

    // Both parties are told, with the reason.
    for s in [&alice, &bob] {
        let inbox = app
            .notifications(
                s,
                "{ notifications(first: 10) { edges { node { kind body } } } }",
                2,
            )
            .await;
        assert!(
            inbox
                .iter()
                .any(|n| n["node"]["kind"] == "transaction.updated"
                    && n["node"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains("reversed") && b.contains("sent by mistake"))),
            "{inbox:?}"
        );
    }

    // Bob spends most of what he got: the reversal needs a debt.
    let t2 = send(&app, &alice, &a, &b, "50", "rev-t2").await;
    send(&app, &bob, &b, &c, "30", "rev-spend").await;
    let short = app
        .gql(
            Some(&admin.token),
            REVERSE,
            json!({ "id": t2, "k": "rev-2" }),
        )
        .await;
    assert_eq!(error_code(&short), "INSUFFICIENT_FUNDS", "{short}");
    assert_eq!(
        short["errors"][0]["extensions"]["shortfall"], "30",
        "{short}"
    );
    assert_eq!(wallet(&app, &bob, &b).await["availableBalance"], "20.00");
    let placed = app
        .gql(
            Some(&admin.token),
            REVERSE,
            json!({ "id": t2, "k": "rev-2", "d": true }),
        )
        .await;
    assert_eq!(
        data(&placed, "reverseTransaction")["wallet"]["debt"],
        "30.00",
        "{placed}"
    );
    let bob_now = wallet(&app, &bob, &b).await;
    assert_eq!(
        (bob_now["balance"].as_str(), bob_now["debt"].as_str()),
        (Some("0.00"), Some("30.00"))
    );
    assert_eq!(wallet(&app, &alice, &a).await["availableBalance"], "100.00");
    assert_balanced(&app.db).await;

    // A deposit reversed goes back to the rail.
    let dep = data(&app.deposit(&carol, &c, "5", "rev-dep").await, "deposit")["transaction"]["id"]
        .as_str()
        .expect("deposit id")
        .to_owned();
    assert_eq!(wallet(&app, &carol, &c).await["availableBalance"], "55.00");
    let back = app
        .gql(
            Some(&admin.token),
            REVERSE,
            json!({ "id": dep, "k": "rev-dep-1" }),
        )
        .await;
    let back = data(&back, "reverseTransaction");
    assert!(
        back["transaction"]["toWalletId"].is_null(),
        "to the rail: {back}"
    );
    assert_eq!(status_of(&app, &carol, &dep).await, "REVERSED");
    assert_eq!(wallet(&app, &carol, &c).await["availableBalance"], "50.00");

    // Money arriving repays the debt first.
    send(&app, &carol, &c, &b, "10", "rev-repay-1").await;
    let bob_now = wallet(&app, &bob, &b).await;
    assert_eq!(
        (bob_now["balance"].as_str(), bob_now["debt"].as_str()),
        (Some("0.00"), Some("20.00"))
    );
    data(&app.deposit(&bob, &b, "25", "rev-repay-2").await, "deposit");
    let bob_now = wallet(&app, &bob, &b).await;
    assert_eq!(
        (bob_now["balance"].as_str(), bob_now["debt"].as_str()),
        (Some("5.00"), Some("0.00"))
    );
    assert_balanced(&app.db).await;
}

#[tokio::test]
async fn a_card_deposit_is_refunded_in_part_through_the_provider() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await;
    let url = app.url("/webhooks/payments");
    let admin = app.admin("refunder@example.com").await;
    let s = app.register("refund.me@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let started = app
        .gql(
            Some(&s.token),
            "mutation($i: DepositInput!) { startDeposit(input: $i, idempotencyKey: \"rf-card\") { id } }",
            json!({ "i": { "walletId": w, "amount": "25.50" } }),
        )
        .await;
    data(&started, "startDeposit");
    let pi = stripe.intents()[0].clone();
    let now = chrono::Utc::now().timestamp();
    let ok = event("evt_rf_ok", "payment_intent.succeeded", &pi, now);
    let sig = signature(&ok, now, &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &ok, &sig).await.1["outcome"],
        "APPLIED"
    );
    let history = app
        .gql(
            Some(&s.token),
            "{ transactions(first: 5) { edges { node { id kind } } } }",
            json!({}),
        )
        .await;
    let deposit = data(&history, "transactions")["edges"][0]["node"]["id"]
        .as_str()
        .expect("deposit")
        .to_owned();

    // Ten of it: held at once, PENDING until the provider says.
    let vars = json!({ "id": deposit, "a": "10", "k": "rf-1" });
    let started = app.gql(Some(&admin.token), REFUND, vars.clone()).await;
    let refund = data(&started, "refundDeposit").clone();
    assert_eq!(refund["transaction"]["kind"], "REFUND");
    assert_eq!(refund["transaction"]["status"], "PENDING");
    assert_eq!(refund["transaction"]["originalId"], json!(deposit));
    assert_eq!(refund["wallet"]["availableBalance"], "15.50");
    assert_eq!(refund["wallet"]["frozenBalance"], "10.00");
    let again = app.gql(Some(&admin.token), REFUND, vars).await;
    assert_eq!(data(&again, "refundDeposit")["replayed"], true);
    // No more than what is left.
    let too_much = app
        .gql(
            Some(&admin.token),
            REFUND,
            json!({ "id": deposit, "a": "15.51", "k": "rf-big" }),
        )
        .await;
    assert_eq!(error_code(&too_much), "BAD_USER_INPUT", "{too_much}");
    let own = app
        .gql(
            Some(&s.token),
            REFUND,
            json!({ "id": deposit, "a": "1", "k": "rf-own" }),
        )
        .await;
    assert_eq!(error_code(&own), "FORBIDDEN");

    // The server submits it once; the provider's webhook completes it once.
    let submitted = stripe.wait_for_refunds(1).await;
    assert_eq!(submitted.len(), 1);
    let r1 = submitted[0].clone();
    assert_eq!(
        (r1.amount, r1.payment_intent.as_str()),
        (1000, pi.id.as_str())
    );
    assert_eq!(
        r1.transaction_id,
        refund["transaction"]["id"].as_str().expect("id")
    );
    let done = refund_event("evt_rf_1", &r1, "succeeded", now);
    let sig = signature(&done, now, &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &done, &sig).await.1["outcome"],
        "APPLIED"
    );
    assert_eq!(
        deliver(&app.client, &url, &done, &sig).await.1["outcome"],
        "DUPLICATE"
    );
    let late = refund_event("evt_rf_1b", &r1, "failed", now);
    let sig = signature(&late, now, &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &late, &sig).await.1["outcome"],
        "UNCHANGED"
    );
    let after = wallet(&app, &s, &w).await;
    assert_eq!(
        (after["balance"].as_str(), after["frozenBalance"].as_str()),
        (Some("15.50"), Some("0.00"))
    );
    let refund_id = refund["transaction"]["id"].as_str().expect("id");
    assert_eq!(status_of(&app, &s, refund_id).await, "COMPLETED");

    // A refund the provider fails gives the hold back and can be asked again.
    let second = app
        .gql(
            Some(&admin.token),
            REFUND,
            json!({ "id": deposit, "a": "15.50", "k": "rf-2" }),
        )
        .await;
    assert_eq!(
        data(&second, "refundDeposit")["wallet"]["availableBalance"],
        "0.00"
    );
    let r2 = stripe.wait_for_refunds(2).await[1].clone();
    let failed = refund_event("evt_rf_2", &r2, "failed", now);
    let sig = signature(&failed, now, &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &failed, &sig).await.1["outcome"],
        "APPLIED"
    );
    assert_eq!(wallet(&app, &s, &w).await["availableBalance"], "15.50");
    // A refund the provider refuses outright fails at once, the hold returned.
    stripe.fail_next(&[400]);
    let refused = app
        .gql(
            Some(&admin.token),
            REFUND,
            json!({ "id": deposit, "a": "5", "k": "rf-refused" }),
        )
        .await;
    let refused_id = data(&refused, "refundDeposit")["transaction"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut status = String::new();
    for _ in 0..50 {
        status = status_of(&app, &s, &refused_id).await;
        if status != "PENDING" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, "FAILED");
    assert_eq!(wallet(&app, &s, &w).await["availableBalance"], "15.50");
    assert_eq!(stripe.refunds().len(), 2, "the refused one made none");
    let retry = app
        .gql(
            Some(&admin.token),
            REFUND,
            json!({ "id": deposit, "a": "15.50", "k": "rf-3" }),
        )
        .await;
    assert_eq!(
        data(&retry, "refundDeposit")["transaction"]["status"],
        "PENDING"
    );

    // A refund nobody here asked for: answered, audited, nothing moves.
    let stray = crate::support::stripe::Refund {
        id: "re_unknown".into(),
        amount: 100,
        payment_intent: pi.id.clone(),
        transaction_id: String::new(),
    };
    let body = refund_event("evt_rf_stray", &stray, "succeeded", now);
    let sig = signature(&body, now, &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &body, &sig).await,
        (200, json!({ "outcome": "UNKNOWN_REFUND" }))
    );
    // A partly refunded deposit is refunded further, not reversed.
    let reverse = app
        .gql(
            Some(&admin.token),
            REVERSE,
            json!({ "id": deposit, "k": "rf-rev" }),
        )
        .await;
    assert_eq!(error_code(&reverse), "BAD_USER_INPUT", "{reverse}");
    assert_balanced(&app.db).await;
}
