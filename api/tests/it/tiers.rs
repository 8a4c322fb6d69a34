//! Tier limits: per transaction and per rolling day, by KYC level, checked
//! inside the money transaction.

use domain::limits::TierLimits;
use serde_json::{Value, json};

use crate::support::*;

/// Unverified: deposits 500 a time and 1000 a day, transfers 100 and 250,
/// no withdrawals. Level 1: everything 1000 a time and 3000 a day.
fn limits() -> TierLimits {
    TierLimits::uniform(domain::limits::Limit {
        per_transaction: 0.into(),
        daily: 0.into(),
    })
    .with_overrides("0:DEPOSIT:*=500/1000,0:TRANSFER:*=100/250,1:*:*=1000/3000")
    .expect("limits")
}

fn extension<'a>(body: &'a Value, key: &str) -> &'a Value {
    &body["errors"][0]["extensions"][key]
}

async fn approve(app: &TestApp, user_id: &str) {
    let officer = app.admin("officer@example.com").await;
    for decision in ["START_REVIEW", "APPROVE"] {
        let body = app
            .gql(
                Some(&officer.token),
                "mutation($u: ID!, $d: KycDecision!) { reviewKyc(userId: $u, decision: $d) { kycLevel } }",
                json!({ "u": user_id, "d": decision }),
            )
            .await;
        data(&body, "reviewKyc");
    }
}

const LIMITS: &str =
    "{ me { kycLevel limits { currency kind perTransaction dailyLimit dailyRemaining } } }";

fn limit_of<'a>(me: &'a Value, kind: &str) -> &'a Value {
    me["data"]["me"]["limits"]
        .as_array()
        .expect("limits")
        .iter()
        .find(|l| l["kind"] == kind && l["currency"] == "USD")
        .expect("USD limit")
}

#[tokio::test]
async fn limits_hold_at_the_boundary_per_transaction_and_per_day_by_level() {
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let app = TestApp::spawn_with(backend, |s| s.kyc.limits = limits()).await;
        let s = app.register("tiers@example.com").await;
        let w = app.open_wallet(&s, "USD").await;

        // Unverified: one cent over the single limit asks for verification,
        // with the limits in extensions.
        let over = app.deposit(&s, &w, "500.01", "d0").await;
        assert_eq!(error_code(&over), "KYC_REQUIRED", "{over}");
        assert_eq!(extension(&over, "perTransaction"), "500");
        assert_eq!(extension(&over, "dailyRemaining"), "1000");
        assert_eq!(extension(&over, "kind"), "DEPOSIT");
        assert_eq!(extension(&over, "currency"), "USD");
        // Exactly at the limits, twice: the day is used up.
        data(&app.deposit(&s, &w, "500", "d1").await, "deposit");
        data(&app.deposit(&s, &w, "500.00", "d2").await, "deposit");
        let me = app.gql(Some(&s.token), LIMITS, json!({})).await;
        let deposit = limit_of(&me, "DEPOSIT");
        assert_eq!(deposit["dailyRemaining"], "0.00");
        assert_eq!(deposit["dailyLimit"], "1000.00");
        assert_eq!(limit_of(&me, "WITHDRAWAL")["perTransaction"], "0.00");
        let day = app.deposit(&s, &w, "0.01", "d3").await;
        assert_eq!(error_code(&day), "KYC_REQUIRED", "{day}");
        assert_eq!(extension(&day, "dailyRemaining"), "0");
        // A refused request moved nothing and may be retried under its key.
        let wallet = app.wallet(&s, &w).await;
        assert_eq!(data(&wallet, "wallet")["balance"], "1000.00");
        // A replay of a request made within the limits still replays.
        let replay = app.deposit(&s, &w, "500", "d1").await;
        assert_eq!(data(&replay, "deposit")["replayed"], true);
        let out = app.withdraw(&s, &w, "1", "w0").await;
        assert_eq!(error_code(&out), "KYC_REQUIRED", "{out}");

        // Level 1: the window still counts the 1000 deposited today.
        approve(&app, &s.user_id).await;
        let over = app.deposit(&s, &w, "1000.01", "d4").await;
        assert_eq!(error_code(&over), "LIMIT_EXCEEDED", "{over}");
        assert_eq!(extension(&over, "perTransaction"), "1000");
        assert_eq!(extension(&over, "dailyRemaining"), "2000");
        data(&app.deposit(&s, &w, "1000", "d5").await, "deposit");
        data(&app.deposit(&s, &w, "1000", "d6").await, "deposit");
        let day = app.deposit(&s, &w, "0.01", "d7").await;
        assert_eq!(error_code(&day), "LIMIT_EXCEEDED", "{day}");
        assert_eq!(extension(&day, "dailyLimit"), "3000");
        assert_eq!(extension(&day, "dailyRemaining"), "0");
        // Withdrawals have their own allowance; a failed one gives it back.
        let admin = app.admin("settler@example.com").await;
        let held = app.withdraw(&s, &w, "1000", "w1").await;
        let tx = data(&held, "withdraw")["transaction"]["id"]
            .as_str()
            .expect("tx")
            .to_owned();
        let me = app.gql(Some(&s.token), LIMITS, json!({})).await;
        assert_eq!(me["data"]["me"]["kycLevel"], 1);
        assert_eq!(limit_of(&me, "WITHDRAWAL")["dailyRemaining"], "2000.00");
        data(&app.settle(&admin, &tx, "FAILED").await, "settleWithdrawal");
        let me = app.gql(Some(&s.token), LIMITS, json!({})).await;
        assert_eq!(limit_of(&me, "WITHDRAWAL")["dailyRemaining"], "3000.00");
    }
}

#[tokio::test]
async fn concurrent_transfers_cannot_pass_the_daily_limit_together() {
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.kyc.limits = limits()).await;
    let sender = app.register("burst@example.com").await;
    let receiver = app.register("sink@example.com").await;
    let w = app.open_wallet(&sender, "USD").await;
    app.open_wallet(&receiver, "USD").await;
    data(&app.deposit(&sender, &w, "500", "fund").await, "deposit");
    // Twelve transfers of 30 at once against a day of 250: eight fit.
    let results = futures_util::future::join_all((0..12).map(|i| {
        let (app, sender, w) = (&app, &sender, &w);
        async move {
            app.transfer(
                sender,
                json!({ "fromWalletId": w, "toEmail": "sink@example.com", "amount": "30" }),
                &format!("t{i}"),
            )
            .await
        }
    }))
    .await;
    let passed = results
        .iter()
        .filter(|r| r["data"]["transfer"].is_object())
        .count();
    let refused: Vec<String> = results
        .iter()
        .filter(|r| r["data"]["transfer"].is_null())
        .map(error_code)
        .collect();
    assert_eq!(passed, 8, "{results:?}");
    assert!(refused.iter().all(|c| c == "KYC_REQUIRED"), "{refused:?}");
    let wallet = app.wallet(&sender, &w).await;
    assert_eq!(data(&wallet, "wallet")["balance"], "260.00");
}

/// The rolling day counts exactly what was moved since this time yesterday:
/// on PostgreSQL the whole hours come from the hourly buckets and the hour
/// the window starts in from the movements themselves, so movements just
/// inside and just outside that edge, and ones that stopped counting, are
/// told apart; SQLite sums the movements.
#[tokio::test]
async fn the_rolling_day_counts_exactly_the_movements_inside_it() {
    use chrono::{Duration, Utc};
    use domain::limits::{Limit, TierLimits};
    use domain::{TransactionKind, TransactionStatus};
    use entity::entities::transactions;
    use rust_decimal::Decimal;
    use sea_orm::{ActiveValue::Set, EntityTrait};
    crate::support::on_both(|app| async move {
        let s = app.register("rolling@example.com").await;
        let w = app.open_wallet(&s, "USD").await;
        let user = uuid::Uuid::parse_str(&s.user_id).expect("uuid");
        let wallet = uuid::Uuid::parse_str(&w).expect("uuid");
        let since = Utc::now() - Duration::hours(24);
        // (age relative to the window's start, amount, status)
        let moved = [
            (Duration::minutes(-1), 1, TransactionStatus::Completed), // just outside
            (Duration::minutes(1), 2, TransactionStatus::Completed),  // the edge hour
            (Duration::minutes(59), 4, TransactionStatus::Pending),
            (Duration::hours(23), 8, TransactionStatus::Held),
            (Duration::hours(22), 16, TransactionStatus::Failed), // gave it back
        ];
        for (offset, amount, status) in moved {
            let at = since + offset;
            transactions::Entity::insert(transactions::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                kind: Set(TransactionKind::Transfer.as_str().to_owned()),
                status: Set(status.as_str().to_owned()),
                amount: Set(entity::Money(Decimal::from(amount))),
                currency: Set("USD".to_owned()),
                from_wallet_id: Set(Some(wallet)),
                to_wallet_id: Set(None),
                memo: Set(None),
                destination: Set(None),
                initiated_by: Set(user),
                created_at: Set(at),
                updated_at: Set(at),
                original_id: Set(None),
                risk_score: Set(None),
                risk_rules: Set(None),
            })
            .exec_without_returning(&app.db)
            .await
            .expect("movement");
        }
        let limits = TierLimits::uniform(Limit {
            per_transaction: Decimal::from(1_000),
            daily: Decimal::from(1_000),
        });
        let wallets = entity::store::wallets::list_for_user(&app.db, user)
            .await
            .expect("wallets");
        let allowances = entity::store::limits::allowances(&app.db, &limits, user, &wallets)
            .await
            .expect("allowances");
        let transfer = allowances
            .iter()
            .find(|a| a.kind == TransactionKind::Transfer)
            .expect("the transfer allowance");
        assert_eq!(
            transfer.daily_remaining,
            Decimal::from(1_000 - 2 - 4 - 8),
            "the window holds the 2, 4 and 8, not the 1 from before it nor the failed 16"
        );
    })
    .await;
}
