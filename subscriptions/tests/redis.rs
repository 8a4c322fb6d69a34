//! The Redis backend against a real Redis (REDIS_URL, default
//! redis://127.0.0.1:6379): fan-out across two processes' hubs, isolation by
//! user, and resync after the subscriber connection is killed.
//!
//! The reconnect test kills every pub/sub client of the server; test binaries
//! run one after another, so only this binary's clients are affected.

use std::time::Duration;

use domain::EventBody;
use domain::events::KycStatusChanged;
use subscriptions::redis_bus::RedisBus;
use subscriptions::{Audience, Envelope, Filter, Hub, Interrupted, Topic};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn bus() -> RedisBus {
    let url = redis_url();
    RedisBus::connect(&url, Hub::new(16), Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("Redis is required for these tests and is not usable at {url}: {e:#}. Run scripts/test.sh, which starts it."))
}

fn kyc_event(user: Uuid, sequence: i64) -> Envelope {
    Envelope {
        id: Uuid::new_v4(),
        user_id: user,
        sequence,
        occurred_at: chrono::Utc::now(),
        body: EventBody::KycStatusChanged(KycStatusChanged {
            status: domain::KycStatus::Pending,
            level: 0,
            reason: None,
        }),
    }
}

fn for_user(user: Uuid) -> Filter {
    Filter {
        topic: Topic::KycStatus,
        audience: Audience::User(user),
    }
}

#[tokio::test]
async fn an_event_published_on_one_instance_reaches_the_users_subscriber_on_another_and_survives_a_reconnect()
 {
    let (a, b) = (bus().await, bus().await);
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mut alice_on_b = b.hub().subscribe(for_user(alice));
    let mut bob_on_b = b.hub().subscribe(for_user(bob));

    a.publish(&kyc_event(alice, 1)).await.expect("publish");
    let got = tokio::time::timeout(Duration::from_secs(1), alice_on_b.next())
        .await
        .expect("delivered within a second")
        .expect("open")
        .expect("not lagged");
    assert_eq!((got.user_id, got.sequence), (alice, 1));
    // Bob's subscriber saw nothing of Alice's.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), bob_on_b.next())
            .await
            .is_err()
    );

    // The subscriber connections are killed: subscribers are told to resync,
    // the bus reconnects by itself and new subscriptions receive events again.
    let client = redis::Client::open(redis_url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("client kill");
    let signal = tokio::time::timeout(Duration::from_secs(10), alice_on_b.next())
        .await
        .expect("cut off after the reconnect");
    assert_eq!(signal, Some(Err(Interrupted::Resync)));
    for _ in 0..250 {
        if b.is_connected() && a.is_connected() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b.is_connected(), "the subscriber reconnected");
    let mut again = b.hub().subscribe(for_user(alice));
    a.publish(&kyc_event(alice, 2))
        .await
        .expect("publish after reconnect");
    let got = tokio::time::timeout(Duration::from_secs(2), again.next())
        .await
        .expect("delivered after reconnect")
        .expect("open")
        .expect("not lagged");
    assert_eq!(got.sequence, 2);
    a.shutdown();
    b.shutdown();
}
