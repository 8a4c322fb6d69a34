//! The history page query, before and after: one `OR` over the sender and
//! receiver columns (the database reads every matching row and sorts them
//! for one page) against one index range scan per wallet and side, merged
//! (`entity::store::history::list`). Both run side by side on one fresh
//! PostgreSQL database, alternating, with the same concurrency.
//!
//! Usage: `history_query [the user's transactions] [seconds per round]`
//! (2000, 3; the table holds 20 times as many of other users), with
//! `TEST_POSTGRES_URL` naming the server (default `postgres://postgres@127.0.0.1:5432`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use entity::entities::transactions;
use entity::store::history::{self, HistoryQuery};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};
use uuid::Uuid;

const CLIENTS: usize = 8;
/// Rows of other users per row of the measured user.
const OTHERS: usize = 20;
const PAGE: u64 = 20;

/// The query as it was: every transaction touching the user's wallets,
/// sorted, cut to a page.
const OLD: &str = "SELECT * FROM transactions WHERE from_wallet_id IN ($1, $2) OR to_wallet_id IN ($1, $2) ORDER BY created_at DESC, id DESC LIMIT 21";

async fn load(db: &DatabaseConnection, n: usize) -> anyhow::Result<(Uuid, [Uuid; 2])> {
    let email = |s: &str| domain::Email::parse(s).expect("email");
    let name = domain::DisplayName::parse("Bench").expect("name");
    let user =
        entity::store::users::create(db, &email("history@bench.example"), &name, None).await?;
    let peer = entity::store::users::create(db, &email("peer@bench.example"), &name, None).await?;
    let usd = entity::store::wallets::open(db, user.id, domain::Currency::Usd).await?;
    let eur = entity::store::wallets::open(db, user.id, domain::Currency::Eur).await?;
    let peer_usd = entity::store::wallets::open(db, peer.id, domain::Currency::Usd).await?;
    let third =
        entity::store::users::create(db, &email("third@bench.example"), &name, None).await?;
    let third_usd = entity::store::wallets::open(db, third.id, domain::Currency::Usd).await?;
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    // The user's own rows among `OTHERS` times as many of other users, as
    // in a shared table: reading everything is not an option.
    let rows: Vec<transactions::ActiveModel> = (0..n * (OTHERS + 1))
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(i as i64 * 500);
            let (from, to) = match i % (OTHERS + 1) {
                0 if (i / (OTHERS + 1)).is_multiple_of(2) => (usd.id, peer_usd.id),
                0 => (peer_usd.id, usd.id),
                _ => (peer_usd.id, third_usd.id),
            };
            transactions::ActiveModel::from(transactions::Model {
                id: Uuid::now_v7(),
                kind: "TRANSFER".into(),
                status: "COMPLETED".into(),
                amount: entity::money::Money(rust_decimal::Decimal::ONE),
                currency: "USD".into(),
                from_wallet_id: Some(from),
                to_wallet_id: Some(to),
                memo: None,
                destination: None,
                initiated_by: user.id,
                created_at: at,
                updated_at: at,
                original_id: None,
                risk_score: None,
                risk_rules: None,
            })
        })
        .collect();
    for chunk in rows.chunks(1000) {
        transactions::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    db.execute_unprepared("ANALYZE transactions").await?;
    Ok((user.id, [usd.id, eur.id]))
}

/// As the old `history::list` ran it: the user's wallets first, then the
/// page, decoded into records.
async fn old(db: &DatabaseConnection, user_id: Uuid) -> anyhow::Result<usize> {
    use sea_orm::FromQueryResult;
    let listed = entity::store::wallets::list_for_user(db, user_id).await?;
    anyhow::ensure!(listed.len() == 2, "the user has two wallets");
    let wallets = [listed[0].id, listed[1].id];
    let rows = transactions::Model::find_by_statement(Statement::from_sql_and_values(
        sea_orm::DatabaseBackend::Postgres,
        OLD,
        [wallets[0].into(), wallets[1].into()],
    ))
    .all(db)
    .await?;
    let (rows, has_next) = history::split_page(rows, PAGE);
    let records = rows
        .into_iter()
        .map(entity::store::records::TransactionRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(records.len() + usize::from(has_next))
}

async fn new(db: &DatabaseConnection, user_id: Uuid) -> anyhow::Result<usize> {
    let wallets = entity::store::wallets::list_for_user(db, user_id).await?;
    let page = history::list(
        db,
        &HistoryQuery::newest(wallets.iter().map(|w| w.id).collect(), PAGE),
    )
    .await?;
    Ok(page.items.len())
}

/// Queries per second of one form, `CLIENTS` at a time for `secs`.
async fn round(
    db: &DatabaseConnection,
    user: Uuid,
    use_new: bool,
    secs: u64,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (db, done) = (db.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let n = if use_new {
                    new(&db, user).await?
                } else {
                    old(&db, user).await?
                };
                anyhow::ensure!(
                    n == PAGE as usize || n == PAGE as usize + 1,
                    "a page of {n}"
                );
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2000);
    let secs: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let server = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("bench_history_{}", Uuid::new_v4().simple());
    let admin = entity::store::connect::connect(&format!("{server}/postgres"), 1)
        .await
        .context("PostgreSQL")?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await?;
    let db = entity::store::connect::connect(&format!("{server}/{name}"), CLIENTS as u32).await?;
    <migration::Migrator as migration::MigratorTrait>::up(&db, None).await?;
    let (user, wallets) = load(&db, n).await?;
    let plan = |sql: String| {
        let db = db.clone();
        async move {
            let rows = db
                .query_all_raw(Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"),
                ))
                .await?;
            let lines: Vec<String> = rows
                .iter()
                .filter_map(|r| r.try_get::<String>("", "QUERY PLAN").ok())
                .collect();
            Ok::<_, anyhow::Error>(lines.join("\n"))
        }
    };
    let old_sql = OLD
        .replace("$1", &format!("'{}'", wallets[0]))
        .replace("$2", &format!("'{}'", wallets[1]));
    println!("old plan:\n{}\n", plan(old_sql).await?);
    println!(
        "{n} transactions of the user among {} in the table, page {PAGE}, {CLIENTS} clients, {secs} s per round",
        n * (OTHERS + 1)
    );
    println!("| round | old (queries/s) | new (queries/s) | new / old |\n|---|---|---|---|");
    let mut ratios = Vec::new();
    for r in 1..=4 {
        let o = round(&db, user, false, secs).await?;
        let w = round(&db, user, true, secs).await?;
        ratios.push(w / o);
        println!("| {r} | {o:.0} | {w:.0} | {:.2} |", w / o);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median ratio new / old: {:.2}",
        (ratios[1] + ratios[2]) / 2.0
    );
    db.close().await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await?;
    Ok(())
}
