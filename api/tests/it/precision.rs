//! Amounts round-trip exactly on both backends; what does not fit is refused.

use serde_json::json;

use crate::support::{data, error_code, on_both};

#[tokio::test]
async fn smallest_and_largest_amounts_round_trip_exactly_on_both_backends() {
    on_both(|app| async move {
        let s = app.register("precise@example.com").await;
        let eth = app.open_wallet(&s, "ETH").await;
        for (i, amount) in ["0.000000000000000001", "9999999999.999999999999999998"]
            .iter()
            .enumerate()
        {
            let body = app.deposit(&s, &eth, amount, &format!("p{i}")).await;
            assert_eq!(
                data(&body, "deposit")["transaction"]["amount"],
                json!(amount),
                "{:?}",
                app.backend
            );
        }
        // 0.000000000000000001 + 9999999999.999999999999999998 is the largest balance.
        let w = app.wallet(&s, &eth).await;
        assert_eq!(
            data(&w, "wallet")["balance"],
            json!("9999999999.999999999999999999")
        );
        // Read back through the entities too, not only through the API.
        let id = uuid::Uuid::parse_str(&eth).expect("uuid");
        let stored = entity::store::wallets::get(&app.db, id)
            .await
            .expect("read")
            .expect("wallet");
        assert_eq!(
            stored.balance().to_string(),
            "9999999999.999999999999999999"
        );
        let (available, held) = entity::store::payments::ledger_balances(&app.db, id)
            .await
            .expect("ledger");
        assert_eq!(available.to_string(), "9999999999.999999999999999999");
        assert!(held.is_zero());
        let history = app
            .gql(
                Some(&s.token),
                "{ transactions { edges { node { amount } } } }",
                json!({}),
            )
            .await;
        let amounts: Vec<&str> = data(&history, "transactions")["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["amount"].as_str().expect("amount"))
            .collect();
        assert_eq!(
            amounts,
            ["9999999999.999999999999999998", "0.000000000000000001"]
        );
        // The largest amount in one deposit, into another user's wallet.
        let other = app.register("precise-2@example.com").await;
        let eth2 = app.open_wallet(&other, "ETH").await;
        let max = app
            .deposit(&other, &eth2, "9999999999.999999999999999999", "max")
            .await;
        assert_eq!(
            data(&max, "deposit")["transaction"]["amount"],
            json!("9999999999.999999999999999999")
        );
        assert_eq!(
            data(&max, "deposit")["wallet"]["availableBalance"],
            json!("9999999999.999999999999999999")
        );
        // One more unit would exceed what a wallet can hold.
        let over = app
            .deposit(&s, &eth, "0.000000000000000001", "p-over")
            .await;
        assert_eq!(error_code(&over), "LIMIT_EXCEEDED");
    })
    .await;
}

#[tokio::test]
async fn amounts_that_do_not_fit_are_refused_not_rounded() {
    on_both(|app| async move {
        let s = app.register("refused@example.com").await;
        let usd = app.open_wallet(&s, "USD").await;
        let eth = app.open_wallet(&s, "ETH").await;
        for (wallet, amount) in [
            (&eth, "0.0000000000000000001"),
            (&eth, "10000000000"),
            (&eth, "12345678901.000000000000000001"),
            (&usd, "1.001"),
            (&usd, "0"),
            (&usd, "-5"),
            (&usd, "1e3"),
            (&usd, "abc"),
        ] {
            let body = app.deposit(&s, wallet, amount, &format!("bad-{amount}")).await;
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{amount}: {body}");
        }
        // A JSON number is never accepted for money.
        let body = app
            .gql(
                Some(&s.token),
                "mutation($w: ID!) { deposit(input: {walletId: $w, amount: 12.5}, idempotencyKey: \"n\") { replayed } }",
                json!({ "w": usd }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
        let w = app.wallet(&s, &usd).await;
        assert_eq!(data(&w, "wallet")["balance"], json!("0.00"));
    })
    .await;
}
