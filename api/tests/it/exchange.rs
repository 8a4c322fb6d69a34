//! Currency exchange: quotes from a rates endpoint, exchanges at the quoted
//! rate, rounding residues in the rounding accounts, books balanced per
//! currency under concurrency.

use std::collections::BTreeMap;
use std::time::Duration;

use entity::entities::{ledger_entries, wallets};
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::support::rates::FakeRates;
use crate::support::*;

const QUOTE: &str = "mutation($w: ID!, $c: String!, $a: Decimal!) { quoteExchange(fromWalletId: $w, toCurrency: $c, amount: $a) {
    id fromCurrency toCurrency amount fee rate receiveAmount expiresAt } }";
const EXCHANGE: &str = "mutation($q: ID!, $k: String!) { exchange(quoteId: $q, idempotencyKey: $k) {
    replayed transaction { id kind amount currency } fromWallet { balance } toWallet { balance } quote { receiveAmount } } }";

async fn quote(app: &TestApp, s: &Session, wallet: &str, to: &str, amount: &str) -> Value {
    app.gql(
        Some(&s.token),
        QUOTE,
        json!({ "w": wallet, "c": to, "a": amount }),
    )
    .await
}

async fn exchange(app: &TestApp, s: &Session, quote_id: &str, key: &str) -> Value {
    app.gql(Some(&s.token), EXCHANGE, json!({ "q": quote_id, "k": key }))
        .await
}

fn id_of(body: &Value) -> String {
    data(body, "quoteExchange")["id"]
        .as_str()
        .expect("quote id")
        .to_owned()
}

/// Every currency's ledger sums to zero, every wallet equals its ledger
/// lines; returns the rounding accounts' balances.
async fn assert_books(app: &TestApp) -> BTreeMap<String, Decimal> {
    let lines = ledger_entries::Entity::find()
        .all(&app.db)
        .await
        .expect("lines");
    let mut per_currency: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut rounding: BTreeMap<String, Decimal> = BTreeMap::new();
    for l in &lines {
        *per_currency.entry(l.currency.clone()).or_default() += l.amount.0;
        if l.account.starts_with("house:fx_rounding:") {
            *rounding.entry(l.currency.clone()).or_default() += l.amount.0;
        }
    }
    for (currency, sum) in &per_currency {
        assert!(sum.is_zero(), "{currency} ledger sums to {sum}");
    }
    for w in wallets::Entity::find().all(&app.db).await.expect("wallets") {
        let (available, held) = entity::store::payments::ledger_balances(&app.db, w.id)
            .await
            .expect("ledger");
        assert_eq!(
            (available, held),
            (w.available.0.normalize(), w.frozen.0.normalize()),
            "wallet {}",
            w.id
        );
    }
    rounding
}

#[tokio::test]
async fn an_exchange_at_a_quote_balances_every_currency_and_books_each_residue() {
    let rates = FakeRates::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| rates.configure(s)).await;
    let s = app.register("fx@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    let eth = app.open_wallet(&s, "ETH").await;
    data(&app.deposit(&s, &usd, "1000", "fund-usd").await, "deposit");
    data(&app.deposit(&s, &eth, "1", "fund-eth").await, "deposit");

    // No BTC wallet yet.
    let none = quote(&app, &s, &usd, "BTC", "100").await;
    assert_eq!(error_code(&none), "NOT_FOUND", "{none}");
    let btc = app.open_wallet(&s, "BTC").await;
    let q = quote(&app, &s, &usd, "BTC", "100").await;
    let offer = data(&q, "quoteExchange");
    assert_eq!(offer["fee"], "0.50");
    assert_eq!(offer["rate"], "0.000010309278350515");
    assert_eq!(offer["receiveAmount"], "0.00102577");
    let qid = id_of(&q);

    let done = exchange(&app, &s, &qid, "x1").await;
    let p = data(&done, "exchange");
    assert_eq!(p["replayed"], false);
    assert_eq!(p["transaction"]["kind"], "EXCHANGE");
    assert_eq!(p["fromWallet"]["balance"], "900.00");
    assert_eq!(p["toWallet"]["balance"], "0.00102577");
    // The same key replays; another key finds the quote used; another user
    // does not find it at all.
    let again = exchange(&app, &s, &qid, "x1").await;
    assert_eq!(data(&again, "exchange")["replayed"], true);
    assert_eq!(
        data(&again, "exchange")["toWallet"]["balance"],
        "0.00102577"
    );
    let reused = exchange(&app, &s, &qid, "x2").await;
    assert_eq!(error_code(&reused), "QUOTE_EXPIRED", "{reused}");
    let other = app.register("other@example.com").await;
    let stolen = exchange(&app, &other, &qid, "x3").await;
    assert_eq!(error_code(&stolen), "NOT_FOUND", "{stolen}");

    // ETH to USD at the cent boundary: 0.000003 ETH less 0.5 % buys 0.01 USD.
    let q = quote(&app, &s, &eth, "USD", "0.000003").await;
    assert_eq!(data(&q, "quoteExchange")["receiveAmount"], "0.01");
    data(&exchange(&app, &s, &id_of(&q), "x4").await, "exchange");
    // One wei buys nothing.
    let dust = quote(&app, &s, &eth, "USD", "0.000000000000000001").await;
    assert_eq!(error_code(&dust), "BAD_USER_INPUT");
    // Same currency.
    let same = quote(&app, &s, &usd, "USD", "1").await;
    assert_eq!(error_code(&same), "CURRENCY_MISMATCH");
    // More than the wallet holds: quoted, then refused.
    app.open_wallet(&s, "EUR").await;
    let q = quote(&app, &s, &usd, "EUR", "5000").await;
    let broke = exchange(&app, &s, &id_of(&q), "x5").await;
    assert_eq!(error_code(&broke), "INSUFFICIENT_FUNDS");

    let rounding = assert_books(&app).await;
    // 100 USD -> BTC left 0.000000003195876242 BTC; 0.000003 ETH less its fee
    // (0.000000015) at 3600 is 0.010746 USD, of which 0.01 was received.
    assert_eq!(
        rounding["BTC"].normalize().to_string(),
        "0.000000003195876242"
    );
    assert_eq!(rounding["USD"].normalize().to_string(), "0.000746");
    let _ = btc;
}

#[tokio::test]
async fn stale_rates_expired_quotes_and_a_feed_that_is_down_are_refused() {
    let rates = FakeRates::start().await;
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        rates.configure(s);
        s.fx.quote_ttl = Duration::from_secs(1);
        s.fx.max_age = Duration::from_secs(60);
    })
    .await;
    let s = app.register("late@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    app.open_wallet(&s, "EUR").await;
    data(&app.deposit(&s, &usd, "100", "fund").await, "deposit");

    let q = quote(&app, &s, &usd, "EUR", "10").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let late = exchange(&app, &s, &id_of(&q), "late").await;
    assert_eq!(error_code(&late), "QUOTE_EXPIRED", "{late}");

    // A new server (no cache) against a feed publishing old rates.
    rates.set_age(600);
    let app2 = TestApp::spawn_with(Backend::Postgres, |s| rates.configure(s)).await;
    let s2 = app2.register("stale@example.com").await;
    let w = app2.open_wallet(&s2, "USD").await;
    app2.open_wallet(&s2, "EUR").await;
    let stale = quote(&app2, &s2, &w, "EUR", "1").await;
    assert_eq!(error_code(&stale), "PROVIDER_UNAVAILABLE", "{stale}");
    rates.set_age(0);
    data(&quote(&app2, &s2, &w, "EUR", "1").await, "quoteExchange");
    // Down: cached rates serve while fresh (the server asked once).
    rates.set_down(true);
    let before = rates.requests();
    data(&quote(&app2, &s2, &w, "EUR", "1").await, "quoteExchange");
    assert_eq!(rates.requests(), before, "fresh rates come from the cache");
    let down_app = TestApp::spawn_with(Backend::Postgres, |s| rates.configure(s)).await;
    let s3 = down_app.register("down@example.com").await;
    let w3 = down_app.open_wallet(&s3, "USD").await;
    down_app.open_wallet(&s3, "EUR").await;
    let down = quote(&down_app, &s3, &w3, "EUR", "1").await;
    assert_eq!(error_code(&down), "PROVIDER_UNAVAILABLE", "{down}");
}

#[tokio::test]
async fn concurrent_exchanges_and_deposits_keep_every_currency_balanced() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("race@example.com").await;
    let usd = app.open_wallet(&s, "USD").await;
    let btc = app.open_wallet(&s, "BTC").await;
    let eth = app.open_wallet(&s, "ETH").await;
    data(&app.deposit(&s, &usd, "500", "fund").await, "deposit");
    data(&app.deposit(&s, &btc, "0.5", "fund-btc").await, "deposit");
    let mut quotes = Vec::new();
    for (from, to, amount) in [
        (&usd, "BTC", "33.33"),
        (&usd, "ETH", "17.01"),
        (&btc, "USD", "0.00012345"),
        (&btc, "ETH", "0.01"),
        (&usd, "BTC", "0.99"),
        (&btc, "USD", "0.00000777"),
    ] {
        quotes.push(id_of(&quote(&app, &s, from, to, amount).await));
    }
    // Each quote raced by two keys, with deposits in between.
    let mut work = Vec::new();
    for (i, q) in quotes.iter().enumerate() {
        for k in 0..2 {
            let (app, s, q) = (&app, &s, q.clone());
            work.push(
                Box::pin(async move { exchange(app, s, &q, &format!("q{i}-{k}")).await })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Value> + '_>>,
            );
        }
        let (app, s, usd) = (&app, &s, usd.clone());
        work.push(Box::pin(async move {
            app.deposit(s, &usd, "1.23", &format!("d{i}")).await
        }));
    }
    let results = futures_util::future::join_all(work).await;
    let exchanged = results
        .iter()
        .filter(|r| r["data"]["exchange"].is_object())
        .count();
    let refused: Vec<String> = results
        .iter()
        .filter(|r| r["data"]["exchange"].is_null() && r["data"]["deposit"].is_null())
        .map(error_code)
        .collect();
    assert_eq!(exchanged, quotes.len(), "each quote used once: {results:?}");
    assert!(
        refused
            .iter()
            .all(|c| c == "QUOTE_EXPIRED" || c == "IDEMPOTENCY_KEY_IN_USE"),
        "{refused:?}"
    );
    assert_books(&app).await;
    let _ = eth;
}
