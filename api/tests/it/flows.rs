//! The user journeys of the apps, on PostgreSQL and on the embedded SQLite.

use entity::entities::{audit_log, outbox_events};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use crate::support::{data, error_code, on_both};

#[tokio::test]
async fn a_new_user_registers_deposits_and_pays_a_second_user_who_sees_it() {
    on_both(|app| async move {
        let alice = app.register("alice@example.com").await;
        let bob = app.register("bob@example.com").await;
        let a_usd = app.open_wallet(&alice, "usd").await;
        let b_usd = app.open_wallet(&bob, "USD").await;
        // Opening again returns the same wallet.
        assert_eq!(app.open_wallet(&alice, "USD").await, a_usd);

        let dep = app.deposit(&alice, &a_usd, "100.00", "dep-1").await;
        let dep = data(&dep, "deposit");
        assert_eq!(dep["transaction"]["kind"], "DEPOSIT");
        assert_eq!(dep["transaction"]["status"], "COMPLETED");
        assert_eq!(dep["wallet"]["balance"], "100.00");

        let t = app
            .transfer(
                &alice,
                json!({ "fromWalletId": a_usd, "toEmail": "BOB@example.com", "amount": "30.25", "memo": "lunch" }),
                "t-1",
            )
            .await;
        let t = data(&t, "transfer");
        assert_eq!(t["transaction"]["kind"], "TRANSFER");
        assert_eq!(t["transaction"]["toWalletId"], json!(b_usd));
        assert_eq!(t["transaction"]["memo"], "lunch");
        assert_eq!(t["wallet"]["balance"], "69.75");
        assert_eq!(t["wallet"]["id"], json!(a_usd));

        let mine = app
            .gql(
                Some(&bob.token),
                "{ me { email wallets { id currency balance availableBalance } }
                   transactions { edges { node { kind amount fromWalletId toWalletId memo } } } }",
                json!({}),
            )
            .await;
        assert_eq!(data(&mine, "me")["wallets"][0]["balance"], "30.25");
        let edges = data(&mine, "transactions")["edges"].as_array().expect("edges").clone();
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0]["node"]["fromWalletId"], json!(a_usd));

        let history = app
            .gql(Some(&alice.token), "{ transactions { edges { node { kind amount } } } }", json!({}))
            .await;
        let kinds: Vec<&str> = data(&history, "transactions")["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(kinds, ["TRANSFER", "DEPOSIT"], "newest first");

        // The outbox holds, for each user, strictly increasing sequences:
        // balance.updated for both wallets and transaction.received for Bob,
        // committed with the transfer, then the notification the notifier
        // made of it.
        let bob_id = uuid::Uuid::parse_str(&bob.user_id).expect("uuid");
        let mut bob_events = Vec::new();
        for _ in 0..100 {
            bob_events = outbox_events::Entity::find()
                .filter(outbox_events::Column::UserId.eq(bob_id))
                .order_by_asc(outbox_events::Column::Sequence)
                .all(&app.db)
                .await
                .expect("events");
            if bob_events.len() >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let topics: Vec<(&str, i64)> = bob_events.iter().map(|e| (e.topic.as_str(), e.sequence)).collect();
        assert_eq!(
            topics,
            [("balance.updated", 1), ("transaction.received", 2), ("notification.created", 3)]
        );
        assert_eq!(bob_events[0].payload["balance"], "30.25");
        assert_eq!(bob_events[0].payload["delta"], "30.25");
        let audits = audit_log::Entity::find()
            .filter(audit_log::Column::Action.eq("wallet.transfer"))
            .all(&app.db)
            .await
            .expect("audit");
        assert_eq!(audits.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_withdrawal_holds_the_amount_until_an_admin_settles_it() {
    on_both(|app| async move {
        let u = app.register("payout@example.com").await;
        let admin = app.admin("ops@example.com").await;
        let w = app.open_wallet(&u, "EUR").await;
        app.deposit(&u, &w, "50", "d").await;

        let held = app.withdraw(&u, &w, "20", "w1").await;
        let held = data(&held, "withdraw");
        assert_eq!(held["transaction"]["status"], "PENDING");
        assert_eq!(held["wallet"]["balance"], "50.00");
        assert_eq!(held["wallet"]["availableBalance"], "30.00");
        assert_eq!(held["wallet"]["frozenBalance"], "20.00");
        let tx1 = held["transaction"]["id"].as_str().expect("id").to_owned();

        // Held money cannot be spent twice.
        let over = app.withdraw(&u, &w, "30.01", "w-over").await;
        assert_eq!(error_code(&over), "INSUFFICIENT_FUNDS");

        // Only admins settle.
        assert_eq!(
            error_code(&app.settle(&u, &tx1, "COMPLETED").await),
            "FORBIDDEN"
        );

        let done = app.settle(&admin, &tx1, "COMPLETED").await;
        let done = data(&done, "settleWithdrawal");
        assert_eq!(done["transaction"]["status"], "COMPLETED");
        assert_eq!(done["wallet"]["balance"], "30.00");
        assert_eq!(done["wallet"]["frozenBalance"], "0.00");
        // Settling twice is refused.
        assert_eq!(
            error_code(&app.settle(&admin, &tx1, "FAILED").await),
            "BAD_USER_INPUT"
        );

        let held = app.withdraw(&u, &w, "10", "w2").await;
        let tx2 = data(&held, "withdraw")["transaction"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let failed = app.settle(&admin, &tx2, "FAILED").await;
        let failed = data(&failed, "settleWithdrawal");
        assert_eq!(failed["transaction"]["status"], "FAILED");
        assert_eq!(failed["wallet"]["availableBalance"], "30.00");
        assert_eq!(failed["wallet"]["frozenBalance"], "0.00");

        let id = uuid::Uuid::parse_str(&w).expect("uuid");
        let (available, held) = entity::store::payments::ledger_balances(&app.db, id)
            .await
            .expect("ledger");
        assert_eq!(
            (available.to_string(), held.to_string()),
            ("30".to_owned(), "0".to_owned())
        );
    })
    .await;
}

#[tokio::test]
async fn transfers_are_refused_with_contract_codes() {
    on_both(|app| async move {
        let a = app.register("a@example.com").await;
        let b = app.register("b@example.com").await;
        let a_usd = app.open_wallet(&a, "USD").await;
        let a_eur = app.open_wallet(&a, "EUR").await;
        let b_eur = app.open_wallet(&b, "EUR").await;
        app.deposit(&a, &a_usd, "10", "d").await;

        let cases = [
            (
                json!({ "fromWalletId": a_usd, "toWalletId": b_eur, "amount": "1" }),
                "CURRENCY_MISMATCH",
            ),
            (
                json!({ "fromWalletId": a_usd, "toEmail": "b@example.com", "amount": "1" }),
                "NOT_FOUND",
            ),
            (
                json!({ "fromWalletId": a_usd, "toEmail": "nobody@example.com", "amount": "1" }),
                "NOT_FOUND",
            ),
            (
                json!({ "fromWalletId": a_usd, "toWalletId": a_usd, "amount": "1" }),
                "BAD_USER_INPUT",
            ),
            (
                json!({ "fromWalletId": a_usd, "amount": "1" }),
                "BAD_USER_INPUT",
            ),
            (
                json!({ "fromWalletId": a_eur, "toWalletId": b_eur, "amount": "1" }),
                "INSUFFICIENT_FUNDS",
            ),
            (
                json!({ "fromWalletId": "not-a-uuid", "toWalletId": b_eur, "amount": "1" }),
                "BAD_USER_INPUT",
            ),
        ];
        for (i, (input, code)) in cases.into_iter().enumerate() {
            let body = app.transfer(&a, input.clone(), &format!("k{i}")).await;
            assert_eq!(error_code(&body), code, "{input}: {body}");
        }
        let bad_key = app
            .transfer(
                &a,
                json!({ "fromWalletId": a_usd, "toWalletId": b_eur, "amount": "1" }),
                "",
            )
            .await;
        assert_eq!(error_code(&bad_key), "BAD_USER_INPUT");
        let w = app.wallet(&a, &a_usd).await;
        assert_eq!(data(&w, "wallet")["balance"], "10.00", "nothing moved");
    })
    .await;
}

#[tokio::test]
async fn history_pages_are_stable_when_new_transactions_arrive() {
    on_both(|app| async move {
        let u = app.register("pages@example.com").await;
        let w = app.open_wallet(&u, "USD").await;
        for i in 1..=5 {
            app.deposit(&u, &w, &i.to_string(), &format!("d{i}")).await;
        }
        let page = |after: Option<String>| {
            let app = app.clone();
            let token = u.token.clone();
            let w = w.clone();
            async move {
                app.gql(
                    Some(&token),
                    "query($w: ID, $a: String) { transactions(walletId: $w, first: 2, after: $a) {
                        edges { cursor node { amount } } pageInfo { hasNextPage endCursor } } }",
                    json!({ "w": w, "a": after }),
                )
                .await
            }
        };
        let first = page(None).await;
        let amounts = |b: &serde_json::Value| -> Vec<String> {
            data(b, "transactions")["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["amount"].as_str().expect("amount").to_owned())
                .collect()
        };
        assert_eq!(amounts(&first), ["5.00", "4.00"]);
        let cursor = data(&first, "transactions")["pageInfo"]["endCursor"]
            .as_str()
            .expect("cursor")
            .to_owned();
        // A new deposit lands before the next page is read.
        app.deposit(&u, &w, "6", "d6").await;
        let second = page(Some(cursor)).await;
        assert_eq!(amounts(&second), ["3.00", "2.00"]);
        assert_eq!(
            data(&second, "transactions")["pageInfo"]["hasNextPage"],
            true
        );
        let bad = page(Some("garbage".to_owned())).await;
        assert_eq!(error_code(&bad), "BAD_USER_INPUT");

        // A date range that excludes everything.
        let none = app
            .gql(
                Some(&u.token),
                "{ transactions(to: \"2000-01-01T00:00:00Z\") { edges { node { id } } } }",
                json!({}),
            )
            .await;
        assert_eq!(data(&none, "transactions")["edges"], json!([]));
        // From a date on: all six deposits are newer than 2000, none is
        // newer than 3000.
        let since = |from: &str| {
            let app = app.clone();
            let token = u.token.clone();
            let query = format!(
                "{{ transactions(from: \"{from}\", first: 100) {{ edges {{ node {{ id }} }} }} }}"
            );
            async move { app.gql(Some(&token), &query, json!({})).await }
        };
        let all = since("2000-01-01T00:00:00Z").await;
        assert_eq!(
            data(&all, "transactions")["edges"].as_array().map(Vec::len),
            Some(6)
        );
        let later = since("3000-01-01T00:00:00Z").await;
        assert_eq!(data(&later, "transactions")["edges"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn history_merges_every_wallet_and_side_newest_first_once_each() {
    on_both(|app| async move {
        let u = app.register("merged@example.com").await;
        let other = app.register("merged.other@example.com").await;
        let usd = app.open_wallet(&u, "USD").await;
        let eur = app.open_wallet(&u, "EUR").await;
        let other_usd = app.open_wallet(&other, "USD").await;
        let mut expected = Vec::new();
        for i in 1..=3 {
            let d = app.deposit(&u, &usd, &format!("{i}0"), &format!("m-usd-{i}")).await;
            expected.push(data(&d, "deposit")["transaction"]["id"].clone());
            let d = app.deposit(&u, &eur, &format!("{i}"), &format!("m-eur-{i}")).await;
            expected.push(data(&d, "deposit")["transaction"]["id"].clone());
        }
        let their_deposit = app.deposit(&other, &other_usd, "5", "m-other").await;
        let their_deposit = data(&their_deposit, "deposit")["transaction"]["id"].clone();
        let t = app
            .transfer(
                &other,
                json!({ "fromWalletId": other_usd, "toWalletId": usd, "amount": "5" }),
                "m-in",
            )
            .await;
        let incoming = data(&t, "transfer")["transaction"]["id"].clone();
        expected.push(incoming.clone());
        let t = app
            .transfer(
                &u,
                json!({ "fromWalletId": usd, "toWalletId": other_usd, "amount": "1", "memo": "rent" }),
                "m-out",
            )
            .await;
        let outgoing = data(&t, "transfer")["transaction"]["id"].clone();
        expected.push(outgoing.clone());
        // Between two of the user's own wallets: listed once.
        let q = app
            .gql(
                Some(&u.token),
                "mutation($w: ID!) { quoteExchange(fromWalletId: $w, toCurrency: \"EUR\", amount: \"10\") { id } }",
                json!({ "w": usd }),
            )
            .await;
        let x = app
            .gql(
                Some(&u.token),
                "mutation($q: ID!) { exchange(quoteId: $q, idempotencyKey: \"m-x\") { transaction { id } } }",
                json!({ "q": data(&q, "quoteExchange")["id"] }),
            )
            .await;
        expected.push(data(&x, "exchange")["transaction"]["id"].clone());
        expected.reverse();

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let body = app
                .gql(
                    Some(&u.token),
                    "query($a: String) { transactions(first: 3, after: $a) {
                        edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                    json!({ "a": after }),
                )
                .await;
            let page = data(&body, "transactions");
            for e in page["edges"].as_array().expect("edges") {
                seen.push(e["node"]["id"].clone());
            }
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        assert_eq!(seen, expected, "every movement once, newest first, across pages");

        // The home screen's first page (read with the session check) is the
        // page the resolver reads itself when a filter is given.
        for first in [0, 1, 3, 9, 10, 20] {
            let home = app
                .gql(
                    Some(&u.token),
                    "query($n: Int) { me { wallets { id } } transactions(first: $n) {
                        edges { cursor node { id kind amount } } pageInfo { hasNextPage endCursor } } }",
                    json!({ "n": first }),
                )
                .await;
            let filtered = app
                .gql(
                    Some(&u.token),
                    "query($n: Int) { transactions(first: $n, from: \"2000-01-01T00:00:00Z\") {
                        edges { cursor node { id kind amount } } pageInfo { hasNextPage endCursor } } }",
                    json!({ "n": first }),
                )
                .await;
            assert_eq!(
                data(&home, "transactions"),
                data(&filtered, "transactions"),
                "first: {first}"
            );
            assert_eq!(
                data(&home, "transactions")["edges"].as_array().map(Vec::len),
                Some(first.min(expected.len())),
            );
        }
        // The other party's home screen: their own deposit and the two
        // transfers with this user, nothing else of this user's.
        let theirs = app
            .gql(
                Some(&other.token),
                "{ transactions(first: 20) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        let theirs: Vec<_> = data(&theirs, "transactions")["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["id"].clone())
            .collect();
        assert_eq!(theirs, [outgoing, incoming, their_deposit]);

        // What the session check reads along (on PostgreSQL one statement
        // read by position) is what the other reads give, field by field:
        // roles, every wallet column, every movement column.
        use entity::store::{history, session_reads, users, wallets};
        let id = uuid::Uuid::parse_str(&u.user_id).expect("user id");
        users::grant_role_to(&app.db, None, id, domain::Role::Support)
            .await
            .expect("grant");
        users::grant_role_to(&app.db, None, id, domain::Role::Compliance)
            .await
            .expect("grant");
        let session = entity::entities::sessions::Entity::find()
            .filter(entity::entities::sessions::Column::UserId.eq(id))
            .one(&app.db)
            .await
            .expect("session")
            .expect("a session");
        let account = users::load(&app.db, id).await.expect("user").expect("user");
        assert_eq!(account.roles.len(), 3, "{account:?}");
        let wallets = wallets::list_for_user(&app.db, id).await.expect("wallets");
        let ids: Vec<_> = wallets.iter().map(|w| w.id).collect();
        for limit in [None, Some(1), Some(4), Some(50)] {
            let read = session_reads::load(&app.db, id, session.id, limit)
                .await
                .expect("session read")
                .expect("a live session");
            assert_eq!(read.user, account);
            assert_eq!(read.wallets, wallets);
            match limit {
                None => assert!(read.history.is_none()),
                Some(limit) => {
                    let page = history::list(&app.db, &history::HistoryQuery::newest(ids.clone(), limit))
                        .await
                        .expect("page");
                    let along = read.history.expect("the page read along");
                    assert_eq!(along.items, page.items, "first {limit}");
                    assert_eq!(along.has_next, page.has_next, "first {limit}");
                }
            }
        }
        // Another user's session reads nothing.
        let theirs = entity::entities::sessions::Entity::find()
            .filter(entity::entities::sessions::Column::UserId.ne(id))
            .one(&app.db)
            .await
            .expect("session")
            .expect("their session");
        assert!(
            session_reads::load(&app.db, id, theirs.id, Some(20))
                .await
                .expect("session read")
                .is_none()
        );
    })
    .await;
}
