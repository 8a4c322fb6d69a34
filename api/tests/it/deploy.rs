//! Deploying several instances: they start at once on one database.

use sea_orm::{ConnectionTrait, Statement};

use crate::support::{empty_database, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_one_at_a_time() {
    let url = empty_database().await;
    let mut starts = Vec::new();
    for _ in 0..4 {
        let settings = test_settings(url.clone(), false, std::env::temp_dir());
        starts.push(tokio::spawn(async move {
            api::open_database(&settings).await.map(|_| ())
        }));
    }
    for start in starts {
        start
            .await
            .expect("start task")
            .expect("every instance starts: one migrates, the others wait");
    }
    let db = entity::store::connect::connect(&url, 1)
        .await
        .expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM seaql_migrations",
        ))
        .await
        .expect("count")
        .expect("row");
    let applied: i64 = row.try_get("", "n").expect("n");
    let known = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert_eq!(
        applied,
        i64::try_from(known).expect("count"),
        "each migration applied once"
    );
}
