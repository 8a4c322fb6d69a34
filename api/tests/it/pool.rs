//! The database pool when work on it is cancelled: a client that hangs up,
//! an operation over its time limit, a shutdown. Each drops a future that
//! may be halfway through a round trip, and the connection goes back to the
//! pool for the next request.

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait};

use crate::support::fresh_database;

async fn probes(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS n FROM pool_probe",
    ))
    .await
    .expect("count probes")
    .expect("a row")
    .try_get("", "n")
    .expect("n")
}

/// A transaction dropped while its `BEGIN` is on the wire, or just after
/// the server answered it, is rolled back: the next request on the pool's
/// only connection runs outside any transaction, so its write is committed
/// and seen at once by another connection. (The driver
/// once left such a `BEGIN` open: every later write on the connection ran
/// inside it, held its locks and was lost when something rolled back.)
#[tokio::test]
async fn a_transaction_dropped_while_beginning_leaves_nothing_open() {
    let url = fresh_database().await;
    let db = entity::store::connect::connect(&url, 1)
        .await
        .expect("connect");
    let observer = entity::store::connect::connect(&url, 1)
        .await
        .expect("connect the observer");
    observer
        .execute_unprepared("CREATE TABLE pool_probe (n INT NOT NULL)")
        .await
        .expect("create the probe table");
    // Warm the one connection, so that taking it from the pool is
    // immediate and the first poll of `begin` sends the `BEGIN`.
    assert_eq!(probes(&db).await, 0);

    // Most first polls end waiting for the server's answer: the window.
    // One whose answer was already there completes, and its transaction is
    // dropped the ordinary way; the write after it is checked all the same.
    const WINDOWS: usize = 4;
    let (mut windows, mut writes) = (0, 0);
    while windows < WINDOWS {
        assert!(
            writes < 200,
            "BEGIN completed within its first poll {writes} times: the window was never reached"
        );
        let cancelled_in_flight = {
            let mut begin = std::pin::pin!(db.begin());
            let mut cx = Context::from_waker(Waker::noop());
            let in_flight = begin.as_mut().poll(&mut cx).is_pending();
            if in_flight && windows % 2 == 1 {
                // The server answers meanwhile; nobody reads it.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            in_flight
        };
        windows += usize::from(cancelled_in_flight);
        writes += 1;
        db.execute_unprepared(&format!("INSERT INTO pool_probe (n) VALUES ({writes})"))
            .await
            .expect("write after the cancelled transaction");
        assert_eq!(
            probes(&observer).await,
            writes,
            "write {writes}: it ran inside the cancelled transaction, uncommitted"
        );
    }
}
