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
async fn work_that_outlived_its_lease_and_was_taken_over_commits_nothing() {
    use entity::store::payments::{self, Checks, Claimed};
    let app = TestApp::spawn(Backend::Postgres).await;
    let s = app.register("outlived@example.com").await;
    let w = app.open_wallet(&s, "USD").await;
    let user = Uuid::parse_str(&s.user_id).expect("uuid");
    let cmd = MoneyCommand::Deposit {
        wallet_id: Uuid::parse_str(&w).expect("uuid"),
        amount: Decimal::from(3),
    };
    let key = IdempotencyKey::parse("slow").expect("key");
    let limits = domain::limits::TierLimits::uniform(domain::limits::Limit {
        per_transaction: Decimal::from(100),
        daily: Decimal::from(100),
    });
    let rules = domain::risk::RiskRules::default();
    let checks = || Checks {
        limits: &limits,
        risk: entity::store::risk::RiskContext {
            rules: &rules,
            session_id: None,
        },
    };
    let policy = |lease| KeyPolicy {
        retention: Duration::hours(24),
        lease,
    };
    // The first holder's lease has run out before its work commits...
    let Claimed::Fresh(slow) =
        payments::claim(&app.db, user, &key, &cmd, policy(Duration::seconds(-1)))
            .await
            .expect("claim")
    else {
        panic!("the key was new");
    };
    // ...and a retry took the key over.
    let Claimed::Fresh(retry) =
        payments::claim(&app.db, user, &key, &cmd, policy(Duration::seconds(30)))
            .await
            .expect("takeover")
    else {
        panic!("the expired claim is taken over, not replayed");
    };
    let late = payments::FreshClaim::run(slow, &app.db, user, &cmd, checks()).await;
    let err = late.expect_err("the outlived work must not commit");
    assert!(
        matches!(&err, entity::StoreError::Domain(e) if e.code == domain::ErrorCode::IdempotencyKeyInUse),
        "{err}"
    );
    assert_eq!(deposits(&app).await, 0, "the late work rolled back");
    let done = retry
        .run(&app.db, user, &cmd, checks())
        .await
        .expect("the new holder's work commits");
    assert!(!done.replayed);
    assert_eq!(deposits(&app).await, 1);
    // The key now replays the new holder's result.
    assert_eq!(
        data(&app.deposit(&s, &w, "3", "slow").await, "deposit")["replayed"],
        true
    );
}
