//! Idempotency keys: replay, reuse with another payload, in flight, expiry.

use chrono::Duration;
use domain::MoneyCommand;
use domain::{IdempotencyKey, TransactionKind};
use entity::entities::{idempotency_keys, transactions};
use entity::store::idempotency::{self, Claim, KeyPolicy};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use crate::support::{Backend, TestApp, data, error_code, on_both};

async fn deposits(app: &TestApp) -> u64 {
    transactions::Entity::find()
        .filter(transactions::Column::Kind.eq(TransactionKind::Deposit.as_str()))
        .count(&app.db)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_same_key_and_input_replays_the_first_result_and_moves_money_once() {
    on_both(|app| async move {
        let s = app.register("replay@example.com").await;
        let w = app.open_wallet(&s, "USD").await;
        let first = app.deposit(&s, &w, "10", "same").await;
        // "10.00" is the same amount as "10": the same request.
        let again = app.deposit(&s, &w, "10.00", "same").await;
        assert_eq!(data(&first, "deposit")["replayed"], false);
        assert_eq!(data(&again, "deposit")["replayed"], true);
        assert_eq!(
            data(&again, "deposit")["transaction"],
            data(&first, "deposit")["transaction"]
        );
        assert_eq!(data(&again, "deposit")["wallet"]["balance"], "10.00");
        assert_eq!(deposits(&app).await, 1);
        let w_now = app.wallet(&s, &w).await;
        assert_eq!(data(&w_now, "wallet")["balance"], "10.00");

        // Another amount under the same key is an error and moves nothing.
        let other = app.deposit(&s, &w, "11", "same").await;
        assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED");
        // So is another operation under the same key.
        let withdraw = app.withdraw(&s, &w, "10", "same").await;
        assert_eq!(error_code(&withdraw), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(deposits(&app).await, 1);

        // Keys belong to users: another user may use the same string.
        let t = app.register("other@example.com").await;
        let tw = app.open_wallet(&t, "USD").await;
        assert_eq!(
            data(&app.deposit(&t, &tw, "10", "same").await, "deposit")["replayed"],
            false
        );
        assert_eq!(deposits(&app).await, 2);
    })
    .await;
}

#[tokio::test]
async fn a_key_still_in_flight_is_a_conflict_until_its_lease_expires() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("inflight@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let user = Uuid::parse_str(&s.user_id).expect("uuid");
    let cmd = MoneyCommand::Deposit {
        wallet_id: Uuid::parse_str(&w).expect("uuid"),
        amount: Decimal::from(5),
    };
    let key = IdempotencyKey::parse("busy").expect("key");
    // Another request holds the key (same input) and has not finished.
    let held = idempotency::claim(
        &app.db,
        user,
        &key,
        cmd.operation(),
        &cmd.fingerprint(),
        KeyPolicy {
            retention: Duration::hours(24),
            lease: Duration::seconds(30),
        },
    )
    .await
    .expect("claim");
    assert!(matches!(held, Claim::Fresh(_)));
    let body = app.deposit(&s, &w, "5", "busy").await;
    assert_eq!(error_code(&body), "IDEMPOTENCY_KEY_IN_USE");
    assert_eq!(deposits(&app).await, 0);

    // A holder that crashed: its lease ran out, so the key can be taken over.
    let crashed = IdempotencyKey::parse("crashed").expect("key");
    idempotency::claim(
        &app.db,
        user,
        &crashed,
        cmd.operation(),
        &cmd.fingerprint(),
        KeyPolicy {
            retention: Duration::hours(24),
            lease: Duration::seconds(-1),
        },
    )
    .await
    .expect("claim");
    let body = app.deposit(&s, &w, "5", "crashed").await;
    assert_eq!(data(&body, "deposit")["replayed"], false);
    assert_eq!(deposits(&app).await, 1);
}

#[tokio::test]
async fn identical_requests_racing_move_money_once() {
    let app = std::sync::Arc::new(TestApp::spawn(Backend::Postgres).await);
    let s = app.register("race@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (app, s, w) = (app.clone(), s.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            app.deposit(&s, &w, "7", "racing").await
        }));
    }
    let mut tx_ids = std::collections::HashSet::new();
    for t in tasks {
        let body = t.await.expect("task");
        match body["data"]["deposit"]["transaction"]["id"].as_str() {
            Some(id) => {
                tx_ids.insert(id.to_owned());
            }
            None => assert_eq!(error_code(&body), "IDEMPOTENCY_KEY_IN_USE", "{body}"),
        }
    }
    assert_eq!(tx_ids.len(), 1, "every success shows the same transaction");
    assert_eq!(deposits(&app).await, 1);
    let bal = app.wallet(&s, &w).await;
    assert_eq!(data(&bal, "wallet")["balance"], "7.00");
}

#[tokio::test]
async fn a_refused_request_does_not_burn_its_key() {
    on_both(|app| async move {
        let a = app.register("broke@example.com").await;
        let b = app.register("payee@example.com").await;
        let aw = app.open_wallet(&a, "USD").await;
        app.open_wallet(&b, "USD").await;
        let input = json!({ "fromWalletId": aw, "toEmail": "payee@example.com", "amount": "5" });
        let refused = app.transfer(&a, input.clone(), "pay-1").await;
        assert_eq!(error_code(&refused), "INSUFFICIENT_FUNDS");
        app.deposit(&a, &aw, "5", "top-up").await;
        let ok = app.transfer(&a, input, "pay-1").await;
        assert_eq!(data(&ok, "transfer")["replayed"], false);
        assert_eq!(data(&ok, "transfer")["wallet"]["balance"], "0.00");
    })
    .await;
}

#[tokio::test]
async fn keys_are_kept_for_their_retention_and_purged_after() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("purge@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    app.deposit(&s, &w, "1", "fresh").await;
    let user = Uuid::parse_str(&s.user_id).expect("uuid");
    // A completed key whose retention has already passed.
    let cmd = MoneyCommand::Deposit {
        wallet_id: Uuid::parse_str(&w).expect("uuid"),
        amount: Decimal::from(2),
    };
    entity::store::payments::execute(
        &app.db,
        user,
        &IdempotencyKey::parse("old").expect("key"),
        &cmd,
        KeyPolicy {
            retention: Duration::seconds(-1),
            lease: Duration::seconds(30),
        },
        entity::store::payments::Checks {
            limits: &domain::limits::TierLimits::uniform(domain::limits::Limit {
                per_transaction: Decimal::from(100),
                daily: Decimal::from(100),
            }),
            risk: entity::store::risk::RiskContext {
                rules: &domain::risk::RiskRules::default(),
                session_id: None,
            },
            step_up: None,
        },
    )
    .await
    .expect("execute");
    // A claim abandoned by a cancelled request, past retention and lease.
    idempotency::claim(
        &app.db,
        user,
        &IdempotencyKey::parse("abandoned").expect("key"),
        cmd.operation(),
        &cmd.fingerprint(),
        KeyPolicy {
            retention: Duration::seconds(-1),
            lease: Duration::seconds(-1),
        },
    )
    .await
    .expect("claim");
    let purged = idempotency::purge_expired(&app.db, 100)
        .await
        .expect("purge");
    assert_eq!(purged, 2);
    let left: Vec<String> = idempotency_keys::Entity::find()
        .all(&app.db)
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(left, ["fresh"], "the key inside its 24 h retention stays");
    // The fresh key still replays.
    assert_eq!(
        data(&app.deposit(&s, &w, "1", "fresh").await, "deposit")["replayed"],
        true
    );
}

#[tokio::test]
async fn a_movement_in_flight_holds_its_key_and_one_whose_connection_died_frees_it_at_once() {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("held@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let user = Uuid::parse_str(&s.user_id).expect("uuid");
    let cmd = MoneyCommand::Deposit {
        wallet_id: Uuid::parse_str(&w).expect("uuid"),
        amount: Decimal::from(4),
    };
    let key = IdempotencyKey::parse("held").expect("key");
    let policy = KeyPolicy {
        retention: Duration::hours(24),
        lease: Duration::seconds(30),
    };
    // A request whose movement has held the key and not committed yet.
    let txn = app.db.begin().await.expect("begin");
    let holding = idempotency::hold(
        &txn,
        user,
        &key,
        cmd.operation(),
        &cmd.fingerprint(),
        policy,
    )
    .await
    .expect("hold");
    assert!(matches!(holding, idempotency::Holding::Fresh(_)));
    let busy = app.deposit(&s, &w, "4", "held").await;
    assert_eq!(error_code(&busy), "IDEMPOTENCY_KEY_IN_USE");
    // Another key of the same user is not held.
    let other = app.deposit(&s, &w, "4", "not-held").await;
    assert_eq!(data(&other, "deposit")["replayed"], false);

    // The holder dies: its connection ends mid-transaction.
    let pid: i32 = txn
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .expect("pid")
        .expect("row")
        .try_get("", "pid")
        .expect("pid");
    app.db
        .execute_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!("SELECT pg_terminate_backend({pid})"),
        ))
        .await
        .expect("terminate");
    drop(txn);
    // No lease to wait out: the retry goes through at once, and once only.
    let retried = app.deposit(&s, &w, "4", "held").await;
    assert_eq!(data(&retried, "deposit")["replayed"], false, "{retried}");
    let again = app.deposit(&s, &w, "4", "held").await;
    assert_eq!(data(&again, "deposit")["replayed"], true);
    assert_eq!(deposits(&app).await, 2);
    assert_eq!(data(&app.wallet(&s, &w).await, "wallet")["balance"], "8.00");
}

#[tokio::test]
async fn a_key_past_its_retention_is_free_for_another_request() {
    on_both(|app| async move {
        let s = app.register("retained@example.com").await;
        let w = app.open_wallet(&s, "USD").await;
        let user = Uuid::parse_str(&s.user_id).expect("uuid");
        let wallet_id = Uuid::parse_str(&w).expect("uuid");
        let limits = domain::limits::TierLimits::uniform(domain::limits::Limit {
            per_transaction: Decimal::from(100),
            daily: Decimal::from(100),
        });
        let rules = domain::risk::RiskRules::default();
        let checks = entity::store::payments::Checks {
            limits: &limits,
            risk: entity::store::risk::RiskContext {
                rules: &rules,
                session_id: None,
            },
            step_up: None,
        };
        let key = IdempotencyKey::parse("reused-later").expect("key");
        let run = |amount: i64, retention| {
            let cmd = MoneyCommand::Deposit {
                wallet_id,
                amount: Decimal::from(amount),
            };
            let db = app.db.clone();
            let key = key.clone();
            async move {
                entity::store::payments::execute(
                    &db,
                    user,
                    &key,
                    &cmd,
                    KeyPolicy {
                        retention,
                        lease: Duration::seconds(30),
                    },
                    checks,
                )
                .await
                .expect("execute")
            }
        };
        // Used with a retention that has already passed...
        assert!(!run(2, Duration::seconds(-1)).await.replayed);
        // ...the key takes another request, which keeps it for its own.
        assert!(!run(3, Duration::hours(24)).await.replayed);
        assert!(run(3, Duration::hours(24)).await.replayed);
        let other = app.deposit(&s, &w, "2", "reused-later").await;
        assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED");
        assert_eq!(deposits(&app).await, 2);
        assert_eq!(data(&app.wallet(&s, &w).await, "wallet")["balance"], "5.00");
    })
    .await;
}

#[tokio::test]
async fn a_completion_that_outlived_its_lease_and_was_taken_over_commits_nothing() {
    use sea_orm::TransactionTrait;
    // The leases of work with a provider's call in it (`startDeposit`).
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("outlived@example.com").await;
    let user = Uuid::parse_str(&s.user_id).expect("uuid");
    let key = IdempotencyKey::parse("slow").expect("key");
    let fingerprint = domain::Fingerprint::of("start_deposit", &json!({ "amount": "3" }));
    let policy = |lease| KeyPolicy {
        retention: Duration::hours(24),
        lease,
    };
    let claim = |lease| {
        idempotency::claim(
            &app.db,
            user,
            &key,
            "start_deposit",
            &fingerprint,
            policy(lease),
        )
    };
    // The first holder's lease has run out before its work commits...
    let Claim::Fresh(slow) = claim(Duration::seconds(-1)).await.expect("claim") else {
        panic!("the key was new");
    };
    // ...and a retry took the key over.
    let Claim::Fresh(retry) = claim(Duration::seconds(30)).await.expect("takeover") else {
        panic!("the expired claim is taken over, not replayed");
    };
    let txn = app.db.begin().await.expect("begin");
    let late = idempotency::complete(&txn, &slow, json!({ "by": "slow" })).await;
    let err = late.expect_err("the outlived work must not complete the key");
    assert!(
        matches!(&err, entity::StoreError::Domain(e) if e.code == domain::ErrorCode::IdempotencyKeyInUse),
        "{err}"
    );
    drop(txn);
    let txn = app.db.begin().await.expect("begin");
    idempotency::complete(&txn, &retry, json!({ "by": "retry" }))
        .await
        .expect("the new holder completes the key");
    txn.commit().await.expect("commit");
    // The key now replays the new holder's result.
    let Claim::Replay(stored) = claim(Duration::seconds(30)).await.expect("replay") else {
        panic!("the key completed");
    };
    assert_eq!(stored, json!({ "by": "retry" }));
}
