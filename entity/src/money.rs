//! [`Money`]: an exact decimal column on both backends.
//!
//! SeaORM reads `Decimal` on SQLite through `f64`, which loses digits. Money
//! columns are therefore `NUMERIC(28,18)` on PostgreSQL and `TEXT` holding the
//! canonical decimal on SQLite. Writing binds a `Decimal` value, which the
//! PostgreSQL driver sends as `NUMERIC` and the SQLite driver as its exact
//! text; reading takes the text where there is text and the `NUMERIC`
//! otherwise, and parses it exactly.

use rust_decimal::Decimal;
use sea_orm::sea_query::{ArrayType, ColumnType, Nullable, ValueType, ValueTypeErr};
use sea_orm::{ColIdx, DbErr, QueryResult, TryGetError, TryGetable, Value};

/// An exact amount as stored in the database (may be negative in ledger lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Money(pub Decimal);

impl From<Money> for Value {
    fn from(m: Money) -> Self {
        Value::Decimal(Some(m.0.normalize()))
    }
}

impl From<Decimal> for Money {
    fn from(d: Decimal) -> Self {
        Money(d)
    }
}

impl TryGetable for Money {
    fn try_get_by<I: ColIdx>(res: &QueryResult, idx: I) -> Result<Self, TryGetError> {
        // PostgreSQL: the column is NUMERIC, which the driver decodes
        // exactly. Asked as text first it would build a type-mismatch error
        // (a formatted message) for every amount read.
        if res.try_as_pg_row().is_some() {
            return Decimal::try_get_by(res, idx).map(Money);
        }
        match String::try_get_by(res, idx) {
            Ok(text) => domain::money::parse_exact(&text).map(Money).map_err(|e| {
                TryGetError::DbErr(DbErr::Type(format!("stored amount is not exact: {e}")))
            }),
            Err(TryGetError::Null(col)) => Err(TryGetError::Null(col)),
            // PostgreSQL: the column is NUMERIC, which the driver decodes exactly.
            Err(TryGetError::DbErr(_)) => Decimal::try_get_by(res, idx).map(Money),
        }
    }
}

impl ValueType for Money {
    fn try_from(v: Value) -> Result<Self, ValueTypeErr> {
        match v {
            Value::Decimal(Some(d)) => Ok(Money(d)),
            Value::String(Some(s)) => domain::money::parse_exact(&s)
                .map(Money)
                .map_err(|_| ValueTypeErr),
            _ => Err(ValueTypeErr),
        }
    }

    fn type_name() -> String {
        "Money".to_owned()
    }

    fn array_type() -> ArrayType {
        ArrayType::Decimal
    }

    fn column_type() -> ColumnType {
        ColumnType::Decimal(Some((28, 18)))
    }
}

impl Nullable for Money {
    fn null() -> Value {
        Value::Decimal(None)
    }
}
