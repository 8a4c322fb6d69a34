//! Exchange quotes. The exchange itself is a money command
//! ([`domain::MoneyCommand::Exchange`]): it runs in the money
//! transaction under an idempotency key and uses the quote once.

use chrono::{DateTime, Duration, Utc};
use domain::fx::{QuoteFigures, Rates};
use domain::{Amount, Currency, DomainError, ErrorCode};
use rust_decimal::Decimal;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, EntityTrait};
use uuid::Uuid;

use crate::entities::exchange_quotes;
use crate::money::Money;
use crate::store::{StoreError, StoreResult, inconsistent, now, wallets};

/// A quote as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRecord {
    /// Id.
    pub id: Uuid,
    /// The wallet the amount leaves.
    pub from_wallet_id: Uuid,
    /// The wallet that receives.
    pub to_wallet_id: Uuid,
    /// Source currency.
    pub from_currency: Currency,
    /// Target currency.
    pub to_currency: Currency,
    /// The figures.
    pub figures: QuoteFigures,
    /// Until when it can be used.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub used_at: Option<DateTime<Utc>>,
}

impl TryFrom<exchange_quotes::Model> for QuoteRecord {
    type Error = StoreError;

    fn try_from(row: exchange_quotes::Model) -> Result<Self, Self::Error> {
        let currency =
            |c: &str| Currency::parse(c).map_err(|_| inconsistent(format!("quote currency {c}")));
        Ok(Self {
            id: row.id,
            from_wallet_id: row.from_wallet_id,
            to_wallet_id: row.to_wallet_id,
            from_currency: currency(&row.from_currency)?,
            to_currency: currency(&row.to_currency)?,
            figures: QuoteFigures {
                amount: row.amount.0,
                fee: row.fee.0,
                rate: row.rate.0,
                gross: row.gross.0,
                received: row.received.0,
                residue: row.gross.0 - row.received.0,
            },
            expires_at: row.expires_at,
            used_at: row.used_at,
        })
    }
}

/// What an exchange quote is asked for.
#[derive(Debug, Clone, Copy)]
pub struct QuoteRequest {
    /// The caller.
    pub user_id: Uuid,
    /// The caller's source wallet.
    pub from_wallet_id: Uuid,
    /// The currency wanted (the caller must hold a wallet in it).
    pub to_currency: Currency,
    /// What leaves the source wallet.
    pub amount: Decimal,
    /// Fee in basis points of the amount.
    pub fee_bps: u32,
    /// How long the quote holds.
    pub ttl: Duration,
}

/// Prices and stores a quote.
pub async fn create_quote(
    db: &DatabaseConnection,
    rates: &Rates,
    req: QuoteRequest,
) -> StoreResult<QuoteRecord> {
    let from = wallets::get_owned(db, req.user_id, req.from_wallet_id).await?;
    let amount = Amount::new(req.amount, from.currency)?;
    let to = wallets::find_by_currency(db, req.user_id, req.to_currency)
        .await?
        .ok_or_else(|| {
            DomainError::new(
                ErrorCode::NotFound,
                format!("open a wallet in {} first", req.to_currency),
            )
        })?;
    let figures = domain::fx::quote(
        rates,
        from.currency,
        to.currency,
        amount.value(),
        req.fee_bps,
    )?;
    let at = now();
    let row = exchange_quotes::Model {
        id: Uuid::now_v7(),
        user_id: req.user_id,
        from_wallet_id: from.id,
        to_wallet_id: to.id,
        from_currency: from.currency.code().to_owned(),
        to_currency: to.currency.code().to_owned(),
        amount: Money(figures.amount),
        fee: Money(figures.fee),
        rate: Money(figures.rate),
        gross: Money(figures.gross),
        received: Money(figures.received),
        expires_at: at + req.ttl,
        used_at: None,
        transaction_id: None,
        created_at: at,
    };
    exchange_quotes::Entity::insert(exchange_quotes::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    row.try_into()
}

/// The caller's quote, locked, if it can still be used.
pub(crate) async fn take(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    quote_id: Uuid,
) -> StoreResult<QuoteRecord> {
    use sea_orm::QuerySelect;
    let row = exchange_quotes::Entity::find_by_id(quote_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .filter(|q| q.user_id == user_id)
        .ok_or_else(|| StoreError::from(DomainError::not_found("quote")))?;
    if row.used_at.is_some() {
        return Err(DomainError::new(
            ErrorCode::QuoteExpired,
            "this quote was already used: ask for a new one",
        )
        .into());
    }
    if row.expires_at < now() {
        return Err(DomainError::new(
            ErrorCode::QuoteExpired,
            "this quote expired: ask for a new one",
        )
        .into());
    }
    row.try_into()
}

/// Marks a quote used by a transaction.
pub(crate) async fn mark_used(
    txn: &impl ConnectionTrait,
    quote_id: Uuid,
    transaction_id: Uuid,
) -> StoreResult<()> {
    exchange_quotes::Entity::update(exchange_quotes::ActiveModel {
        id: Set(quote_id),
        used_at: Set(Some(now())),
        transaction_id: Set(Some(transaction_id)),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(())
}

/// The quote an exchange transaction used.
pub async fn of_transaction(
    db: &impl ConnectionTrait,
    transaction_id: Uuid,
) -> StoreResult<Option<QuoteRecord>> {
    use sea_orm::{ColumnTrait, QueryFilter};
    exchange_quotes::Entity::find()
        .filter(exchange_quotes::Column::TransactionId.eq(transaction_id))
        .one(db)
        .await?
        .map(QuoteRecord::try_from)
        .transpose()
}
