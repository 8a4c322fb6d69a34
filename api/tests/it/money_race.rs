//! Money conserved per currency while card deposits (with duplicated
//! webhooks), exchanges, transfers, payouts, reversals and refunds race each
//! other on PostgreSQL, each request retried with its key at once: every
//! posting sums to zero, every wallet equals its ledger, each key moves money
//! once and each webhook applies once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain::{TransactionKind, TransactionStatus};
use entity::entities::{payment_events, payment_intents, transactions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::books::assert_balanced;
use crate::support::stripe::{
    FakeStripe, WEBHOOK_SECRET, deliver, event, payout_event, refund_event, signature,
};
use crate::support::*;

const USERS: usize = 4;
const TASKS: usize = 24;
const OPS: usize = 5;

const QUOTE: &str = "mutation($w: ID!, $a: Decimal!) { quoteExchange(fromWalletId: $w, toCurrency: \"EUR\", amount: $a) { id } }";
const EXCHANGE: &str = "mutation($q: ID!, $k: String!) { exchange(quoteId: $q, idempotencyKey: $k) { transaction { id } } }";
const START: &str = "mutation($i: DepositInput!, $k: String!) { startDeposit(input: $i, idempotencyKey: $k) { id } }";
const REVERSE: &str = "mutation($id: ID!, $k: String!) { reverseTransaction(id: $id, reason: \"race\", idempotencyKey: $k, placeDebt: true) { transaction { id } } }";
const REFUND: &str = "mutation($id: ID!, $k: String!) { refundDeposit(id: $id, amount: \"1\", idempotencyKey: $k) { transaction { id } } }";

/// Transaction ids each successful key returned.
type Keys = Arc<Mutex<HashMap<String, HashSet<String>>>>;

/// Records a result: the transaction id of a success, or checks the
/// refusal is one the race may produce.
async fn record(
    keys: &Keys,
    key: &str,
    body: &Value,
    field: &str,
    allowed: &[&str],
) -> Option<String> {
    if let Some(id) = body["data"][field]["transaction"]["id"].as_str() {
        keys.lock()
            .await
            .entry(key.to_owned())
            .or_default()
            .insert(id.to_owned());
        return Some(id.to_owned());
    }
    let code = error_code(body);
    assert!(
        code == "IDEMPOTENCY_KEY_IN_USE" || allowed.contains(&code.as_str()),
        "unexpected refusal {code} of {field}: {body}"
    );
    None
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_conserved_when_every_kind_of_movement_races() {
    let stripe = Arc::new(FakeStripe::start().await);
    let app = Arc::new(TestApp::spawn_with(Backend::Postgres, |s| stripe.configure(s)).await);
    let url = app.url("/webhooks/payments");
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("money race seed: {seed} (rerun with SEED={seed})");
    let admin = app.admin("race.admin@example.com").await;
    let mut users = Vec::new();
    for i in 0..USERS {
        let s = app.register(&format!("racer{i}@example.com")).await;
        let usd = app.open_wallet(&s, "USD").await;
        let eur = app.open_wallet(&s, "EUR").await;
        data(
            &app.deposit(&s, &eur, "50", &format!("race-eur-{i}")).await,
            "deposit",
        );
        users.push((s, usd, eur));
    }
    let users = Arc::new(users);
    let keys: Keys = Arc::default();
    let events_sent = Arc::new(Mutex::new(HashSet::<String>::new()));
    // Everyone starts with one card deposit, so the race has money to move.
    for (i, (s, usd, _)) in users.iter().enumerate() {
        let started = app
            .gql(
                Some(&s.token),
                START,
                json!({ "i": { "walletId": usd, "amount": "100" }, "k": format!("race-seed-{i}") }),
            )
            .await;
        data(&started, "startDeposit");
        let pi = stripe.intents().last().cloned().expect("intent");
        let id = format!("evt_seed_{i}");
        let body = event(&id, "payment_intent.succeeded", &pi, now());
        let sig = signature(&body, now(), &[WEBHOOK_SECRET]);
        assert_eq!(
            deliver(&app.client, &url, &body, &sig).await.1["outcome"],
            "APPLIED"
        );
        events_sent.lock().await.insert(id);
    }

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (app, users, keys, admin, stripe, url, events_sent) = (
            app.clone(),
            users.clone(),
            keys.clone(),
            admin.clone(),
            stripe.clone(),
            url.clone(),
            events_sent.clone(),
        );
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(t as u64));
        tasks.push(tokio::spawn(async move {
            for op in 0..OPS {
                let key = format!("race-{t}-{op}");
                let me = rng.random_range(0..USERS);
                let (s, usd, _eur) = &users[me];
                let other = (me + 1 + rng.random_range(0..USERS - 1)) % USERS;
                let amount = format!("{}", rng.random_range(1..=15));
                match rng.random_range(0..6) {
                    // A card deposit whose success arrives twice at once.
                    0 => {
                        let started = app
                            .gql(Some(&s.token), START, json!({ "i": { "walletId": usd, "amount": "30" }, "k": key }))
                            .await;
                        let intent_id = data(&started, "startDeposit")["id"].as_str().expect("id").to_owned();
                        let row = payment_intents::Entity::find_by_id(uuid::Uuid::parse_str(&intent_id).expect("uuid"))
                            .one(&app.db)
                            .await
                            .expect("intent")
                            .expect("recorded");
                        let pi = stripe
                            .intents()
                            .into_iter()
                            .find(|i| i.id == row.provider_id)
                            .expect("at the provider");
                        let id = format!("evt_race_{t}_{op}");
                        events_sent.lock().await.insert(id.clone());
                        let body = event(&id, "payment_intent.succeeded", &pi, now());
                        let sig = signature(&body, now(), &[WEBHOOK_SECRET]);
                        let (a, b) = tokio::join!(
                            deliver(&app.client, &url, &body, &sig),
                            deliver(&app.client, &url, &body, &sig)
                        );
                        let mut outcomes = [a.1["outcome"].clone(), b.1["outcome"].clone()];
                        outcomes.sort_by_key(ToString::to_string);
                        assert_eq!(outcomes, [json!("APPLIED"), json!("DUPLICATE")], "one delivery applies");
                    }
                    // An exchange into EUR, retried at once.
                    1 => {
                        let q = app.gql(Some(&s.token), QUOTE, json!({ "w": usd, "a": amount })).await;
                        let Some(quote) = q["data"]["quoteExchange"]["id"].as_str() else {
                            continue;
                        };
                        let vars = json!({ "q": quote, "k": key });
                        let (a, b) = tokio::join!(
                            app.gql(Some(&s.token), EXCHANGE, vars.clone()),
                            app.gql(Some(&s.token), EXCHANGE, vars.clone())
                        );
                        record(&keys, &key, &a, "exchange", &["INSUFFICIENT_FUNDS"]).await;
                        record(&keys, &key, &b, "exchange", &["INSUFFICIENT_FUNDS"]).await;
                    }
                    // A withdrawal, paid out by the provider later.
                    2 => {
                        let body = app.withdraw(s, usd, &amount, &key).await;
                        record(&keys, &key, &body, "withdraw", &["INSUFFICIENT_FUNDS"]).await;
                    }
                    // A reversal by staff of a completed transfer, placing any shortfall as a debt.
                    3 => {
                        let candidates = transactions::Entity::find()
                            .filter(transactions::Column::Kind.eq(TransactionKind::Transfer.as_str()))
                            .filter(transactions::Column::Status.eq(TransactionStatus::Completed.as_str()))
                            .all(&app.db)
                            .await
                            .expect("transfers");
                        if candidates.is_empty() {
                            continue;
                        }
                        let pick = &candidates[rng.random_range(0..candidates.len())];
                        // One key per transfer: racing reversals replay each other.
                        let key = format!("race-rev-{}", pick.id);
                        let vars = json!({ "id": pick.id.to_string(), "k": key });
                        let (a, b) = tokio::join!(
                            app.gql(Some(&admin.token), REVERSE, vars.clone()),
                            app.gql(Some(&admin.token), REVERSE, vars.clone())
                        );
                        record(&keys, &key, &a, "reverseTransaction", &["BAD_USER_INPUT"]).await;
                        record(&keys, &key, &b, "reverseTransaction", &["BAD_USER_INPUT"]).await;
                    }
                    // A refund of one unit of a card deposit.
                    4 => {
                        let paid = payment_intents::Entity::find()
                            .filter(payment_intents::Column::TransactionId.is_not_null())
                            .all(&app.db)
                            .await
                            .expect("intents");
                        if paid.is_empty() {
                            continue;
                        }
                        let pick = &paid[rng.random_range(0..paid.len())];
                        let vars = json!({ "id": pick.transaction_id.expect("paid").to_string(), "k": key });
                        let (a, b) = tokio::join!(
                            app.gql(Some(&admin.token), REFUND, vars.clone()),
                            app.gql(Some(&admin.token), REFUND, vars.clone())
                        );
                        let allowed = ["INSUFFICIENT_FUNDS", "BAD_USER_INPUT"];
                        record(&keys, &key, &a, "refundDeposit", &allowed).await;
                        record(&keys, &key, &b, "refundDeposit", &allowed).await;
                    }
                    // A transfer, retried at once.
                    _ => {
                        let input = json!({ "fromWalletId": usd, "toWalletId": users[other].1, "amount": amount });
                        let (a, b) = tokio::join!(
                            app.transfer(s, input.clone(), &key),
                            app.transfer(s, input.clone(), &key)
                        );
                        record(&keys, &key, &a, "transfer", &["INSUFFICIENT_FUNDS"]).await;
                        record(&keys, &key, &b, "transfer", &["INSUFFICIENT_FUNDS"]).await;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }

    // The provider pays every payout and completes every refund the
    // server submitted; each webhook twice, at once.
    let withdrawals = transactions::Entity::find()
        .filter(transactions::Column::Kind.eq(TransactionKind::Withdrawal.as_str()))
        .all(&app.db)
        .await
        .expect("withdrawals");
    let refunds = transactions::Entity::find()
        .filter(transactions::Column::Kind.eq(TransactionKind::Refund.as_str()))
        .all(&app.db)
        .await
        .expect("refunds");
    let payouts = stripe.wait_for_payouts(withdrawals.len()).await;
    let submitted = if refunds.is_empty() {
        Vec::new()
    } else {
        stripe.wait_for_refunds(refunds.len()).await
    };
    let mut webhooks = Vec::new();
    for (i, p) in payouts.iter().enumerate() {
        webhooks.push(payout_event(
            &format!("evt_po_{i}"),
            "payout.paid",
            p,
            now(),
        ));
    }
    for (i, r) in submitted.iter().enumerate() {
        webhooks.push(refund_event(&format!("evt_re_{i}"), r, "succeeded", now()));
    }
    let mut sends = Vec::new();
    for body in &webhooks {
        let sig = signature(body, now(), &[WEBHOOK_SECRET]);
        let (app, url, body) = (app.clone(), url.clone(), body.clone());
        sends.push(tokio::spawn(async move {
            let (a, b) = tokio::join!(
                deliver(&app.client, &url, &body, &sig),
                deliver(&app.client, &url, &body, &sig)
            );
            let mut outcomes = [a.1["outcome"].to_string(), b.1["outcome"].to_string()];
            outcomes.sort();
            assert_eq!(outcomes, ["\"APPLIED\"", "\"DUPLICATE\""], "{body}");
        }));
    }
    for s in sends {
        s.await.expect("webhook task");
    }

    // Each key moved money once.
    let keys = keys.lock().await;
    for (key, ids) in keys.iter() {
        assert_eq!(ids.len(), 1, "key {key} produced {ids:?}");
    }
    let txs = transactions::Entity::find()
        .all(&app.db)
        .await
        .expect("txs");
    let keyed_kinds = [
        TransactionKind::Transfer,
        TransactionKind::Withdrawal,
        TransactionKind::Exchange,
        TransactionKind::Reversal,
        TransactionKind::Refund,
    ];
    let keyed = txs
        .iter()
        .filter(|t| keyed_kinds.iter().any(|k| k.as_str() == t.kind))
        .count();
    assert_eq!(keyed, keys.len(), "one transaction per successful key");
    // Each webhook applied once: one payment-log row per event, one credit per card deposit.
    let log = payment_events::Entity::find()
        .all(&app.db)
        .await
        .expect("log");
    assert_eq!(log.len(), events_sent.lock().await.len() + webhooks.len());
    let intents = payment_intents::Entity::find()
        .all(&app.db)
        .await
        .expect("intents");
    let credited: HashSet<_> = intents.iter().filter_map(|i| i.transaction_id).collect();
    assert_eq!(credited.len(), events_sent.lock().await.len());
    // Every payout and refund reached its end.
    for t in &txs {
        if t.kind == TransactionKind::Withdrawal.as_str()
            || t.kind == TransactionKind::Refund.as_str()
        {
            assert_eq!(
                t.status,
                TransactionStatus::Completed.as_str(),
                "{} {}",
                t.kind,
                t.id
            );
        }
    }
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for t in &txs {
        *kinds.entry(t.kind.as_str()).or_default() += 1;
    }
    println!("money race moved: {kinds:?}");
    for kind in [
        "DEPOSIT",
        "TRANSFER",
        "EXCHANGE",
        "WITHDRAWAL",
        "REVERSAL",
        "REFUND",
    ] {
        assert!(
            kinds.contains_key(kind),
            "the race must include {kind}: {kinds:?}"
        );
    }
    assert_balanced(&app.db).await;
}
