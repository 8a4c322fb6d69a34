//! The risk rules inside the money transaction: each rule holds a movement
//! on its own signal; compliance releases or rejects it; held funds cannot
//! be spent; a score above the block threshold refuses with `RISK_BLOCKED`.

use serde_json::{Value, json};

use crate::support::books::assert_balanced;
use crate::support::*;

const REVIEWS: &str = "query($p: Boolean!) { riskReviews(pending: $p) {
    id transactionId kind score decision resolution reason rules { rule weight detail } } }";
const DECIDE: &str = "mutation($id: ID!, $r: String!) {
    releaseHold(id: $id, reason: $r) { transaction { id status } wallet { availableBalance frozenBalance } } }";
const REJECT: &str = "mutation($id: ID!, $r: String!) {
    rejectHold(id: $id, reason: $r) { transaction { id status } wallet { availableBalance frozenBalance } } }";

/// An app whose only risk rules are `raw` (on top of all weights at zero).
async fn app_with(raw: &str) -> TestApp {
    let rules = domain::risk::RiskRules::default()
        .with_overrides(&format!("{QUIET_RISK},{raw}"))
        .expect("rules");
    TestApp::spawn_with(Backend::Postgres, move |s| s.payments.risk = rules).await
}

async fn funded(app: &TestApp, email: &str, amount: &str) -> (Session, String) {
    let s = app.register(email).await;
    let w = app.open_wallet(&s, "USD").await;
    if amount != "0" {
        data(
            &app.deposit(&s, &w, amount, &format!("fund-{email}")).await,
            "deposit",
        );
    }
    (s, w)
}

async fn send(app: &TestApp, s: &Session, from: &str, to: &str, amount: &str, key: &str) -> Value {
    let body = app
        .transfer(
            s,
            json!({ "fromWalletId": from, "toWalletId": to, "amount": amount }),
            key,
        )
        .await;
    data(&body, "transfer").clone()
}

async fn reviews(app: &TestApp, staff: &Session, pending: bool) -> Vec<Value> {
    let body = app
        .gql(Some(&staff.token), REVIEWS, json!({ "p": pending }))
        .await;
    data(&body, "riskReviews").as_array().expect("list").clone()
}

fn rules_of(alert: &Value) -> Vec<String> {
    alert["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["rule"].as_str().expect("rule").to_owned())
        .collect()
}

#[tokio::test]
async fn a_first_large_transfer_is_held_its_funds_frozen_then_released_or_rejected() {
    let app = app_with("new_recipient.weight=30,hold=30,large.USD=100").await;
    let officer = app.admin("officer.risk@example.com").await;
    let (alice, a) = funded(&app, "alice.risk@example.com", "300").await;
    let (bob, b) = funded(&app, "bob.risk@example.com", "0").await;
    let (_carol, c) = funded(&app, "carol.risk@example.com", "0").await;

    // Below the large amount nothing fires.
    let small = send(&app, &alice, &a, &b, "99.99", "r-small").await;
    assert_eq!(small["transaction"]["status"], "COMPLETED");
    let (dave, d) = funded(&app, "dave.risk@example.com", "0").await;

    // A first large transfer to Dave: accepted but held, funds frozen.
    let held = send(&app, &alice, &a, &d, "150", "r-held").await;
    assert_eq!(held["transaction"]["status"], "HELD", "{held}");
    assert_eq!(held["wallet"]["availableBalance"], "50.01");
    assert_eq!(held["wallet"]["frozenBalance"], "150.00");
    let t = held["transaction"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        data(&app.wallet(&dave, &d).await, "wallet")["balance"],
        "0.00"
    );
    // The held money cannot be spent, by transfer or withdrawal.
    let spend = app
        .transfer(
            &alice,
            json!({ "fromWalletId": a, "toWalletId": b, "amount": "60" }),
            "r-spend",
        )
        .await;
    assert_eq!(error_code(&spend), "INSUFFICIENT_FUNDS", "{spend}");
    let out = app.withdraw(&alice, &a, "60", "r-spend-out").await;
    assert_eq!(error_code(&out), "INSUFFICIENT_FUNDS", "{out}");

    // The review queue shows it with its score and rule.
    let queue = reviews(&app, &officer, true).await;
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["transactionId"], json!(t));
    assert_eq!(
        (queue[0]["score"].as_i64(), queue[0]["decision"].as_str()),
        (Some(30), Some("HOLD"))
    );
    assert_eq!(rules_of(&queue[0]), ["NEW_RECIPIENT"]);
    // Only compliance decides, and never on a hold of their own.
    let by_user = app
        .gql(Some(&alice.token), DECIDE, json!({ "id": t, "r": "mine" }))
        .await;
    assert_eq!(error_code(&by_user), "FORBIDDEN");
    let no_reason = app
        .gql(Some(&officer.token), DECIDE, json!({ "id": t, "r": " " }))
        .await;
    assert_eq!(error_code(&no_reason), "BAD_USER_INPUT");

    // Released: the transfer goes through to Dave.
    let released = app
        .gql(
            Some(&officer.token),
            DECIDE,
            json!({ "id": t, "r": "customer confirmed by phone" }),
        )
        .await;
    let released = data(&released, "releaseHold");
    assert_eq!(released["transaction"]["status"], "COMPLETED");
    assert_eq!(released["wallet"]["availableBalance"], "50.01");
    assert_eq!(released["wallet"]["frozenBalance"], "0.00");
    let again = app
        .gql(
            Some(&officer.token),
            REJECT,
            json!({ "id": t, "r": "too late" }),
        )
        .await;
    assert_eq!(error_code(&again), "BAD_USER_INPUT", "decided once");
    assert!(reviews(&app, &officer, true).await.is_empty());
    let log = reviews(&app, &officer, false).await;
    assert_eq!(log[0]["resolution"], "RELEASED");
    assert_eq!(log[0]["reason"], "customer confirmed by phone");

    // Another first transfer, to Carol, is rejected: the money returns.
    let held = send(&app, &alice, &a, &c, "50", "r-held-2").await;
    assert_eq!(
        held["transaction"]["status"], "COMPLETED",
        "50 is below the large amount"
    );
    data(&app.deposit(&alice, &a, "200", "r-top-up").await, "deposit");
    let (erin, e) = funded(&app, "erin.risk@example.com", "0").await;
    let held = send(&app, &alice, &a, &e, "200", "r-held-3").await;
    assert_eq!(held["transaction"]["status"], "HELD");
    let t3 = held["transaction"]["id"].as_str().expect("id").to_owned();
    let rejected = app
        .gql(
            Some(&officer.token),
            REJECT,
            json!({ "id": t3, "r": "mule pattern" }),
        )
        .await;
    let rejected = data(&rejected, "rejectHold");
    assert_eq!(rejected["transaction"]["status"], "FAILED");
    assert_eq!(rejected["wallet"]["availableBalance"], "200.01");
    assert_eq!(
        data(&app.wallet(&erin, &e).await, "wallet")["balance"],
        "0.00"
    );
    // A recipient paid before is not new: Dave again goes straight through.
    let known = send(&app, &alice, &a, &d, "150", "r-known").await;
    assert_eq!(known["transaction"]["status"], "COMPLETED");

    // Alice was told of the hold and of both decisions.
    let inbox = app
        .notifications(
            &alice,
            "{ notifications(first: 30) { edges { node { kind title body } } } }",
            8,
        )
        .await;
    let titles: Vec<&str> = inbox
        .iter()
        .filter(|n| n["node"]["kind"] == "transaction.updated")
        .map(|n| n["node"]["title"].as_str().expect("title"))
        .collect();
    for title in [
        "Payment under review",
        "Payment approved",
        "Payment declined",
    ] {
        assert!(titles.contains(&title), "{title} in {titles:?}");
    }
    assert!(
        inbox.iter().any(|n| n["node"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("mule pattern"))),
        "the rejection's reason reaches the user: {inbox:?}"
    );
    let _ = bob;
    assert_balanced(&app.db).await;
}

#[tokio::test]
async fn velocity_history_and_a_withdrawal_after_a_deposit_each_hold() {
    // Velocity: the fourth movement within the window.
    let app = app_with("velocity.weight=50,hold=50,velocity.count=3").await;
    let (alice, a) = funded(&app, "fast@example.com", "100").await;
    let (_bob, b) = funded(&app, "fast.bob@example.com", "0").await;
    for i in 0..3 {
        let t = send(&app, &alice, &a, &b, "1", &format!("v-{i}")).await;
        assert_eq!(t["transaction"]["status"], "COMPLETED");
    }
    let fourth = send(&app, &alice, &a, &b, "1", "v-3").await;
    assert_eq!(fourth["transaction"]["status"], "HELD");
    let admin = app.admin("v.officer@example.com").await;
    assert_eq!(
        rules_of(&reviews(&app, &admin, true).await[0]),
        ["VELOCITY"]
    );
    assert_balanced(&app.db).await;

    // Far above the user's history.
    let app =
        app_with("above_history.weight=50,hold=50,history.min_count=3,history.multiple=10").await;
    let (alice, a) = funded(&app, "usual@example.com", "100").await;
    let (_bob, b) = funded(&app, "usual.bob@example.com", "0").await;
    for i in 0..3 {
        send(&app, &alice, &a, &b, "2", &format!("h-{i}")).await;
    }
    let same = send(&app, &alice, &a, &b, "20", "h-ten-times").await;
    assert_eq!(
        same["transaction"]["status"], "COMPLETED",
        "ten times is not above ten times"
    );
    let spike = send(&app, &alice, &a, &b, "66", "h-spike").await;
    assert_eq!(
        spike["transaction"]["status"], "HELD",
        "above ten times the average of 6.5"
    );
    let admin = app.admin("h.officer@example.com").await;
    let alert = reviews(&app, &admin, true).await[0].clone();
    assert_eq!(rules_of(&alert), ["ABOVE_HISTORY"]);
    assert!(
        alert["rules"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("6.5 USD")),
        "{alert}"
    );

    // A withdrawal soon after money came in: held, and released to the
    // payout queue (PENDING), not paid out while held.
    let app = app_with("withdrawal_after_deposit.weight=50,hold=50").await;
    let (alice, a) = funded(&app, "mule@example.com", "100").await;
    let out = app.withdraw(&alice, &a, "80", "w-soon").await;
    let out = data(&out, "withdraw");
    assert_eq!(out["transaction"]["status"], "HELD", "{out}");
    assert_eq!(out["wallet"]["frozenBalance"], "80.00");
    let t = out["transaction"]["id"].as_str().expect("id").to_owned();
    let admin = app.admin("w.officer@example.com").await;
    assert_eq!(
        rules_of(&reviews(&app, &admin, true).await[0]),
        ["WITHDRAWAL_AFTER_DEPOSIT"]
    );
    // A held withdrawal cannot be settled before the review.
    let settle = app
        .gql(
            Some(&admin.token),
            "mutation($id: ID!) { settleWithdrawal(id: $id, outcome: COMPLETED) { transaction { status } } }",
            json!({ "id": t }),
        )
        .await;
    assert_eq!(error_code(&settle), "BAD_USER_INPUT", "{settle}");
    let released = app
        .gql(
            Some(&admin.token),
            DECIDE,
            json!({ "id": t, "r": "salary, documented" }),
        )
        .await;
    assert_eq!(
        data(&released, "releaseHold")["transaction"]["status"],
        "PENDING"
    );
    assert_eq!(
        data(&released, "releaseHold")["wallet"]["frozenBalance"],
        "80.00"
    );
    assert_balanced(&app.db).await;
}

#[tokio::test]
async fn a_new_device_holds_a_large_movement_and_a_pile_up_blocks() {
    let app = app_with("new_device.weight=50,hold=50,large.USD=100").await;
    let (alice, a) = funded(&app, "device@example.com", "1000").await;
    let (_bob, b) = funded(&app, "device.bob@example.com", "0").await;
    // The session of the registration is the first device: not new.
    let first = send(&app, &alice, &a, &b, "100", "d-known").await;
    assert_eq!(first["transaction"]["status"], "COMPLETED");
    // The same client again is not new either.
    let same = app.login_with_agent("device@example.com", Some("")).await;
    let t = send(&app, &same, &a, &b, "100", "d-same").await;
    assert_eq!(t["transaction"]["status"], "COMPLETED");
    // Another browser: a large movement from it is held, a small one is not.
    let other = app
        .login_with_agent(
            "device@example.com",
            Some("Mozilla/5.0 (X11; Linux x86_64) Unknown/1.0"),
        )
        .await;
    let small = send(&app, &other, &a, &b, "99", "d-small").await;
    assert_eq!(small["transaction"]["status"], "COMPLETED");
    let large = send(&app, &other, &a, &b, "100", "d-large").await;
    assert_eq!(large["transaction"]["status"], "HELD");
    let admin = app.admin("d.officer@example.com").await;
    assert_eq!(
        rules_of(&reviews(&app, &admin, true).await[0]),
        ["NEW_DEVICE"]
    );

    // New device and new recipient together cross the block threshold.
    let app =
        app_with("new_device.weight=40,new_recipient.weight=30,hold=30,block=60,large.USD=100")
            .await;
    let (alice, a) = funded(&app, "blocked@example.com", "1000").await;
    let (_bob, b) = funded(&app, "blocked.bob@example.com", "0").await;
    let other = app
        .login_with_agent("blocked@example.com", Some("Unknown agent 2.0"))
        .await;
    let refused = app
        .transfer(
            &other,
            json!({ "fromWalletId": a, "toWalletId": b, "amount": "500" }),
            "b-1",
        )
        .await;
    assert_eq!(error_code(&refused), "RISK_BLOCKED", "{refused}");
    let ext = &refused["errors"][0]["extensions"];
    assert_eq!(ext["riskScore"], "70");
    assert_eq!(ext["riskRules"], "NEW_RECIPIENT,NEW_DEVICE");
    // Nothing moved, nothing was recorded as a transaction; the alert stays.
    let w = data(&app.wallet(&alice, &a).await, "wallet").clone();
    assert_eq!(
        (w["availableBalance"].as_str(), w["frozenBalance"].as_str()),
        (Some("1000.00"), Some("0.00"))
    );
    let history = app
        .gql(
            Some(&alice.token),
            "{ transactions(first: 10) { edges { node { kind } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&history, "transactions")["edges"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "only the deposit"
    );
    let admin = app.admin("b.officer@example.com").await;
    assert!(
        reviews(&app, &admin, true).await.is_empty(),
        "a block is not a review"
    );
    let log = reviews(&app, &admin, false).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0]["decision"].as_str(), log[0]["score"].as_i64()),
        (Some("BLOCK"), Some(70))
    );
    assert!(log[0]["transactionId"].is_null());
    // From the known session the same transfer is only held.
    let held = send(&app, &alice, &a, &b, "500", "b-2").await;
    assert_eq!(held["transaction"]["status"], "HELD");
    assert_balanced(&app.db).await;
}
