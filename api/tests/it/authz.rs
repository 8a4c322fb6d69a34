//! A user reads and moves only their own wallets and transactions.

use serde_json::json;

use crate::support::{Backend, TestApp, data, error_code};

#[tokio::test]
async fn another_users_wallet_is_not_found_in_queries_and_mutations() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let a = app.register("owner@example.com").await;
    let b = app.register("intruder@example.com").await;
    let a_usd = app.open_wallet(&a, "USD").await;
    let b_usd = app.open_wallet(&b, "USD").await;
    app.deposit(&a, &a_usd, "100", "d").await;
    let tx = data(&app.withdraw(&a, &a_usd, "5", "w").await, "withdraw")["transaction"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let attempts = [
        (
            "query($w: ID!) { wallet(id: $w) { balance } }",
            json!({ "w": a_usd }),
        ),
        (
            "query($w: ID) { transactions(walletId: $w) { edges { node { id } } } }",
            json!({ "w": a_usd }),
        ),
        (
            "mutation($w: ID!) { deposit(input: {walletId: $w, amount: \"1\"}, idempotencyKey: \"x1\") { replayed } }",
            json!({ "w": a_usd }),
        ),
        (
            "mutation($w: ID!) { withdraw(input: {walletId: $w, amount: \"1\", destination: \"me\"}, idempotencyKey: \"x2\") { replayed } }",
            json!({ "w": a_usd }),
        ),
        (
            "mutation($w: ID!, $to: ID!) { transfer(input: {fromWalletId: $w, toWalletId: $to, amount: \"1\"}, idempotencyKey: \"x3\") { replayed } }",
            json!({ "w": a_usd, "to": b_usd }),
        ),
    ];
    for (query, vars) in &attempts {
        let body = app.gql(Some(&b.token), query, vars.clone()).await;
        let code = error_code(&body);
        assert!(
            code == "NOT_FOUND" || code == "FORBIDDEN",
            "{query}: {body}"
        );
        // Anonymous callers are told to sign in.
        let anon = app.gql(None, query, vars.clone()).await;
        assert_eq!(error_code(&anon), "UNAUTHENTICATED", "{query}: {anon}");
        // A forged token is no better than none.
        let forged = app
            .gql(Some("eyJhbGciOiJIUzI1NiJ9.e30.forged"), query, vars.clone())
            .await;
        assert_eq!(error_code(&forged), "UNAUTHENTICATED", "{query}: {forged}");
    }
    // Settling needs the admin role.
    assert_eq!(
        error_code(&app.settle(&b, &tx, "COMPLETED").await),
        "FORBIDDEN"
    );

    // B's history does not show A's transactions; A's balance is untouched.
    let hist = app
        .gql(
            Some(&b.token),
            "{ transactions { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data(&hist, "transactions")["edges"], json!([]));
    let w = app.wallet(&a, &a_usd).await;
    assert_eq!(data(&w, "wallet")["balance"], "100.00");
    assert_eq!(data(&w, "wallet")["availableBalance"], "95.00");

    // Paying into someone else's wallet by id is allowed: that is a transfer.
    app.deposit(&b, &b_usd, "3", "bd").await;
    let pay = app
        .transfer(
            &b,
            json!({ "fromWalletId": b_usd, "toWalletId": a_usd, "amount": "3" }),
            "pay",
        )
        .await;
    assert_eq!(data(&pay, "transfer")["wallet"]["balance"], "0.00");
    assert!(
        pay["data"]["transfer"]["wallet"]["id"] == json!(b_usd),
        "payload shows the caller's wallet"
    );
}
