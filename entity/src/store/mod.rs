//! Operations on the database. Every function that changes money or identity
//! state runs in one transaction and writes its outbox events and audit
//! records in that same transaction.

use chrono::{DateTime, SubsecRound, Utc};
use domain::DomainError;
use sea_orm::DbErr;

pub mod account;
pub mod audit;
pub mod connect;
pub mod deliveries;
pub mod deposits;
pub mod events;
pub mod exchange;
pub mod history;
pub mod holds;
pub mod idempotency;
pub mod kyc;
pub mod limits;
pub mod notifications;
pub mod payments;
pub mod payouts;
pub mod preferences;
pub mod records;
pub mod requests;
pub mod reversals;
pub mod risk;
pub mod security;
pub mod session_reads;
pub mod sessions;
pub mod users;
pub mod wallets;
pub(crate) mod writes;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The business rules refused; the message is safe for the caller.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database failed; details are for the logs only.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Stored data broke an invariant; details are for the logs only.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
    /// Another request wrote the idempotency key after this transaction
    /// read it: nothing of the transaction happened, and running it again
    /// finds what became of the key.
    #[error("the idempotency key was written by another request meanwhile")]
    KeyTaken,
}

impl StoreError {
    /// Whether the failed transaction may simply run again: it lost a
    /// deadlock, or its idempotency key was written meanwhile.
    pub fn worth_running_again(&self) -> bool {
        matches!(self, StoreError::KeyTaken) || self.lost_a_deadlock()
    }

    /// Whether the database rolled the transaction back to break a deadlock
    /// or a serialization conflict (SQLSTATE `40P01`, `40001`): nothing of
    /// it happened, and running it again may succeed.
    pub fn lost_a_deadlock(&self) -> bool {
        use sea_orm::RuntimeErr;
        let StoreError::Db(
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)),
        ) = self
        else {
            return false;
        };
        e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The current time, truncated to microseconds so that it round-trips through
/// PostgreSQL and SQLite unchanged (cursors compare stored times).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub(crate) fn inconsistent(what: impl Into<String>) -> StoreError {
    StoreError::Inconsistent(what.into())
}

/// Adds `value` to the values of a PostgreSQL statement being written;
/// returns its placeholder (`$n`).
pub(crate) fn bind(values: &mut Vec<sea_orm::Value>, value: impl Into<sea_orm::Value>) -> String {
    values.push(value.into());
    format!("${}", values.len())
}

/// `?` placeholders become `$1, $2, ...` (PostgreSQL's raw SQL).
pub(crate) fn numbered(sql: &str) -> String {
    let mut n = 0;
    let mut out = String::with_capacity(sql.len() + 16);
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// The span of one database transaction; `name` says what it does (the
/// money command's operation, say). It joins the trace of the request.
pub(crate) fn transaction_span(db: &impl sea_orm::ConnectionTrait, name: &str) -> tracing::Span {
    let system = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "postgresql",
        sea_orm::DatabaseBackend::Sqlite => "sqlite",
        _ => "other_sql",
    };
    tracing::info_span!(
        "db.transaction",
        otel.name = %format_args!("{name} transaction"),
        otel.kind = "client",
        db.system.name = system,
        db.operation.name = name,
    )
}
