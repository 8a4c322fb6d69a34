//! The notifier end to end: outbox -> relay -> delivery workers -> a real
//! SMTP server (aiosmtpd, `support::smtp`) and in-app notifications, with
//! SMTP outages, dead letters, two instances and a killed process.

use std::collections::HashMap;
use std::time::Duration;

use domain::notify::RetryPolicy;
use notifier::channels::email::SmtpSettings;
use serde_json::{Value, json};

use crate::support::smtp::{Mail, SmtpSink};
use crate::support::{Backend, ServerProcess, Session, TestApp, data};

fn smtp(sink: &SmtpSink) -> SmtpSettings {
    SmtpSettings {
        url: sink.url(),
        from: "Wallet <no-reply@wallet.test>".to_owned(),
        timeout: Duration::from_secs(5),
        pool_size: 2,
    }
}

/// Two users with USD wallets; Alice holds 100.
async fn pair(app: &TestApp, prefix: &str) -> (Session, String, Session, String) {
    let alice = app
        .register_named(&format!("{prefix}-alice@example.com"), "Alice Liddell")
        .await;
    let bob = app
        .register_named(&format!("{prefix}-bob@example.com"), "Bob <Builder> & Co")
        .await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "100", "d").await;
    (alice, aw, bob, bw)
}

async fn transfer(
    app: &TestApp,
    from: &Session,
    aw: &str,
    bw: &str,
    amount: &str,
    key: &str,
) -> String {
    let t = app
        .transfer(
            from,
            json!({ "fromWalletId": aw, "toWalletId": bw, "amount": amount, "memo": key }),
            key,
        )
        .await;
    data(&t, "transfer")["transaction"]["id"]
        .as_str()
        .expect("transaction id")
        .to_owned()
}

/// Messages per `Message-ID`: every count must be 1.
fn counts(mails: &[Mail]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in mails {
        *counts.entry(m.message_id.clone()).or_insert(0) += 1;
    }
    counts
}

fn assert_each_once(mails: &[Mail], expected: usize) {
    let counts = counts(mails);
    assert_eq!(mails.len(), expected, "{mails:#?}");
    assert!(counts.values().all(|&n| n == 1), "a duplicate: {counts:?}");
}

#[tokio::test]
async fn a_transfer_emails_the_receiver_and_confirms_to_the_sender_and_both_get_in_app_notices() {
    let sink = SmtpSink::start();
    let settings = smtp(&sink);
    let app = TestApp::spawn_with(Backend::Postgres, move |s| s.notify.smtp = Some(settings)).await;
    let (alice, aw, bob, bw) = pair(&app, "mail").await;
    transfer(&app, &alice, &aw, &bw, "12.5", "lunch").await;

    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_each_once(&mails, 2);
    let to = |addr: &str| {
        mails
            .iter()
            .find(|m| m.rcpt_tos == [addr.to_owned()])
            .unwrap_or_else(|| panic!("no mail to {addr}: {mails:#?}"))
    };
    let received = to(&bob.email);
    assert_eq!(received.subject, "Money received");
    assert_eq!(received.from, "Wallet <no-reply@wallet.test>");
    let text = received.text.as_deref().expect("text part");
    assert!(
        text.contains("You received 12.50 USD from Alice Liddell on "),
        "{text}"
    );
    assert!(text.contains("Note: lunch"), "{text}");
    assert!(text.contains(" UTC"), "the time: {text}");
    let html = received.html.as_deref().expect("html part");
    assert!(
        html.contains("<strong>12.50 USD</strong> from Alice Liddell"),
        "{html}"
    );
    let html = to(&alice.email).html.as_deref().expect("html part");
    assert!(
        html.contains("to Bob &lt;Builder&gt; &amp; Co"),
        "the name is escaped: {html}"
    );
    assert!(
        received.message_id.ends_with("@wallet.test>"),
        "{}",
        received.message_id
    );
    let sent = to(&alice.email);
    assert_eq!(sent.subject, "Money sent");
    let text = sent.text.as_deref().expect("text part");
    assert!(
        text.contains("You sent 12.50 USD to Bob <Builder> & Co on "),
        "{text}"
    );

    // The same events made one in-app notification each, with their deliveries.
    const LIST: &str =
        "{ notifications { edges { node { kind body deliveries { channel status attempts } } } } }";
    for (who, kind) in [(&bob, "transfer.received"), (&alice, "transfer.sent")] {
        let mut edges = Value::Null;
        for _ in 0..50 {
            let list = app.gql(Some(&who.token), LIST, json!({})).await;
            edges = data(&list, "notifications")["edges"].clone();
            let settled = edges[0]["node"]["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().all(|d| d["status"] == "SENT"));
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(edges.as_array().map(Vec::len), Some(1), "{edges}");
        let node = &edges[0]["node"];
        assert_eq!(node["kind"], kind);
        assert_eq!(
            node["deliveries"],
            json!([
                { "channel": "EMAIL", "status": "SENT", "attempts": 1 },
                { "channel": "IN_APP", "status": "SENT", "attempts": 1 },
            ]),
            "{node}"
        );
    }
    // Nothing more arrives: a deposit is not mailed, nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_each_once(&sink.mails(), 2);
}

async fn email_statuses(app: &TestApp) -> Vec<(String, i64, Option<String>)> {
    use entity::entities::deliveries;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    deliveries::Entity::find()
        .filter(deliveries::Column::Channel.eq("EMAIL"))
        .all(&app.db)
        .await
        .expect("deliveries")
        .into_iter()
        .map(|d| (d.status, d.attempts, d.last_error))
        .collect()
}

/// A server whose SMTP server is stopped, retrying fast.
async fn smtp_down(max_attempts: u32, base_ms: u64, max_ms: u64) -> (SmtpSink, TestApp) {
    let mut sink = SmtpSink::start();
    let settings = smtp(&sink);
    sink.stop();
    let app = TestApp::spawn_with(Backend::Postgres, move |s| {
        s.notify.smtp = Some(settings);
        s.notify.retry = RetryPolicy {
            max_attempts,
            base: Duration::from_millis(base_ms),
            max: Duration::from_millis(max_ms),
        };
    })
    .await;
    (sink, app)
}

#[tokio::test]
async fn mail_waits_while_smtp_is_down_and_goes_out_once_when_it_is_back() {
    let (mut sink, app) = smtp_down(100, 100, 400).await;
    let (alice, aw, _bob, bw) = pair(&app, "outage").await;
    for i in 0..3 {
        transfer(&app, &alice, &aw, &bw, "1", &format!("t{i}")).await;
    }
    // Attempts fail and are retried while the server is away.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = email_statuses(&app).await;
        if statuses.len() == 6 && statuses.iter().all(|(_, attempts, _)| *attempts >= 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses.len(), 6, "{statuses:?}");
    assert!(
        statuses.iter().all(|(s, a, _)| s != "SENT" && *a >= 2),
        "{statuses:?}"
    );
    sink.restart();
    let mails = sink.wait_for(6, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_each_once(&sink.mails(), 6);
    assert_eq!(mails.len(), 6);
    assert!(
        email_statuses(&app)
            .await
            .iter()
            .all(|(s, _, _)| s == "SENT"),
        "{:?}",
        email_statuses(&app).await
    );
}

const DEAD: &str = "{ deadLetters(first: 10) { edges { node { id channel status attempts lastError eventId } } } }";

#[tokio::test]
async fn after_the_last_attempt_a_dead_letter_is_listed_and_retry_delivery_sends_it() {
    let (mut sink, app) = smtp_down(2, 50, 100).await;
    let admin = app.admin("dead-admin@example.com").await;
    let (alice, aw, _bob, bw) = pair(&app, "dead").await;
    transfer(&app, &alice, &aw, &bw, "3", "t").await;
    let mut dead = Vec::new();
    for _ in 0..100 {
        let list = app.gql(Some(&admin.token), DEAD, json!({})).await;
        dead = data(&list, "deadLetters")["edges"]
            .as_array()
            .expect("edges")
            .clone();
        if dead.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The admin's sign-in notice and the transfer's two e-mails.
    assert_eq!(dead.len(), 3, "every e-mail died: {dead:?}");
    for d in &dead {
        assert_eq!(d["node"]["channel"], "EMAIL");
        assert_eq!(d["node"]["status"], "DEAD");
        assert_eq!(d["node"]["attempts"], 2);
        assert_eq!(d["node"]["lastError"], "SMTP connection failed");
    }
    // Users may not see or retry them.
    let refused = app.gql(Some(&alice.token), DEAD, json!({})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");

    sink.restart();
    assert!(
        sink.wait_for(1, Duration::from_millis(500))
            .await
            .is_empty(),
        "dead letters wait for an admin"
    );
    const RETRY: &str = "mutation($id: ID!) { retryDelivery(id: $id) { id status attempts } }";
    for d in &dead {
        let id = &d["node"]["id"];
        let refused = app
            .gql(Some(&alice.token), RETRY, json!({ "id": id }))
            .await;
        assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
        let retried = app
            .gql(Some(&admin.token), RETRY, json!({ "id": id }))
            .await;
        assert_eq!(
            data(&retried, "retryDelivery")["status"],
            "PENDING",
            "{retried}"
        );
        // Only a dead letter can be retried.
        let again = app
            .gql(Some(&admin.token), RETRY, json!({ "id": id }))
            .await;
        assert_eq!(
            again["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{again}"
        );
    }
    let mails = sink.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_each_once(&sink.mails(), 3);
    assert_eq!(mails.len(), 3);
    let list = app.gql(Some(&admin.token), DEAD, json!({})).await;
    assert_eq!(data(&list, "deadLetters")["edges"], json!([]));
}

#[tokio::test]
async fn two_instances_share_the_work_and_each_email_arrives_once() {
    let sink = SmtpSink::start();
    let db = crate::support::fresh_database().await;
    let (s1, s2) = (smtp(&sink), smtp(&sink));
    let one = TestApp::spawn_on(Some(db.clone()), move |s| s.notify.smtp = Some(s1)).await;
    let two = TestApp::spawn_on(Some(db), move |s| s.notify.smtp = Some(s2)).await;
    let (alice, aw, bob, bw) = pair(&one, "two").await;
    let mut keys = 0;
    for round in 0..10 {
        // Writes land on both instances; both relays and both worker pools run.
        let app = if round % 2 == 0 { &one } else { &two };
        transfer(app, &alice, &aw, &bw, "1", &format!("a{round}")).await;
        transfer(app, &bob, &bw, &aw, "0.5", &format!("b{round}")).await;
        keys += 2;
    }
    let expected = keys * 2;
    sink.wait_for(expected, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_each_once(&sink.mails(), expected);
}

#[tokio::test]
async fn a_notifier_killed_mid_batch_sends_no_duplicate_and_loses_nothing() {
    // Each message waits 300 ms for the server's reply, so the kill lands
    // while one is in flight (not yet accepted).
    let sink = SmtpSink::start_with_delay(300);
    let db = crate::support::fresh_database().await;
    let env = [
        ("SMTP_URL", sink.url()),
        ("SMTP_FROM", "Wallet <no-reply@wallet.test>".to_owned()),
        ("NOTIFY_WORKERS", "1".to_owned()),
        ("NOTIFY_LEASE_SECS", "4".to_owned()),
        ("SMTP_TIMEOUT_SECS", "1".to_owned()),
        ("NOTIFY_POLL_INTERVAL_MS", "100".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = ServerProcess::start(&db, &env);
    let app = TestApp::attach(first.addr, &db).await;
    let (alice, aw, _bob, bw) = pair(&app, "kill").await;
    for i in 0..5 {
        transfer(&app, &alice, &aw, &bw, "1", &format!("t{i}")).await;
    }
    // Kill it while the third message is waiting for its reply.
    for _ in 0..2_000 {
        if sink.mails().len() >= 2 && sink.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (sink.mails().len(), sink.in_flight()),
        (2, 1),
        "two went out before the kill, the third is in flight: {:?}",
        email_statuses(&app).await
    );
    first.kill();
    let second = ServerProcess::start(&db, &env);
    let mails = sink.wait_for(10, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_each_once(&sink.mails(), 10);
    assert_eq!(mails.len(), 10);
    drop(second);
}

const PREFS: &str = "mutation($i: [NotificationPreferenceInput!]!) { updateNotificationPreferences(input: $i) { kind channel enabled locked } }";

#[tokio::test]
async fn a_channel_switched_off_sends_nothing_on_it_and_security_notices_still_go_by_email() {
    let sink = SmtpSink::start();
    let settings = smtp(&sink);
    let app = TestApp::spawn_with(Backend::Postgres, move |s| s.notify.smtp = Some(settings)).await;
    let (alice, aw, bob, bw) = pair(&app, "prefs").await;
    // Security notices by e-mail cannot be switched off.
    let refused = app
        .gql(
            Some(&bob.token),
            PREFS,
            json!({ "i": [{ "kind": "SECURITY", "channel": "EMAIL", "enabled": false }] }),
        )
        .await;
    assert_eq!(
        crate::support::error_code(&refused),
        "BAD_USER_INPUT",
        "{refused}"
    );
    let too_many: Vec<Value> = (0..16)
        .map(|_| json!({ "kind": "KYC_STATUS", "channel": "PUSH", "enabled": false }))
        .collect();
    let refused = app
        .gql(Some(&bob.token), PREFS, json!({ "i": too_many }))
        .await;
    assert_eq!(
        crate::support::error_code(&refused),
        "BAD_USER_INPUT",
        "{refused}"
    );
    let set = app
        .gql(
            Some(&bob.token),
            PREFS,
            json!({ "i": [
                { "kind": "TRANSFER_RECEIVED", "channel": "EMAIL", "enabled": false },
                { "kind": "SECURITY", "channel": "IN_APP", "enabled": false },
            ] }),
        )
        .await;
    let prefs = data(&set, "updateNotificationPreferences")
        .as_array()
        .expect("prefs")
        .clone();
    assert_eq!(prefs.len(), 21, "every kind on every channel");
    let find = |kind: &str, channel: &str| {
        prefs
            .iter()
            .find(|p| p["kind"] == kind && p["channel"] == channel)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {channel}"))
    };
    assert_eq!(find("TRANSFER_RECEIVED", "EMAIL")["enabled"], false);
    assert_eq!(find("TRANSFER_RECEIVED", "IN_APP")["enabled"], true);
    assert_eq!(
        find("SECURITY", "EMAIL"),
        json!({ "kind": "SECURITY", "channel": "EMAIL", "enabled": true, "locked": true })
    );
    let read = app
        .gql(
            Some(&bob.token),
            "{ notificationPreferences { kind channel enabled } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&read, "notificationPreferences")
            .as_array()
            .map(|p| p.iter().filter(|p| p["enabled"] == false).count()),
        Some(2)
    );

    transfer(&app, &alice, &aw, &bw, "7", "t").await;
    // Alice's confirmation goes out; Bob's e-mail is off, his in-app is on.
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    let inbox = app
        .notifications(&bob, "{ notifications { edges { node { kind } } } }", 1)
        .await;
    assert_eq!(inbox[0]["node"]["kind"], "transfer.received");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mails_now = sink.mails();
    assert_eq!(mails_now.len(), 1, "{mails_now:#?}");
    assert_eq!(mails[0].rcpt_tos, std::slice::from_ref(&alice.email));

    // Bob signs in: the security notice comes by e-mail, not in the app.
    app.login(&bob.email).await;
    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    let notice = mails
        .iter()
        .find(|m| m.rcpt_tos == [bob.email.clone()])
        .unwrap_or_else(|| panic!("no sign-in notice: {mails:#?}"));
    assert_eq!(notice.subject, "New sign-in to your account");
    let text = notice.text.as_deref().expect("text");
    assert!(
        text.contains("signed in to with your password on "),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inbox = app
        .notifications(&bob, "{ notifications { edges { node { kind } } } }", 1)
        .await;
    assert!(
        inbox.iter().all(|e| e["node"]["kind"] != "security.notice"),
        "in-app security notices are off: {inbox:?}"
    );
}

#[tokio::test]
async fn a_replay_from_before_the_events_kept_answers_replay_unavailable() {
    use crate::support::WsClient;
    let app = TestApp::spawn_with(Backend::Postgres, |s| {
        s.outbox_retention_secs = 1;
        s.outbox_prune_interval_secs = 1;
    })
    .await;
    let u = app.register("pruned@example.com").await;
    let w = app.open_wallet(&u, "USD").await;
    for i in 0..3 {
        app.deposit(&u, &w, "1", &format!("d{i}")).await;
    }
    // The three balance.updated events are published, then pruned.
    let user = uuid::Uuid::parse_str(&u.user_id).expect("uuid");
    let mut gone = 0;
    for _ in 0..100 {
        gone = entity::store::events::pruned_through(&app.db, user)
            .await
            .expect("pruned");
        if gone >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gone, 3);
    const SUB: &str =
        "subscription($after: Int) { balanceUpdated(afterSequence: $after) { sequence } }";
    let mut ws = WsClient::authed(app.addr, "graphql-transport-ws", &u.token).await;
    ws.subscribe("old", SUB, json!({ "after": 1 })).await;
    let msg = ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("message");
    let err = &msg["payload"]["errors"][0];
    assert_eq!(err["extensions"]["code"], "REPLAY_UNAVAILABLE", "{msg}");
    assert_eq!(err["extensions"]["keptAfterSequence"], 3, "{msg}");
    let done = ws
        .next_message(Duration::from_secs(5))
        .await
        .expect("complete");
    assert_eq!(
        (done["id"].clone(), done["type"].clone()),
        (json!("old"), json!("complete"))
    );
    // From the last pruned sequence on, replay works: a new event arrives.
    ws.subscribe("new", SUB, json!({ "after": 3 })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.deposit(&u, &w, "1", "after").await;
    let live = ws.next_data("new", Duration::from_secs(5)).await;
    assert_eq!(live["data"]["balanceUpdated"]["sequence"], 4);
}

#[tokio::test]
async fn instances_without_delivery_workers_leave_the_work_to_those_with_them() {
    let sink = SmtpSink::start();
    let db = crate::support::fresh_database().await;
    let (a, b) = (smtp(&sink), smtp(&sink));
    let mailer = TestApp::spawn_on(Some(db.clone()), move |s| s.notify.smtp = Some(a)).await;
    // Same channels, no workers: it serves requests, publishes and plans.
    let front = TestApp::spawn_on(Some(db), move |s| {
        s.notify.smtp = Some(b);
        s.notify.workers = 0;
    })
    .await;
    let (alice, aw, _bob, bw) = pair(&front, "split").await;
    for i in 0..5 {
        transfer(&front, &alice, &aw, &bw, "1", &format!("s{i}")).await;
    }
    let mails = sink.wait_for(10, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_each_once(&sink.mails(), 10);
    assert_eq!(mails.len(), 10);
    let statuses = email_statuses(&mailer).await;
    assert!(
        statuses
            .iter()
            .all(|(s, attempts, _)| s == "SENT" && *attempts == 1),
        "{statuses:?}"
    );
}

/// In-app deliveries are written a batch at a time: many notices for the
/// same users in one transaction. Each gets its own sequence, shared with
/// its `notification.created` event, and no event of the user shares it.
#[tokio::test]
async fn in_app_notices_written_in_batches_each_get_their_own_sequence() {
    use entity::entities::{notifications, outbox_events};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    crate::support::on_both(|app| async move {
        let (alice, aw, bob, bw) = pair(&app, "batched").await;
        const SENT: usize = 12;
        // Sent together, so the in-app worker finds several of them due at once.
        let sends = (0..SENT).map(|i| {
            let (app, alice, aw, bw) = (app.clone(), alice.clone(), aw.clone(), bw.clone());
            async move { transfer(&app, &alice, &aw, &bw, "1", &format!("batch-{i}")).await }
        });
        futures_util::future::join_all(sends).await;
        for who in [&alice, &bob] {
            let user = uuid::Uuid::parse_str(&who.user_id).expect("uuid");
            let mut notes = Vec::new();
            for _ in 0..100 {
                notes = notifications::Entity::find()
                    .filter(notifications::Column::UserId.eq(user))
                    .all(&app.db)
                    .await
                    .expect("notifications");
                if notes.len() >= SENT {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(notes.len(), SENT, "one notice per transfer");
            let events = outbox_events::Entity::find()
                .filter(outbox_events::Column::UserId.eq(user))
                .all(&app.db)
                .await
                .expect("events");
            let mut sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
            sequences.sort_unstable();
            let expected: Vec<i64> = (1..=events.len() as i64).collect();
            assert_eq!(
                sequences, expected,
                "the user's events number 1, 2, 3... once each"
            );
            for note in &notes {
                let created = events
                    .iter()
                    .find(|e| {
                        e.topic == "notification.created"
                            && e.payload.to_string().contains(&note.id.to_string())
                    })
                    .unwrap_or_else(|| panic!("no notification.created event for {}", note.id));
                assert_eq!(
                    created.sequence, note.sequence,
                    "the notice and its event share a sequence"
                );
                let told = &created.payload["notification"];
                assert_eq!(
                    (told["sequence"].as_i64(), told["title"].as_str()),
                    (Some(note.sequence), Some(note.title.as_str())),
                    "the event carries the notice as stored: {told}"
                );
            }
        }
    })
    .await;
}

/// The relay hands a batch's in-app deliveries to its own instance's
/// in-app workers as it plans them: written already taken, they are marked
/// sent with no claim in between (one attempt, counted by
/// `wallet_bff_notify_handed_over_total`). One written taken whose worker
/// never marks it (its instance died after the relay's commit) is taken
/// again by a claim once its lease ran out, and delivered.
#[tokio::test]
async fn in_app_deliveries_are_handed_to_the_workers_and_one_never_marked_is_taken_again() {
    use domain::notify::Channel;
    use entity::entities::{deliveries, notifications};
    use entity::store::deliveries::{Planned, plan_with_published};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    crate::support::on_both_with(
        |s| s.notify.poll_interval = Duration::from_millis(100),
        |app| async move {
            let (alice, aw, bob, bw) = pair(&app, "handed").await;
            transfer(&app, &alice, &aw, &bw, "1", "handed-1").await;
            let bob_id = uuid::Uuid::parse_str(&bob.user_id).expect("uuid");
            let in_app = || async {
                deliveries::Entity::find()
                    .filter(deliveries::Column::Channel.eq(Channel::InApp.as_str()))
                    .all(&app.db)
                    .await
                    .expect("deliveries")
            };
            // The transfer's two notices, and any of the deposit's.
            for _ in 0..100 {
                let rows = in_app().await;
                if rows.len() >= 2 && rows.iter().all(|d| d.status == "SENT") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rows = in_app().await;
            let seen: Vec<_> = rows
                .iter()
                .map(|d| (d.status.as_str(), d.attempts))
                .collect();
            assert!(rows.len() >= 2, "{rows:#?}");
            assert_eq!(seen, vec![("SENT", 1); rows.len()], "{rows:#?}");
            let metrics = app.metrics().await;
            let handed = format!("wallet_bff_notify_handed_over_total {}\n", rows.len());
            assert!(
                metrics.contains(&handed),
                "every in-app delivery was handed over: {metrics}"
            );

            // Bob's notice of the transfer, planned again as if a relay had
            // handed it to a worker that died (under its own target, past
            // the unique key): taken, its lease already over.
            let received = rows
                .iter()
                .find(|d| d.user_id == bob_id)
                .expect("bob's in-app delivery");
            let lost = Planned {
                id: uuid::Uuid::now_v7(),
                event_id: received.event_id,
                user_id: bob_id,
                channel: Channel::InApp,
                target: "lost-hand-off".to_owned(),
                taken_until: Some(entity::store::now() - chrono::Duration::seconds(1)),
            };
            let at = entity::store::now() - chrono::Duration::seconds(2);
            plan_with_published(&app.db, std::slice::from_ref(&lost), &[], at)
                .await
                .expect("plan");
            let mut row = None;
            for _ in 0..100 {
                row = deliveries::Entity::find_by_id(lost.id)
                    .one(&app.db)
                    .await
                    .expect("delivery");
                if row.as_ref().is_some_and(|d| d.status == "SENT") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let row = row.expect("the lost delivery");
            assert_eq!(
                (row.status.as_str(), row.attempts),
                ("SENT", 2),
                "taken again by a claim, its second attempt: {row:?}"
            );
            let notices = notifications::Entity::find()
                .filter(notifications::Column::UserId.eq(bob_id))
                .filter(notifications::Column::SourceEventId.eq(received.event_id))
                .all(&app.db)
                .await
                .expect("notifications");
            assert_eq!(notices.len(), 2, "the first notice and the retaken one");
        },
    )
    .await;
}
