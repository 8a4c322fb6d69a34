//! Many concurrent transfers, withdrawals, settlements and duplicate retries on
//! PostgreSQL: money is conserved, balances equal their ledgers, and each
//! idempotency key moves money once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use domain::{TransactionKind, TransactionStatus};
use entity::entities::{ledger_entries, transactions, wallets};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::support::{Backend, Session, TestApp, error_code};

const USERS: usize = 4;
const TASKS: usize = 60;
const OPS_PER_TASK: usize = 6;

#[derive(Default)]
struct Seen {
    /// key -> transaction ids returned for it
    by_key: HashMap<String, HashSet<String>>,
    /// pending withdrawals to settle
    pending: Vec<String>,
}

fn record(seen: &mut Seen, key: &str, body: &Value, field: &str) -> bool {
    if let Some(id) = body["data"][field]["transaction"]["id"].as_str() {
        seen.by_key
            .entry(key.to_owned())
            .or_default()
            .insert(id.to_owned());
        return true;
    }
    let code = error_code(body);
    assert!(
        ["INSUFFICIENT_FUNDS", "IDEMPOTENCY_KEY_IN_USE"].contains(&code.as_str()),
        "unexpected refusal {code}: {body}"
    );
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_with_retries_conserve_money_and_move_each_key_once() {
    let app = Arc::new(TestApp::spawn(Backend::Postgres).await);
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("concurrency seed: {seed} (rerun with SEED={seed})");
    let admin = app.admin("settler@example.com").await;
    let mut users: Vec<(Session, String)> = Vec::new();
    for i in 0..USERS {
        let s = app.register(&format!("user{i}@example.com")).await;
        let w = app.open_wallet(&s, "USD").await;
        let body = app.deposit(&s, &w, "500.00", &format!("seed-{i}")).await;
        assert!(body["data"]["deposit"].is_object(), "{body}");
        users.push((s, w));
    }
    let users = Arc::new(users);
    let seen = Arc::new(Mutex::new(Seen::default()));

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (app, users, seen, admin) = (app.clone(), users.clone(), seen.clone(), admin.clone());
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(t as u64));
        tasks.push(tokio::spawn(async move {
            for op in 0..OPS_PER_TASK {
                let from = rng.random_range(0..USERS);
                let mut to = rng.random_range(0..USERS - 1);
                if to >= from {
                    to += 1;
                }
                let cents: i64 = rng.random_range(1..=4_000);
                let amount = Decimal::new(cents, 2).to_string();
                let key = format!("t{t}-op{op}");
                let (sender, from_wallet) = &users[from];
                let roll: u8 = rng.random_range(0..10);
                if roll == 0 {
                    // A withdrawal, settled later by the admin.
                    let body = app.withdraw(sender, from_wallet, &amount, &key).await;
                    let mut s = seen.lock().await;
                    if record(&mut s, &key, &body, "withdraw")
                        && let Some(id) = body["data"]["withdraw"]["transaction"]["id"].as_str()
                    {
                        s.pending.push(id.to_owned());
                    }
                    continue;
                }
                let input = if roll.is_multiple_of(2) {
                    json!({ "fromWalletId": from_wallet, "toWalletId": users[to].1, "amount": amount })
                } else {
                    json!({ "fromWalletId": from_wallet, "toEmail": users[to].0.email, "amount": amount })
                };
                if roll < 4 {
                    // The client retries at once, racing its own first attempt.
                    let (a, b) = tokio::join!(
                        app.transfer(sender, input.clone(), &key),
                        app.transfer(sender, input.clone(), &key)
                    );
                    let mut s = seen.lock().await;
                    record(&mut s, &key, &a, "transfer");
                    record(&mut s, &key, &b, "transfer");
                } else {
                    let body = app.transfer(sender, input.clone(), &key).await;
                    let ok = record(&mut *seen.lock().await, &key, &body, "transfer");
                    if ok && roll == 9 {
                        // A later retry replays the stored result.
                        let again = app.transfer(sender, input, &key).await;
                        assert_eq!(again["data"]["transfer"]["replayed"], true, "{again}");
                        record(&mut *seen.lock().await, &key, &again, "transfer");
                    }
                }
                if op % 3 == 2 {
                    let pending = seen.lock().await.pending.pop();
                    if let Some(id) = pending {
                        let outcome = if rng.random_bool(0.5) { "COMPLETED" } else { "FAILED" };
                        let body = app.settle(&admin, &id, outcome).await;
                        assert!(body["data"]["settleWithdrawal"].is_object(), "{body}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }

    // Each key moved money once: one transaction id per key, one row per key.
    let seen = seen.lock().await;
    for (key, ids) in &seen.by_key {
        assert_eq!(ids.len(), 1, "key {key} produced {ids:?}");
    }
    let txs = transactions::Entity::find()
        .all(&app.db)
        .await
        .expect("transactions");
    let by_kind = |k: TransactionKind| txs.iter().filter(|t| t.kind == k.as_str()).count();
    let keyed = seen.by_key.len();
    assert_eq!(
        by_kind(TransactionKind::Transfer) + by_kind(TransactionKind::Withdrawal),
        keyed,
        "one transaction per successful key"
    );
    assert!(
        by_kind(TransactionKind::Transfer) > 100,
        "the test must actually move money"
    );

    // Conservation: balances = deposits - settled withdrawals.
    let deposits: Decimal = txs
        .iter()
        .filter(|t| t.kind == TransactionKind::Deposit.as_str())
        .map(|t| t.amount.0)
        .sum();
    let paid_out: Decimal = txs
        .iter()
        .filter(|t| {
            t.kind == TransactionKind::Withdrawal.as_str()
                && t.status == TransactionStatus::Completed.as_str()
        })
        .map(|t| t.amount.0)
        .sum();
    let all_wallets = wallets::Entity::find().all(&app.db).await.expect("wallets");
    let total: Decimal = all_wallets.iter().map(|w| w.balance.0).sum();
    assert_eq!(total, deposits - paid_out);
    assert_eq!(deposits, Decimal::from(500 * USERS as i64));

    // Every wallet equals its ledger; no available balance is negative.
    for w in &all_wallets {
        let (available, held) = entity::store::payments::ledger_balances(&app.db, w.id)
            .await
            .expect("ledger");
        assert_eq!(available, w.available.0.normalize(), "wallet {}", w.id);
        assert_eq!(held, w.frozen.0.normalize(), "wallet {}", w.id);
        assert!(w.available.0 >= Decimal::ZERO);
        assert_eq!(w.balance.0, w.available.0 + w.frozen.0);
    }
    // Every posting balances, so the whole ledger sums to zero.
    let lines = ledger_entries::Entity::find()
        .all(&app.db)
        .await
        .expect("ledger lines");
    let mut per_tx: HashMap<uuid::Uuid, Decimal> = HashMap::new();
    for l in &lines {
        *per_tx.entry(l.transaction_id).or_default() += l.amount.0;
    }
    assert!(
        per_tx.values().all(Decimal::is_zero),
        "an unbalanced posting"
    );
    assert_eq!(per_tx.len(), txs.len());
}

/// The relay plans deliveries for many users at once, and each delivery it
/// inserts takes a `FOR KEY SHARE` lock on its user's row (the foreign key).
/// A transfer's events lock both users' rows too: they must not conflict,
/// or transfers wait for (and, in the wrong order, deadlock with) the relay.
#[tokio::test]
async fn a_transfer_does_not_wait_for_key_share_locks_on_its_users() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    let app = TestApp::spawn(Backend::Postgres).await;
    let alice = app.register("keyshare-alice@example.com").await;
    let bob = app.register("keyshare-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "10", "fund").await;
    // What the relay's insert of a delivery does to both users' rows, held
    // open in a transaction of its own.
    let relay = app.db.begin().await.expect("begin");
    for user in [&alice.user_id, &bob.user_id] {
        relay
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT id FROM users WHERE id = $1::uuid FOR KEY SHARE",
                [user.as_str().into()],
            ))
            .await
            .expect("key share");
    }
    let input = json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "1.00" });
    // Seconds, not milliseconds: only a transfer blocked behind the lock
    // (which is held until the end of this test) runs out of it.
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        app.transfer(&alice, input, "while-relay-plans"),
    )
    .await
    .expect("the transfer waited for the relay's KEY SHARE locks");
    assert!(
        sent["data"]["transfer"]["transaction"]["id"].is_string(),
        "{sent}"
    );
    relay.rollback().await.expect("rollback");
}

/// A transfer the database picks to break a deadlock is rolled back whole;
/// it runs again under its key instead of failing a valid request. Here
/// another transaction holds the recipient's user row (as the notifier does
/// to number a notice) and then asks for the sender's wallet, which the
/// transfer holds while it waits for that user row.
#[tokio::test]
async fn a_transfer_that_loses_a_deadlock_runs_again_and_moves_the_money_once() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
    let app = TestApp::spawn(Backend::Postgres).await;
    let alice = app.register("deadlock-alice@example.com").await;
    let bob = app.register("deadlock-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "10", "fund").await;
    let other = app.db.begin().await.expect("begin");
    let run = |sql: &'static str, id: &str| {
        Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, [id.into()])
    };
    // This side checks for deadlocks late, so the transfer (waiting first,
    // at the server's one second) is the one rolled back.
    other
        .execute_unprepared("SET LOCAL deadlock_timeout = '20s'")
        .await
        .expect("deadlock_timeout");
    other
        .execute_raw(run(
            "SELECT id FROM users WHERE id = $1::uuid FOR NO KEY UPDATE",
            &bob.user_id,
        ))
        .await
        .expect("lock bob");
    let input = json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "1.00" });
    let transfer = app.transfer(&alice, input, "loses-a-deadlock");
    let cross = async {
        // Once the transfer waits for bob's row, it holds both wallets.
        let waiting = Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        );
        for _ in 0..500 {
            let n: i64 = app
                .db
                .query_one_raw(waiting.clone())
                .await
                .expect("pg_stat_activity")
                .expect("a row")
                .try_get("", "n")
                .expect("n");
            if n > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        other
            .execute_raw(run(
                "SELECT id FROM wallets WHERE id = $1::uuid FOR UPDATE",
                &aw,
            ))
            .await
            .expect("the other side got the sender's wallet once the transfer rolled back");
        other.rollback().await.expect("rollback");
    };
    let (sent, ()) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::join!(transfer, cross)
    })
    .await
    .expect("the deadlock was not resolved");
    assert!(
        sent["data"]["transfer"]["transaction"]["id"].is_string(),
        "{sent}"
    );
    let alice_wallet = app.wallet(&alice, &aw).await;
    assert_eq!(
        alice_wallet["data"]["wallet"]["balance"], "9.00",
        "{alice_wallet}"
    );
    let moved = transactions::Entity::find()
        .all(&app.db)
        .await
        .expect("transactions")
        .into_iter()
        .filter(|t| t.kind == TransactionKind::Transfer.as_str())
        .count();
    assert_eq!(moved, 1, "the transfer was booked once");
    crate::support::books::assert_balanced(&app.db).await;
}
