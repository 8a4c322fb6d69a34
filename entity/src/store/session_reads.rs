//! What a query's session check reads along: the account with its roles,
//! its wallets and, for the home screen, the first page of its history. On
//! PostgreSQL that is one statement, the one every signed-in query waits
//! for, so its rows are read by position: by name, each column would be a
//! formatted `prefix_column` string and a map lookup, and each NULL an
//! error built and dropped: about a sixth of the server's time on the home
//! screen went to that (BENCHMARKS.md). Only the account's columns a
//! [`UserRecord`] holds are read, not its password hash or personal data.

use std::sync::{Arc, OnceLock};

use sea_orm::sea_query::ColumnType;
use sea_orm::sqlx::postgres::{PgRow, Postgres};
use sea_orm::sqlx::{Decode, Row, Type};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, IdenStatic, Iterable, RuntimeErr,
    Statement,
};
use uuid::Uuid;

use crate::entities::{transactions, users, wallets};
use crate::money::Money;
use crate::store::history::{self, HistoryPage, HistoryQuery};
use crate::store::records::{TransactionRecord, UserRecord, WalletRecord};
use crate::store::{StoreResult, inconsistent};

/// What a query operation's session check reads along: the account's
/// wallets, and the first page of its transaction history when the
/// operation asks for one.
#[derive(Debug, Clone)]
pub struct SessionReads {
    /// The account with its roles.
    pub user: UserRecord,
    /// Its wallets, oldest first.
    pub wallets: Vec<WalletRecord>,
    /// The newest `limit` transactions of all its wallets, when asked for:
    /// the page [`history::list`] gives for those wallets without filters.
    pub history: Option<HistoryPage>,
}

/// The account of a live session with its wallets (oldest first) and, with
/// `history_limit`, the first page of its history, for a query operation
/// (the home screen shows balances and the latest transactions): `None`
/// when the session is unknown, revoked or not the user's. On PostgreSQL
/// one statement reads the session, the account, its roles, its wallets
/// and the page.
pub async fn load(
    db: &impl ConnectionTrait,
    id: Uuid,
    session_id: Uuid,
    history_limit: Option<u64>,
) -> StoreResult<Option<SessionReads>> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        let Some(user) = super::users::load_for_session(db, id, session_id).await? else {
            return Ok(None);
        };
        let wallets = super::wallets::list_for_user(db, id).await?;
        let history = match history_limit {
            Some(limit) => {
                let ids = wallets.iter().map(|w| w.id).collect();
                Some(history::list(db, &HistoryQuery::newest(ids, limit)).await?)
            }
            None => None,
        };
        return Ok(Some(SessionReads {
            user,
            wallets,
            history,
        }));
    }
    static WALLETS: OnceLock<(String, Layout)> = OnceLock::new();
    static WITH_HISTORY: OnceLock<(String, Layout)> = OnceLock::new();
    let (sql, layout) = match history_limit {
        None => WALLETS.get_or_init(|| statement(false)),
        Some(_) => WITH_HISTORY.get_or_init(|| statement(true)),
    };
    let mut values: Vec<sea_orm::Value> = vec![id.into(), session_id.into()];
    if let Some(limit) = history_limit {
        // One more than the page: whether another follows.
        values.push(i64::try_from(limit + 1).unwrap_or(i64::MAX).into());
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql.as_str(),
            values,
        ))
        .await?;
    let mut user = None;
    let mut wallets = Vec::new();
    let mut movements = Vec::new();
    for row in &rows {
        let row = row
            .try_as_pg_row()
            .ok_or_else(|| inconsistent("a PostgreSQL statement answered another row type"))?;
        let mut cells = Columns { row, at: 0 };
        match cells.next::<i32>()? {
            ACCOUNT_PART => user = Some(account(&mut cells)?),
            WALLET_PART => {
                cells.at = layout.wallet;
                wallets.push(WalletRecord::try_from(wallet(&mut cells)?)?);
            }
            MOVEMENT_PART => {
                cells.at = layout.movement;
                movements.push(movement(&mut cells)?);
            }
            part => return Err(inconsistent(format!("a session read's row of part {part}"))),
        }
    }
    // No account row: the session is not live (and nothing else was read).
    let Some(user) = user else {
        return Ok(None);
    };
    let history = match history_limit {
        Some(limit) => {
            let (items, has_next) = history::split_page(movements, limit);
            Some(HistoryPage {
                items: items
                    .into_iter()
                    .map(TransactionRecord::try_from)
                    .collect::<Result<_, _>>()?,
                has_next,
            })
        }
        None => None,
    };
    Ok(Some(SessionReads {
        user,
        wallets,
        history,
    }))
}

/// The rows' `part`: the account (one row), a wallet, a movement of the
/// page.
const ACCOUNT_PART: i32 = 0;
const WALLET_PART: i32 = 1;
const MOVEMENT_PART: i32 = 2;

/// The account's columns, in the order [`account`] reads them; its roles
/// follow, comma-separated.
const ACCOUNT_COLUMNS: [users::Column; 8] = [
    users::Column::Id,
    users::Column::Email,
    users::Column::DisplayName,
    users::Column::KycStatus,
    users::Column::KycLevel,
    users::Column::TwoFactorEnabled,
    users::Column::ClosedAt,
    users::Column::CreatedAt,
];

/// Where each part's cells start in a row (0-based): `part`, the account's
/// columns and its roles, each wallet column (in the entity's order), each
/// transaction column. A row fills its own part's cells and leaves the
/// others NULL.
#[derive(Clone, Copy)]
struct Layout {
    wallet: usize,
    movement: usize,
}

impl Layout {
    /// Where [`cells`] put each part (after the `part` cell itself).
    fn of(cells: &[Cell]) -> Self {
        let start = |part: i32| {
            1 + cells
                .iter()
                .position(|c| c.part == part)
                .expect("every part has cells")
        };
        Layout {
            wallet: start(WALLET_PART),
            movement: start(MOVEMENT_PART),
        }
    }
}

/// One cell of the statement's rows: the part that fills it, with what,
/// and the NULL of its type the other parts put there. Typed, because
/// PostgreSQL resolves a UNION's column types branch by branch: a movement
/// column NULL in both the account and the wallet branches would become
/// text before it met the movements' uuid or numeric.
struct Cell {
    part: i32,
    value: String,
    null: String,
}

/// The rows' cells after `part`: the account's, the wallet's, the movement's.
fn cells() -> Vec<Cell> {
    fn of<C: ColumnTrait + IdenStatic>(part: i32, table: &str, column: C) -> Cell {
        let null = match column.def().get_column_type() {
            ColumnType::Uuid => "uuid",
            ColumnType::Decimal(_) => "numeric",
            ColumnType::TimestampWithTimeZone => "timestamptz",
            ColumnType::Integer => "integer",
            ColumnType::BigInteger => "bigint",
            ColumnType::Boolean => "boolean",
            // Strings, and anything else as text (a type this does not
            // know fails the statement, loudly, in every test).
            _ => "text",
        };
        Cell {
            part,
            value: format!("{table}.{}", column.as_str()),
            null: format!("NULL::{null}"),
        }
    }
    let mut cells: Vec<Cell> = ACCOUNT_COLUMNS
        .into_iter()
        .map(|c| of(ACCOUNT_PART, "u", c))
        .collect();
    cells.push(Cell {
        part: ACCOUNT_PART,
        value: "(SELECT string_agg(r.role, ',') FROM user_roles r WHERE r.user_id = u.id)"
            .to_owned(),
        null: "NULL::text".to_owned(),
    });
    cells.extend(wallets::Column::iter().map(|c| of(WALLET_PART, "w", c)));
    cells.extend(transactions::Column::iter().map(|c| of(MOVEMENT_PART, "t", c)));
    cells
}

/// [`load`]'s statement on PostgreSQL: nothing at all unless the session is
/// live. The page is [`history::list`]'s for all the wallets: each wallet's
/// newest sent and received movements through their indexes, a movement
/// between two of them in its sender's branch only, merged and cut. With
/// it, where its rows put each part.
fn statement(history: bool) -> (String, Layout) {
    let cells = cells();
    let layout = Layout::of(&cells);
    let row = |part: i32| {
        let values = cells
            .iter()
            .map(|c| if c.part == part { &c.value } else { &c.null })
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        format!("SELECT {part}, {values}")
    };
    // The position (1-based, `part` first) of a cell the rows are ordered by.
    let position = |value: &str| {
        2 + cells
            .iter()
            .position(|c| c.value == value)
            .expect("the entity has the column")
    };
    let order = format!(
        "ORDER BY 1, {} ASC, {} ASC, {} DESC, {} DESC",
        position("w.created_at"),
        position("w.id"),
        position("t.created_at"),
        position("t.id"),
    );
    let live = "WITH live AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM sessions s \
                 WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL) AS ok), \
               mine AS MATERIALIZED (SELECT * FROM wallets WHERE user_id = $1 AND (SELECT ok FROM live))";
    let parts = format!(
        "{} FROM users u WHERE u.id = $1 AND (SELECT ok FROM live) UNION ALL {} FROM mine w",
        row(ACCOUNT_PART),
        row(WALLET_PART),
    );
    if !history {
        return (format!("{live} {parts} {order}"), layout);
    }
    let page_order = "ORDER BY created_at DESC, id DESC LIMIT $3";
    let movement = row(MOVEMENT_PART);
    let sql = format!(
        "{live}, \
         page AS (SELECT * FROM (\
             SELECT t.* FROM mine w CROSS JOIN LATERAL (\
               SELECT * FROM transactions WHERE from_wallet_id = w.id {page_order}) t \
             UNION ALL \
             SELECT t.* FROM mine w CROSS JOIN LATERAL (\
               SELECT * FROM transactions WHERE to_wallet_id = w.id \
               AND (from_wallet_id IS NULL OR from_wallet_id NOT IN (SELECT id FROM mine)) {page_order}) t\
           ) p {page_order}) \
         {parts} \
         UNION ALL {movement} FROM page t \
         {order}"
    );
    (sql, layout)
}

/// A row's columns, read in order from a position.
struct Columns<'r> {
    row: &'r PgRow,
    at: usize,
}

impl<'r> Columns<'r> {
    /// The next cell.
    fn next<T: Decode<'r, Postgres> + Type<Postgres>>(&mut self) -> StoreResult<T> {
        let value = self
            .row
            .try_get(self.at)
            .map_err(|e| DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))))?;
        self.at += 1;
        Ok(value)
    }

    /// The next cell, an amount.
    fn money(&mut self) -> StoreResult<Money> {
        self.next().map(Money)
    }
}

/// The account row: [`ACCOUNT_COLUMNS`], then the roles.
fn account(c: &mut Columns<'_>) -> StoreResult<UserRecord> {
    let id: Uuid = c.next()?;
    let email = c.next()?;
    let display_name = c.next()?;
    let kyc_status: String = c.next()?;
    let kyc_level = c.next()?;
    let two_factor_enabled = c.next()?;
    let closed_at = c.next()?;
    let created_at = c.next()?;
    let roles: Option<&str> = c.next()?;
    Ok(UserRecord {
        id,
        email,
        display_name,
        roles: UserRecord::roles_of(roles.into_iter().flat_map(|r| r.split(',')))?,
        kyc_status: UserRecord::kyc_status_of(id, &kyc_status)?,
        kyc_level,
        two_factor_enabled,
        closed_at,
        created_at,
    })
}

/// A wallet row, its columns in the entity's order (the statement lists
/// `wallets::Column::iter()`).
fn wallet(c: &mut Columns<'_>) -> StoreResult<wallets::Model> {
    Ok(wallets::Model {
        id: c.next()?,
        user_id: c.next()?,
        currency: c.next()?,
        balance: c.money()?,
        available: c.money()?,
        frozen: c.money()?,
        debt: c.money()?,
        status: c.next()?,
        version: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
    })
}

/// A movement row, its columns in the entity's order (the statement lists
/// `transactions::Column::iter()`).
fn movement(c: &mut Columns<'_>) -> StoreResult<transactions::Model> {
    Ok(transactions::Model {
        id: c.next()?,
        kind: c.next()?,
        status: c.next()?,
        amount: c.money()?,
        currency: c.next()?,
        from_wallet_id: c.next()?,
        to_wallet_id: c.next()?,
        memo: c.next()?,
        destination: c.next()?,
        initiated_by: c.next()?,
        created_at: c.next()?,
        updated_at: c.next()?,
        original_id: c.next()?,
        risk_score: c.next()?,
        risk_rules: c.next()?,
    })
}
