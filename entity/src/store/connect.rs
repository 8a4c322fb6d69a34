//! Opening the database: PostgreSQL from a URL, or the embedded SQLite file.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// How long a pooled connection may have idled and still be handed out
/// without a ping first.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Opens a pool. SQLite gets a single connection (SQLite serializes writes
/// anyway, and one connection means no `SQLITE_BUSY` between transactions),
/// WAL journaling and enforced foreign keys on every connection it opens.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(if sqlite { 1 } else { max_connections })
        .min_connections(if sqlite { 1 } else { 0 })
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        // The driver pings every connection it is given back before it
        // idles; a ping on every checkout as well is a second round trip
        // per request. One that idled a second or more is pinged before
        // use (a server restart, a proxy's idle cut).
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    Database::connect(opts).await
}
