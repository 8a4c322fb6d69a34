//! Writes of one transaction that read nothing from each other, sent
//! together. On PostgreSQL they go as one statement, each write a
//! data-modifying `WITH` query: a money movement's transaction row, ledger
//! lines, balances, events, audit record and idempotent result cost one
//! round trip instead of eight, and the wallets' locks are held that much
//! shorter. Elsewhere (SQLite, in-process) they run one after another.
//!
//! A write may say how many rows it must touch and what it means when it
//! does not (a balance written under a stale version, a lease taken over):
//! the batch fails with that error and the caller's transaction rolls back.
//!
//! The writes of one statement all see the database as it was before the
//! statement, so nothing staged may depend on another staged write's
//! effect, and no two may change the same row. Nor may a statement run in
//! the meantime depend on a staged write (read its row, or reference it by
//! a foreign key): it runs first.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

use crate::store::{StoreError, StoreResult, inconsistent};

/// The error a write's caller gets when it touched another number of rows
/// (given that number).
type Otherwise = Box<dyn FnOnce(u64) -> StoreError + Send + Sync>;

/// One write: a statement, the `WITH` queries it reads (PostgreSQL only),
/// and what it must touch.
pub(crate) struct Write {
    with: Vec<(&'static str, String)>,
    statement: Statement,
    expect: Option<(u64, Otherwise)>,
}

impl Write {
    /// A statement built for the batch's backend (`INSERT`, `UPDATE` or
    /// `DELETE`, without `RETURNING`).
    pub(crate) fn new(statement: Statement) -> Self {
        Self {
            with: Vec::new(),
            statement,
            expect: None,
        }
    }

    /// A PostgreSQL statement reading the named `WITH` queries, which must
    /// be named uniquely in a batch. Its placeholders count from `$1`
    /// across the queries and the statement, in that order.
    pub(crate) fn with_queries(
        with: Vec<(&'static str, String)>,
        sql: String,
        values: Vec<Value>,
    ) -> Self {
        Self {
            with,
            statement: Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values),
            expect: None,
        }
    }

    /// Fails the batch with `otherwise` unless the write touches exactly
    /// `rows` rows.
    pub(crate) fn expecting(
        mut self,
        rows: u64,
        otherwise: impl FnOnce(u64) -> StoreError + Send + Sync + 'static,
    ) -> Self {
        self.expect = Some((rows, Box::new(otherwise)));
        self
    }

    /// Runs the write alone.
    pub(crate) async fn run(self, db: &impl ConnectionTrait) -> StoreResult<()> {
        let statement = if self.with.is_empty() {
            self.statement
        } else {
            Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                with_queries(&self.with, &self.statement.sql),
                self.statement.values.map(|v| v.0).unwrap_or_default(),
            )
        };
        let touched = db.execute_raw(statement).await?.rows_affected();
        check(self.expect, touched)
    }
}

/// `sql` preceded by its `WITH` queries.
pub(crate) fn with_queries(with: &[(&'static str, String)], sql: &str) -> String {
    let with = with
        .iter()
        .map(|(name, query)| format!("{name} AS ({query})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("WITH {with} {sql}")
}

/// Stages writes with `stage` and sends them at once: the form of a staged
/// write for callers with nothing else to send.
pub(crate) async fn at_once<T>(
    db: &impl ConnectionTrait,
    stage: impl FnOnce(&mut Writes) -> T,
) -> StoreResult<T> {
    let mut writes = Writes::new(db);
    let staged = stage(&mut writes);
    writes.flush(db).await?;
    Ok(staged)
}

fn check(expect: Option<(u64, Otherwise)>, touched: u64) -> StoreResult<()> {
    match expect {
        Some((rows, otherwise)) if rows != touched => Err(otherwise(touched)),
        _ => Ok(()),
    }
}

/// Writes waiting to be sent together with [`Writes::flush`].
#[must_use = "staged writes do nothing until flushed"]
pub(crate) struct Writes {
    backend: DatabaseBackend,
    staged: Vec<Write>,
    /// Users whose rows this transaction locked already, in the order
    /// writers of several users' sequences lock them.
    users_locked: Vec<uuid::Uuid>,
}

impl Writes {
    /// An empty batch for the connection's backend.
    pub(crate) fn new(db: &impl ConnectionTrait) -> Self {
        Self {
            backend: db.get_database_backend(),
            staged: Vec::new(),
            users_locked: Vec::new(),
        }
    }

    /// Records that the transaction locked these users' rows (in id order).
    pub(crate) fn users_locked(&mut self, ids: &[uuid::Uuid]) {
        self.users_locked.extend_from_slice(ids);
    }

    /// Whether the transaction holds every one of these users' rows.
    pub(crate) fn holds_users(&self, ids: &[uuid::Uuid]) -> bool {
        ids.iter().all(|id| self.users_locked.contains(id))
    }

    /// The backend the statements are built for.
    pub(crate) fn backend(&self) -> DatabaseBackend {
        self.backend
    }

    /// Adds a write.
    pub(crate) fn push(&mut self, write: Write) {
        self.staged.push(write);
    }

    /// Sends the writes: one statement on PostgreSQL, one each elsewhere.
    pub(crate) async fn flush(self, db: &impl ConnectionTrait) -> StoreResult<()> {
        if self.backend != DatabaseBackend::Postgres || self.staged.len() < 2 {
            for write in self.staged {
                write.run(db).await?;
            }
            return Ok(());
        }
        let mut with = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut counts = Vec::with_capacity(self.staged.len());
        let mut expects = Vec::with_capacity(self.staged.len());
        for (i, write) in self.staged.into_iter().enumerate() {
            let offset = values.len();
            for (name, sql) in &write.with {
                debug_assert!(
                    !with
                        .iter()
                        .any(|w: &String| w.starts_with(&format!("{name} AS"))),
                    "two writes of a batch name the query {name}"
                );
                with.push(format!("{name} AS ({})", shift_placeholders(sql, offset)));
            }
            let sql = shift_placeholders(&write.statement.sql, offset);
            with.push(format!("w{i} AS ({sql} RETURNING 1)"));
            counts.push(format!("(SELECT count(*) FROM w{i}) AS w{i}"));
            values.extend(write.statement.values.map(|v| v.0).unwrap_or_default());
            expects.push(write.expect);
        }
        let sql = format!("WITH {} SELECT {}", with.join(", "), counts.join(", "));
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                sql,
                values,
            ))
            .await?
            .ok_or_else(|| inconsistent("a batch of writes returned no counts"))?;
        for (i, expect) in expects.into_iter().enumerate() {
            let touched: i64 = row.try_get("", &format!("w{i}"))?;
            check(expect, u64::try_from(touched).unwrap_or(0))?;
        }
        Ok(())
    }
}

/// Renumbers PostgreSQL placeholders `$n` to `$(n + by)`, leaving quoted
/// literals and identifiers alone.
pub(crate) fn shift_placeholders(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        out.push(c);
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut n = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n * 10 + d as usize;
                    chars.next();
                }
                out.push_str(&(n + by).to_string());
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shift_placeholders;

    #[test]
    fn placeholders_shift_outside_quotes_only() {
        assert_eq!(
            shift_placeholders(r#"UPDATE "a$1" SET b = $1, c = '$2' WHERE d = $12"#, 3),
            r#"UPDATE "a$1" SET b = $4, c = '$2' WHERE d = $15"#
        );
        assert_eq!(shift_placeholders("x = $1", 0), "x = $1");
        assert_eq!(shift_placeholders("it''s $2", 1), "it''s $3");
    }
}
