//! Push through FCM HTTP v1 against a local server speaking its protocol
//! (`support::fcm`): the bearer token minted from the service account and
//! cached, an unregistered device removed while the others still get the
//! push, a 503 retried after its `Retry-After`, one 401 refreshing the token.

use std::time::Duration;

use notifier::channels::push::FcmSettings;
use serde_json::{Value, json};

use crate::support::fcm::{FakeFcm, Reply};
use crate::support::{Backend, Session, TestApp, data, error_code};

fn fcm(server: &FakeFcm) -> FcmSettings {
    FcmSettings {
        service_account_file: server.service_account_file.clone(),
        project_id: None,
        base_url: server.base_url(),
        token_url: None,
        timeout: Duration::from_secs(5),
    }
}

async fn push_app(
    server: &FakeFcm,
    tweak: impl FnOnce(&mut api::config::Settings) + Send + 'static,
) -> TestApp {
    let settings = fcm(server);
    TestApp::spawn_with(Backend::Postgres, move |s| {
        s.notify.fcm = Some(settings);
        tweak(s);
    })
    .await
}

const REGISTER: &str = "mutation($t: String!, $p: PushPlatform!) { registerPushDevice(token: $t, platform: $p) { id platform } }";

async fn register_device(app: &TestApp, s: &Session, token: &str, platform: &str) -> Value {
    app.gql(
        Some(&s.token),
        REGISTER,
        json!({ "t": token, "p": platform }),
    )
    .await
}

async fn users_with_money(app: &TestApp) -> (Session, String, Session, String) {
    let alice = app
        .register_named("push-alice@example.com", "Alice Liddell")
        .await;
    let bob = app.register("push-bob@example.com").await;
    let aw = app.open_wallet(&alice, "USD").await;
    let bw = app.open_wallet(&bob, "USD").await;
    app.deposit(&alice, &aw, "100", "d").await;
    (alice, aw, bob, bw)
}

async fn pay(app: &TestApp, alice: &Session, aw: &str, bw: &str, key: &str) {
    let t = app
        .transfer(
            alice,
            json!({ "fromWalletId": aw, "toWalletId": bw, "amount": "2.5" }),
            key,
        )
        .await;
    assert!(t["data"]["transfer"].is_object(), "{t}");
}

#[tokio::test]
async fn a_transfer_is_pushed_to_every_device_and_an_unregistered_one_is_removed() {
    let server = FakeFcm::start().await;
    let app = push_app(&server, |_| {}).await;
    let (alice, aw, bob, bw) = users_with_money(&app).await;
    let phone = "phone-token-0123456789:APA91b";
    let gone = "old-tablet-token-0123456789:APA91b";
    assert_eq!(
        data(
            &register_device(&app, &bob, phone, "IOS").await,
            "registerPushDevice"
        )["platform"],
        "IOS"
    );
    register_device(&app, &bob, gone, "ANDROID").await;
    server.script(gone, &[Reply::Unregistered]);

    pay(&app, &alice, &aw, &bw, "t1").await;
    let attempts = server
        .wait_for(Duration::from_secs(10), |a| {
            a.iter()
                .filter(|a| a.token == phone || a.token == gone)
                .count()
                >= 2
        })
        .await;
    let to_phone: Vec<_> = attempts.iter().filter(|a| a.token == phone).collect();
    assert_eq!(to_phone.len(), 1, "{attempts:?}");
    assert_eq!(to_phone[0].status, 200);
    let notification = &to_phone[0].message["notification"];
    assert_eq!(notification["title"], "Money received");
    let body = notification["body"].as_str().expect("body");
    assert!(
        body.starts_with("You received 2.50 USD from Alice Liddell on "),
        "{body}"
    );
    assert_eq!(to_phone[0].message["data"]["kind"], "transfer.received");
    assert!(to_phone[0].message["data"]["transactionId"].is_string());

    // The unregistered device is forgotten; the phone stays.
    let mut devices = Value::Null;
    for _ in 0..50 {
        let list = app
            .gql(Some(&bob.token), "{ pushDevices { platform } }", json!({}))
            .await;
        devices = data(&list, "pushDevices").clone();
        if devices.as_array().is_some_and(|d| d.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(devices, json!([{ "platform": "IOS" }]));
    // Its delivery ended as cancelled, not as a dead letter.
    use entity::entities::deliveries;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut push: Vec<(String, Option<String>)> = Vec::new();
    for _ in 0..50 {
        push = deliveries::Entity::find()
            .filter(deliveries::Column::Channel.eq("PUSH"))
            .all(&app.db)
            .await
            .expect("deliveries")
            .into_iter()
            .map(|d| (d.status, d.last_error))
            .collect();
        if push.iter().all(|(s, _)| s == "SENT" || s == "CANCELLED") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        push.contains(&(
            "CANCELLED".to_owned(),
            Some("FCM: the device is unregistered".to_owned())
        )),
        "{push:?}"
    );
    assert!(push.iter().any(|(s, _)| s == "SENT"), "{push:?}");

    // A second transfer reaches the phone only, with the cached token.
    pay(&app, &alice, &aw, &bw, "t2").await;
    let attempts = server
        .wait_for(Duration::from_secs(10), |a| {
            a.iter().filter(|a| a.token == phone).count() >= 2
        })
        .await;
    assert_eq!(
        attempts.iter().filter(|a| a.token == gone).count(),
        1,
        "{attempts:?}"
    );
    assert_eq!(server.token_requests(), 1, "the access token is cached");

    // A token revoked early: one 401, one fresh token, the push goes out.
    server.revoke_tokens();
    pay(&app, &alice, &aw, &bw, "t3").await;
    let attempts = server
        .wait_for(Duration::from_secs(10), |a| {
            a.iter()
                .filter(|a| a.token == phone && a.status == 200)
                .count()
                >= 3
        })
        .await;
    let statuses: Vec<u16> = attempts
        .iter()
        .filter(|a| a.token == phone)
        .map(|a| a.status)
        .collect();
    assert_eq!(statuses, [200, 200, 401, 200], "{attempts:?}");
    assert_eq!(server.token_requests(), 2);
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_the_delay_and_not_before() {
    let server = FakeFcm::start().await;
    // Retries would otherwise come within 100 ms.
    let app = push_app(&server, |s| {
        s.notify.retry.base = Duration::from_millis(100);
        s.notify.retry.max = Duration::from_millis(100);
    })
    .await;
    let (alice, aw, bob, bw) = users_with_money(&app).await;
    let phone = "busy-phone-token-0123456789";
    register_device(&app, &bob, phone, "ANDROID").await;
    server.script(phone, &[Reply::Unavailable { retry_after: 2 }]);
    pay(&app, &alice, &aw, &bw, "t").await;
    let attempts = server
        .wait_for(Duration::from_secs(15), |a| {
            a.iter().any(|a| a.token == phone && a.status == 200)
        })
        .await;
    let mine: Vec<_> = attempts.iter().filter(|a| a.token == phone).collect();
    assert_eq!(
        mine.iter().map(|a| a.status).collect::<Vec<_>>(),
        [503, 200],
        "{attempts:?}"
    );
    let waited = mine[1].at - mine[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert!(waited < Duration::from_secs(6), "retried after {waited:?}");
}

#[tokio::test]
async fn bad_device_tokens_platforms_and_too_many_devices_are_refused() {
    let server = FakeFcm::start().await;
    let app = push_app(&server, |s| s.notify.max_push_devices = 2).await;
    let u = app.register("push-limits@example.com").await;
    for bad in ["short", "has spaces in the token value", &"x".repeat(5000)] {
        assert_eq!(
            error_code(&register_device(&app, &u, bad, "IOS").await),
            "BAD_USER_INPUT",
            "{bad}"
        );
    }
    assert_eq!(
        error_code(&register_device(&app, &u, "valid-token-0123456789", "BLACKBERRY").await),
        "BAD_USER_INPUT"
    );
    let first = register_device(&app, &u, "device-one-0123456789", "IOS").await;
    let again = register_device(&app, &u, "device-one-0123456789", "IOS").await;
    assert_eq!(
        data(&first, "registerPushDevice")["id"],
        data(&again, "registerPushDevice")["id"],
        "a known token is the same device"
    );
    register_device(&app, &u, "device-two-0123456789", "WEB").await;
    let third = register_device(&app, &u, "device-three-0123456789", "WEB").await;
    assert_eq!(error_code(&third), "LIMIT_EXCEEDED", "{third}");
    // Removing one makes room; another user's device cannot be removed.
    let other = app.register("push-other@example.com").await;
    let id = data(&first, "registerPushDevice")["id"].clone();
    const REMOVE: &str = "mutation($id: ID!) { removePushDevice(id: $id) }";
    let theirs = app
        .gql(Some(&other.token), REMOVE, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&theirs), "NOT_FOUND");
    let mine = app.gql(Some(&u.token), REMOVE, json!({ "id": id })).await;
    assert_eq!(data(&mine, "removePushDevice"), true);
    let third = register_device(&app, &u, "device-three-0123456789", "WEB").await;
    assert!(third["data"]["registerPushDevice"].is_object(), "{third}");
}
