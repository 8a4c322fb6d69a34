//! Currency exchange between a user's own wallets: a quote first, then the
//! exchange at the quoted rate under an idempotency key.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::Currency;
use domain::MoneyCommand;
use entity::store::exchange::{self, QuoteRecord, QuoteRequest};

use super::scalars::Money;
use super::types::{Transaction, Wallet};
use super::{parse_id, parts};
use crate::error::{ApiError, Result};

/// A priced offer to exchange; use it with `exchange` before `expiresAt`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ExchangeQuote {
    /// Id, for `exchange`.
    pub id: ID,
    /// The wallet the amount leaves.
    pub from_wallet_id: ID,
    /// The wallet that receives.
    pub to_wallet_id: ID,
    /// Source currency.
    pub from_currency: String,
    /// Target currency.
    pub to_currency: String,
    /// What leaves the source wallet, fee included.
    pub amount: Money,
    /// The fee, in the source currency.
    pub fee: Money,
    /// Units of the target currency per unit of the source (18 digits).
    pub rate: Money,
    /// What the target wallet receives, rounded down to its currency's scale.
    pub receive_amount: Money,
    /// After this the quote answers `QUOTE_EXPIRED`.
    pub expires_at: DateTime<Utc>,
}

impl From<QuoteRecord> for ExchangeQuote {
    fn from(q: QuoteRecord) -> Self {
        Self {
            id: ID(q.id.to_string()),
            from_wallet_id: ID(q.from_wallet_id.to_string()),
            to_wallet_id: ID(q.to_wallet_id.to_string()),
            from_currency: q.from_currency.code().to_owned(),
            to_currency: q.to_currency.code().to_owned(),
            amount: Money::of(q.figures.amount, q.from_currency),
            fee: Money::of(q.figures.fee, q.from_currency),
            rate: Money(q.figures.rate.normalize()),
            receive_amount: Money::of(q.figures.received, q.to_currency),
            expires_at: q.expires_at,
        }
    }
}

/// The result of `exchange`.
#[derive(SimpleObject, Debug, Clone)]
pub struct ExchangePayload {
    /// The `EXCHANGE` transaction (its amount is the source amount).
    pub transaction: Transaction,
    /// The source wallet after the exchange.
    pub from_wallet: Wallet,
    /// The target wallet after the exchange.
    pub to_wallet: Wallet,
    /// The quote it was made at.
    pub quote: ExchangeQuote,
    /// True when this result was replayed for a repeated idempotency key.
    pub replayed: bool,
}

/// Exchange mutations.
#[derive(Default)]
pub struct ExchangeMutation;

async fn quote(
    ctx: &Context<'_>,
    from_wallet_id: &ID,
    to_currency: &str,
    amount: Money,
) -> Result<ExchangeQuote> {
    let (state, viewer) = parts(ctx).map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))?;
    let user = viewer.require_user()?;
    let from_wallet_id = parse_id(from_wallet_id, "fromWalletId")?;
    let to_currency = Currency::parse(to_currency)?;
    let rates = state.rates.current().await?;
    let fx = &state.settings.fx;
    let record = exchange::create_quote(
        &state.db,
        &rates,
        QuoteRequest {
            user_id: user.id,
            from_wallet_id,
            to_currency,
            amount: amount.0,
            fee_bps: fx.fee_bps,
            ttl: chrono::Duration::from_std(fx.quote_ttl).map_err(ApiError::internal)?,
        },
    )
    .await?;
    Ok(record.into())
}

#[Object]
impl ExchangeMutation {
    /// Prices an exchange of `amount` from one of the caller's wallets into
    /// their wallet in `toCurrency` (which must be open). The fee comes out
    /// of the amount; the rest converts at the current rate. Errors:
    /// `PROVIDER_UNAVAILABLE` when rates are stale, `CURRENCY_MISMATCH` for
    /// the same currency, `BAD_USER_INPUT` for amounts too small to buy
    /// anything.
    async fn quote_exchange(
        &self,
        ctx: &Context<'_>,
        from_wallet_id: ID,
        to_currency: String,
        amount: Money,
    ) -> Result<ExchangeQuote> {
        quote(ctx, &from_wallet_id, &to_currency, amount).await
    }

    /// Exchanges at a quote, atomically and once per idempotency key.
    /// Errors: `QUOTE_EXPIRED` (expired or already used), `NOT_FOUND` (not
    /// the caller's quote), `INSUFFICIENT_FUNDS`, `WALLET_FROZEN`.
    async fn exchange(
        &self,
        ctx: &Context<'_>,
        quote_id: ID,
        idempotency_key: String,
    ) -> Result<ExchangePayload> {
        let quote_id = parse_id(&quote_id, "quoteId")?;
        let command = MoneyCommand::Exchange { quote_id };
        let executed = super::wallets::execute_money(ctx, &idempotency_key, command, None).await?;
        let state = ctx.data::<crate::state::AppState>()?;
        let outcome = executed.outcome;
        let quote = exchange::of_transaction(&state.db, outcome.transaction.id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("exchange without its quote")))?;
        let to_wallet = outcome.counterpart.ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("exchange without its target wallet"))
        })?;
        Ok(ExchangePayload {
            transaction: outcome.transaction.into(),
            from_wallet: outcome.wallet.into(),
            to_wallet: to_wallet.into(),
            quote: quote.into(),
            replayed: executed.replayed,
        })
    }
}
