//! Transaction history: keyset pagination, newest first, stable under inserts.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Condition, Order, Query, UnionType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Statement,
};
use uuid::Uuid;

use crate::entities::transactions;
use crate::store::records::TransactionRecord;
use crate::store::{StoreResult, bind};

/// Position after which a page starts: the last item seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Its creation time.
    pub created_at: DateTime<Utc>,
    /// Its id (breaks ties).
    pub id: Uuid,
}

/// Which transactions to list.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// The wallets whose transactions are listed: one of the viewer's, or
    /// all of them (the caller has checked they are the viewer's). A
    /// transaction between two of them is listed once.
    pub wallets: Vec<Uuid>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// Start after this position.
    pub after: Option<Position>,
    /// Page size.
    pub limit: u64,
}

impl HistoryQuery {
    /// The newest `limit` transactions of `wallets`: a first page without
    /// filters (the home screen's).
    pub fn newest(wallets: Vec<Uuid>, limit: u64) -> Self {
        Self {
            wallets,
            from: None,
            to: None,
            after: None,
            limit,
        }
    }
}

/// One page.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<TransactionRecord>,
    /// Whether more items follow.
    pub has_next: bool,
}

/// Splits the `limit + 1` rows a page query fetched into the page and
/// whether more follow.
pub fn split_page<T>(mut rows: Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let has_next = rows.len() > limit;
    rows.truncate(limit);
    (rows, has_next)
}

/// Rows strictly after `pos` in newest-first (creation time, id) order.
pub fn before<C: ColumnTrait>(created_at: C, id: C, pos: Position) -> Condition {
    Condition::any().add(created_at.lt(pos.created_at)).add(
        Condition::all()
            .add(created_at.eq(pos.created_at))
            .add(id.lt(pos.id)),
    )
}

/// Lists a page of the viewer's transactions.
pub async fn list(db: &impl ConnectionTrait, q: &HistoryQuery) -> StoreResult<HistoryPage> {
    let wallet_ids = &q.wallets;
    if wallet_ids.is_empty() {
        return Ok(HistoryPage {
            items: Vec::new(),
            has_next: false,
        });
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        return fetch_page(db, postgres_page(q), q.limit).await;
    }
    // One index range scan per wallet and side, each reading at most a page
    // (the (wallet, created_at, id) indexes give the order), merged by the
    // database: an OR over both columns would read every matching row and
    // sort them for one page. A movement between two of the listed wallets
    // is in its sender's branch only, so the branches never overlap.
    let branch = |column: transactions::Column, wallet: Uuid| {
        let mut select = transactions::Entity::find().filter(column.eq(wallet));
        if matches!(column, transactions::Column::ToWalletId) {
            // Sent from one of the listed wallets: the sender's branch has it.
            select = select.filter(
                Condition::any()
                    .add(transactions::Column::FromWalletId.is_null())
                    .add(transactions::Column::FromWalletId.is_not_in(wallet_ids.iter().copied())),
            );
        }
        if let Some(from) = q.from {
            select = select.filter(transactions::Column::CreatedAt.gte(from));
        }
        if let Some(to) = q.to {
            select = select.filter(transactions::Column::CreatedAt.lt(to));
        }
        if let Some(after) = q.after {
            select = select.filter(before(
                transactions::Column::CreatedAt,
                transactions::Column::Id,
                after,
            ));
        }
        let inner = select
            .order_by_desc(transactions::Column::CreatedAt)
            .order_by_desc(transactions::Column::Id)
            .limit(q.limit + 1)
            .into_query();
        // SQLite takes ORDER BY and LIMIT in a compound member only inside
        // a subquery.
        Query::select()
            .column(Asterisk)
            .from_subquery(inner, Alias::new("page"))
            .to_owned()
    };
    let mut branches = wallet_ids.iter().flat_map(|w| {
        [
            branch(transactions::Column::FromWalletId, *w),
            branch(transactions::Column::ToWalletId, *w),
        ]
    });
    let Some(mut union) = branches.next() else {
        return Ok(HistoryPage {
            items: Vec::new(),
            has_next: false,
        });
    };
    for other in branches {
        union.union(UnionType::All, other);
    }
    let page = Query::select()
        .column(Asterisk)
        .from_subquery(union, Alias::new("merged"))
        .order_by(transactions::Column::CreatedAt, Order::Desc)
        .order_by(transactions::Column::Id, Order::Desc)
        .limit(q.limit + 1)
        .to_owned();
    fetch_page(db, db.get_database_backend().build(&page), q.limit).await
}

/// Runs a page query that fetched `limit + 1` rows.
async fn fetch_page(
    db: &impl ConnectionTrait,
    statement: Statement,
    limit: u64,
) -> StoreResult<HistoryPage> {
    let rows = transactions::Model::find_by_statement(statement)
        .all(db)
        .await?;
    let (rows, has_next) = split_page(rows, limit);
    let items = rows
        .into_iter()
        .map(TransactionRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HistoryPage { items, has_next })
}

/// [`list`]'s statement on PostgreSQL: the same plan, written out rather
/// than built with the query builder for every page asked (the home screen
/// asks on every visit); its text depends only on the number of wallets and
/// on which filters are given, so each shape is prepared once per connection.
fn postgres_page(q: &HistoryQuery) -> Statement {
    use std::fmt::Write;
    let mut values: Vec<sea_orm::Value> = q.wallets.iter().map(|w| (*w).into()).collect();
    let ours = (1..=q.wallets.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let limit = bind(&mut values, i64::try_from(q.limit + 1).unwrap_or(i64::MAX));
    let mut filters = String::new();
    if let Some(from) = q.from {
        let _ = write!(filters, " AND created_at >= {}", bind(&mut values, from));
    }
    if let Some(to) = q.to {
        let _ = write!(filters, " AND created_at < {}", bind(&mut values, to));
    }
    if let Some(after) = q.after {
        let (at, id) = (
            bind(&mut values, after.created_at),
            bind(&mut values, after.id),
        );
        let _ = write!(filters, " AND (created_at, id) < ({at}, {id})");
    }
    let order = format!("ORDER BY created_at DESC, id DESC LIMIT {limit}");
    let mut sql = String::from("SELECT * FROM (");
    for i in 1..=q.wallets.len() {
        if i > 1 {
            sql.push_str(" UNION ALL ");
        }
        // Sent from one of the listed wallets: the sender's branch has it.
        let _ = write!(
            sql,
            "(SELECT * FROM transactions WHERE from_wallet_id = ${i}{filters} {order}) \
             UNION ALL \
             (SELECT * FROM transactions WHERE to_wallet_id = ${i} \
              AND (from_wallet_id IS NULL OR from_wallet_id NOT IN ({ours})){filters} {order})"
        );
    }
    let _ = write!(sql, ") page {order}");
    Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}
