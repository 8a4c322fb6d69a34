//! Card deposits and withdrawal payouts against a local Stripe-style
//! provider, and its signed webhooks, duplicated, late, out of order and forged.

use entity::entities::payment_events;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::support::stripe::{FakeStripe, WEBHOOK_SECRET, deliver, event, payout_event, signature};
use crate::support::*;

const START: &str =
    "mutation($i: DepositInput!, $k: String!) { startDeposit(input: $i, idempotencyKey: $k) {
    id status clientSecret redirectUrl amount currency } }";
const INTENT: &str = "query($id: ID!) { depositIntent(id: $id) { status } }";

async fn start(app: &TestApp, s: &Session, wallet: &str, amount: &str, key: &str) -> Value {
    app.gql(
        Some(&s.token),
        START,
        json!({ "i": { "walletId": wallet, "amount": amount }, "k": key }),
    )
    .await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_deposit_is_credited_once_on_success_whatever_the_webhooks_do() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await;
    let url = app.url("/webhooks/payments");
    let s = app.register("card@example.com").await;
    let w = app.open_wallet(&s, "USD").await;

    let started = start(&app, &s, &w, "25.50", "card-1").await;
    let intent = data(&started, "startDeposit").clone();
    assert_eq!(intent["status"], "REQUIRES_ACTION");
    assert!(
        intent["clientSecret"]
            .as_str()
            .is_some_and(|c| c.contains("_secret_"))
    );
    // A retry of the request gives the same intent, here and at the provider.
    let again = start(&app, &s, &w, "25.50", "card-1").await;
    assert_eq!(data(&again, "startDeposit")["id"], intent["id"]);
    assert_eq!(stripe.intents().len(), 1);
    assert_eq!(stripe.unauthorized(), 0);
    let pi = stripe.intents()[0].clone();
    assert_eq!((pi.amount, pi.currency.as_str()), (2550, "usd"));

    // Forged, replayed from long ago, and unsigned: refused, nothing changes.
    let ok = event("evt_ok", "payment_intent.succeeded", &pi, now());
    let forged = signature(&ok, now(), &["whsec_not_the_secret_000"]);
    assert_eq!(deliver(&app.client, &url, &ok, &forged).await.0, 401);
    let stale = signature(&ok, now() - 3600, &[WEBHOOK_SECRET]);
    assert_eq!(deliver(&app.client, &url, &ok, &stale).await.0, 400);
    assert_eq!(deliver(&app.client, &url, &ok, "").await.0, 400);
    let tampered = ok.replace("2550", "255000");
    let header = signature(&ok, now(), &[WEBHOOK_SECRET]);
    assert_eq!(deliver(&app.client, &url, &tampered, &header).await.0, 401);
    assert_eq!(data(&app.wallet(&s, &w).await, "wallet")["balance"], "0.00");

    // Processing, then success (signed with a rotated-in secret beside the
    // old one), then the success again, then a late processing event.
    let processing = event("evt_1", "payment_intent.processing", &pi, now() - 5);
    let sig = signature(&processing, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &processing, &sig).await.1["outcome"],
        "APPLIED"
    );
    let id = intent["id"].as_str().expect("id");
    let status = app.gql(Some(&s.token), INTENT, json!({ "id": id })).await;
    assert_eq!(data(&status, "depositIntent")["status"], "PROCESSING");
    let rotated = signature(&ok, now(), &["whsec_next_secret_0000000", WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &ok, &rotated).await,
        (200, json!({ "outcome": "APPLIED" }))
    );
    assert_eq!(
        deliver(&app.client, &url, &ok, &rotated).await,
        (200, json!({ "outcome": "DUPLICATE" }))
    );
    let late = event("evt_0", "payment_intent.processing", &pi, now() - 60);
    let sig = signature(&late, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &late, &sig).await.1["outcome"],
        "UNCHANGED"
    );
    let failed = event("evt_2", "payment_intent.payment_failed", &pi, now());
    let sig = signature(&failed, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &failed, &sig).await.1["outcome"],
        "UNCHANGED"
    );

    let wallet = app.wallet(&s, &w).await;
    assert_eq!(
        data(&wallet, "wallet")["balance"],
        "25.50",
        "credited exactly once"
    );
    let status = app.gql(Some(&s.token), INTENT, json!({ "id": id })).await;
    assert_eq!(data(&status, "depositIntent")["status"], "SUCCEEDED");
    let (available, _) =
        entity::store::payments::ledger_balances(&app.db, uuid::Uuid::parse_str(&w).expect("id"))
            .await
            .expect("ledger");
    assert_eq!(available.to_string(), "25.5");
    // The payment log: one row per event received (the duplicate is one).
    let log = payment_events::Entity::find()
        .all(&app.db)
        .await
        .expect("log");
    assert_eq!(log.len(), 4, "{log:?}");

    // Another user cannot see the intent; an unknown intent is answered 200.
    let other = app.register("other@example.com").await;
    let hidden = app
        .gql(Some(&other.token), INTENT, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&hidden), "NOT_FOUND");
    let stranger = crate::support::stripe::Intent {
        id: "pi_unknown".to_owned(),
        amount: 100,
        currency: "usd".to_owned(),
    };
    let unknown = event("evt_9", "payment_intent.succeeded", &stranger, now());
    let sig = signature(&unknown, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &unknown, &sig).await,
        (200, json!({ "outcome": "UNKNOWN_INTENT" }))
    );
}

#[tokio::test]
async fn a_provider_outage_starts_nothing_and_the_key_can_be_retried() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await;
    let s = app.register("outage@example.com").await;
    let w = app.open_wallet(&s, "EUR").await;
    stripe.fail_next(&[503]);
    let down = start(&app, &s, &w, "10", "k").await;
    assert_eq!(error_code(&down), "PROVIDER_UNAVAILABLE", "{down}");
    assert!(stripe.intents().is_empty());
    let up = start(&app, &s, &w, "10", "k").await;
    assert_eq!(data(&up, "startDeposit")["status"], "REQUIRES_ACTION");
    // Crypto does not go through the card rail; sub-cent amounts do not fit it.
    let btc = app.open_wallet(&s, "BTC").await;
    assert_eq!(
        error_code(&start(&app, &s, &btc, "0.1", "b").await),
        "BAD_USER_INPUT"
    );
    assert_eq!(
        error_code(&start(&app, &s, &w, "0.001", "c").await),
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn the_instant_sandbox_deposit_is_refused_in_production() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.app_env = api::config::AppEnv::Production;
    })
    .await;
    let s = app.register("prod@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let refused = app.deposit(&s, &w, "10", "sandbox").await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused.to_string().contains("startDeposit"));
    assert_eq!(data(&app.wallet(&s, &w).await, "wallet")["balance"], "0.00");
}

#[tokio::test]
async fn withdrawals_are_paid_out_and_the_payout_webhook_settles_them_once() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await;
    let url = app.url("/webhooks/payments");
    let s = app.register("payout@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    data(&app.deposit(&s, &w, "100", "fund").await, "deposit");
    let first = app.withdraw(&s, &w, "30", "w1").await;
    let first_tx = data(&first, "withdraw")["transaction"]["id"]
        .as_str()
        .expect("tx")
        .to_owned();
    let payouts = stripe.wait_for_payouts(1).await;
    assert_eq!(
        (payouts[0].amount, payouts[0].currency.as_str()),
        (3000, "usd")
    );
    assert_eq!(payouts[0].destination, "DE89370400440532013000");

    // Paid: the hold leaves the books; the repeat changes nothing.
    let paid = payout_event("evt_p1", "payout.paid", &payouts[0], now());
    let sig = signature(&paid, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &paid, &sig).await,
        (200, json!({ "outcome": "APPLIED" }))
    );
    assert_eq!(
        deliver(&app.client, &url, &paid, &sig).await,
        (200, json!({ "outcome": "DUPLICATE" }))
    );
    let wallet = data(&app.wallet(&s, &w).await, "wallet").clone();
    assert_eq!(
        (wallet["balance"].as_str(), wallet["frozenBalance"].as_str()),
        (Some("70.00"), Some("0.00"))
    );

    // Failed: the hold returns. A forged one first changes nothing.
    data(&app.withdraw(&s, &w, "20", "w2").await, "withdraw");
    let payouts = stripe.wait_for_payouts(2).await;
    let failed = payout_event("evt_p2", "payout.failed", &payouts[1], now());
    let forged = signature(&failed, now(), &["whsec_forged_000000000000"]);
    assert_eq!(deliver(&app.client, &url, &failed, &forged).await.0, 401);
    let sig = signature(&failed, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &failed, &sig).await.1["outcome"],
        "APPLIED"
    );
    let wallet = data(&app.wallet(&s, &w).await, "wallet").clone();
    assert_eq!(
        (
            wallet["balance"].as_str(),
            wallet["availableBalance"].as_str()
        ),
        (Some("70.00"), Some("70.00"))
    );

    // An admin's manual settlement wins; the provider's later verdict changes nothing.
    data(&app.withdraw(&s, &w, "5", "w3").await, "withdraw");
    let payouts = stripe.wait_for_payouts(3).await;
    let admin = app.admin("ops@example.com").await;
    let pending = entity::entities::transactions::Entity::find()
        .all(&app.db)
        .await
        .expect("txs")
        .into_iter()
        .find(|t| t.status == "PENDING")
        .expect("pending withdrawal");
    data(
        &app.settle(&admin, &pending.id.to_string(), "FAILED").await,
        "settleWithdrawal",
    );
    let late = payout_event("evt_p3", "payout.paid", &payouts[2], now());
    let sig = signature(&late, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &late, &sig).await.1["outcome"],
        "UNCHANGED"
    );
    let wallet = data(&app.wallet(&s, &w).await, "wallet").clone();
    assert_eq!(wallet["balance"], "70.00");

    // An unknown payout: 200 and an audit record.
    let ghost = crate::support::stripe::Payout {
        id: "po_unknown".to_owned(),
        amount: 1,
        currency: "usd".to_owned(),
        destination: String::new(),
        transaction_id: String::new(),
    };
    let body = payout_event("evt_p4", "payout.paid", &ghost, now());
    let sig = signature(&body, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &body, &sig).await,
        (200, json!({ "outcome": "UNKNOWN_PAYOUT" }))
    );
    let audited = entity::entities::audit_log::Entity::find()
        .all(&app.db)
        .await
        .expect("audit")
        .into_iter()
        .filter(|a| a.action == "payout.webhook_unknown_payout")
        .count();
    assert_eq!(audited, 1);
    let first = entity::entities::transactions::Entity::find_by_id(
        uuid::Uuid::parse_str(&first_tx).expect("id"),
    )
    .one(&app.db)
    .await
    .expect("q")
    .expect("tx");
    assert_eq!(first.status, "COMPLETED");
}

#[tokio::test]
async fn a_payout_webhook_before_its_submission_was_recorded_still_settles_once() {
    let stripe = FakeStripe::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await;
    let url = app.url("/webhooks/payments");
    // The provider's answers to the submissions never arrive.
    stripe.fail_next(&[503; 200]);
    let s = app.register("early@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    data(&app.deposit(&s, &w, "20", "early-fund").await, "deposit");
    let out = app.withdraw(&s, &w, "5", "early-out").await;
    let id = data(&out, "withdraw")["transaction"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let early = crate::support::stripe::Payout {
        id: "po_early".to_owned(),
        amount: 500,
        currency: "usd".to_owned(),
        destination: String::new(),
        transaction_id: id.clone(),
    };
    let body = payout_event("evt_early", "payout.paid", &early, now());
    let sig = signature(&body, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &body, &sig).await,
        (200, json!({ "outcome": "APPLIED" }))
    );
    let again = payout_event("evt_early_2", "payout.paid", &early, now());
    let sig = signature(&again, now(), &[WEBHOOK_SECRET]);
    assert_eq!(
        deliver(&app.client, &url, &again, &sig).await.1["outcome"],
        "UNCHANGED"
    );
    let wallet = data(&app.wallet(&s, &w).await, "wallet").clone();
    assert_eq!(
        (wallet["balance"].as_str(), wallet["frozenBalance"].as_str()),
        (Some("15.00"), Some("0.00"))
    );
    crate::support::books::assert_balanced(&app.db).await;
}
