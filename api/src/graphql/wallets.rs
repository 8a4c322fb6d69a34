//! Wallets, history and the money mutations.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use domain::{Currency, DomainError, Email, ErrorCode, IdempotencyKey, MoneyCommand, Recipient};
use entity::StoreError;
use entity::store::history::{self, HistoryQuery};
use entity::store::payments;
use entity::store::wallets;

use super::scalars::Money;
use super::types::{Transaction, TransactionPayload, Wallet};
use super::{PageRequest, parse_id, parts};
use crate::error::{ApiError, Result};

/// Input of `deposit`.
#[derive(InputObject, Debug)]
pub struct DepositInput {
    /// One of the caller's wallets.
    pub wallet_id: ID,
    /// Positive amount, no finer than the currency allows.
    pub amount: Money,
}

/// Input of `withdraw`.
#[derive(InputObject, Debug)]
pub struct WithdrawInput {
    /// One of the caller's wallets.
    pub wallet_id: ID,
    /// Positive amount, no finer than the currency allows.
    pub amount: Money,
    /// Where the payment rail pays to (e.g. an IBAN or account reference).
    pub destination: String,
}

/// Input of `transfer`: exactly one of `toEmail` and `toWalletId`.
#[derive(InputObject, Debug)]
pub struct TransferInput {
    /// One of the caller's wallets.
    pub from_wallet_id: ID,
    /// The recipient's e-mail: their wallet in the same currency receives.
    pub to_email: Option<String>,
    /// The receiving wallet.
    pub to_wallet_id: Option<ID>,
    /// Positive amount, no finer than the currency allows.
    pub amount: Money,
    /// A note for the recipient (up to 280 characters).
    pub memo: Option<String>,
    /// From `finishStepUp`; needed at or above the step-up threshold of the
    /// currency. A retry with the same idempotency key may send it again.
    pub step_up_token: Option<String>,
}

/// Wallet queries.
#[derive(Default)]
pub struct WalletQuery;

#[Object]
impl WalletQuery {
    /// One of the caller's wallets; `NOT_FOUND` for anyone else's.
    async fn wallet(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Wallet>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let id = parse_id(&id, "id")?;
        let wallet = wallets::get_owned(&state.db, user.id, id).await?;
        Ok(Some(wallet.into()))
    }

    /// The caller's transactions, newest first (Relay connection).
    #[graphql(complexity = "super::page_complexity(first, child_complexity)")]
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        wallet_id: Option<ID>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Transaction, EmptyFields, EmptyFields>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let page = PageRequest::parse(first, after.as_deref())?;
        // The home screen's page, read with the session check.
        let home = match (&wallet_id, from, to, page.after) {
            (None, None, None, None) => ctx
                .data_opt::<super::home::ViewerHistory>()
                .and_then(|home| home.page(user.id, page.limit)),
            _ => None,
        };
        let found = match home {
            Some(found) => found,
            None => {
                let wallets = match wallet_id {
                    Some(id) => {
                        let id = parse_id(&id, "walletId")?;
                        vec![wallets::get_owned(&state.db, user.id, id).await?.id]
                    }
                    None => super::types::user_wallets(ctx, user.id)
                        .await?
                        .into_iter()
                        .map(|w| w.id)
                        .collect(),
                };
                if let (Some(f), Some(t)) = (from, to)
                    && f > t
                {
                    return Err(ApiError::from(DomainError::bad_input(
                        "from must not be after to",
                    )));
                }
                history::list(
                    &state.db,
                    &HistoryQuery {
                        wallets,
                        from,
                        to,
                        after: page.after,
                        limit: page.limit,
                    },
                )
                .await?
            }
        };
        Ok(page.connection(
            found.items,
            found.has_next,
            |t| (t.created_at, t.id),
            Transaction::from,
        ))
    }
}

/// Wallet mutations.
#[derive(Default)]
pub struct WalletMutation;

/// Runs a money mutation: rate limit, then the idempotent execution, with
/// the step-up token the client sent for a transfer (`None` for movements
/// that never need one).
async fn run_money(
    ctx: &Context<'_>,
    idempotency_key: &str,
    command: MoneyCommand,
    step_up_token: Option<&str>,
) -> Result<TransactionPayload> {
    let executed = execute_money(ctx, idempotency_key, command, step_up_token).await?;
    Ok(TransactionPayload::new(executed.outcome, executed.replayed))
}

/// [`run_money`], giving the store's outcome.
pub(crate) async fn execute_money(
    ctx: &Context<'_>,
    idempotency_key: &str,
    command: MoneyCommand,
    step_up_token: Option<&str>,
) -> Result<payments::Executed> {
    let (state, viewer) = parts(ctx).map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))?;
    let user = viewer.require_user()?;
    let key = IdempotencyKey::parse(idempotency_key)?;
    state
        .limiter
        .hit(
            crate::limits::Bucket::Money(user.id),
            state.settings.rate_money_per_user,
        )
        .await?;
    let mut checks = payments::Checks {
        limits: &state.settings.kyc.limits,
        risk: entity::store::risk::RiskContext {
            rules: &state.settings.payments.risk,
            session_id: Some(user.session_id),
        },
        step_up: Some(&state.step_up.transfer_thresholds),
    };
    let execute =
        |checks| payments::execute(&state.db, user.id, &key, &command, state.key_policy, checks);
    let executed = match execute(checks).await {
        // A transfer at or above its currency's threshold, fresh work (a
        // retry of a completed request replays its result, whatever became
        // of the token it was sent with): the token is spent on it, and it
        // runs again confirmed. Bound to the key and to what the transfer
        // does, a retry of the same request may reuse the token, a
        // different one may not.
        Err(StoreError::Domain(refused)) if refused.code == ErrorCode::StepUpRequired => {
            let reference = format!(
                "transfer:{}:{}",
                key.as_str(),
                command.fingerprint().as_str()
            );
            crate::auth::webauthn::require_step_up(state, user.id, step_up_token, &reference)
                .await?;
            checks.step_up = None;
            execute(checks).await?
        }
        executed => executed?,
    };
    let t = &executed.outcome.transaction;
    tracing::info!(
        user.id = %user.id,
        tx.id = %t.id,
        tx.kind = t.kind.as_str(),
        replayed = executed.replayed,
        "money mutation"
    );
    Ok(executed)
}

pub(crate) fn bounded_text(value: &str, field: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.chars().count() > max || trimmed.chars().any(char::is_control) {
        return Err(DomainError::bad_input(format!(
            "{field} must have at most {max} characters and no control characters"
        )));
    }
    Ok(trimmed.to_owned())
}

#[Object]
impl WalletMutation {
    /// Opens a wallet in a currency (USD, EUR, BTC, ETH, USDC), or returns
    /// the one already open.
    async fn open_wallet(&self, ctx: &Context<'_>, currency: String) -> Result<Wallet> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let currency = Currency::parse(&currency)?;
        let wallet = wallets::open(&state.db, user.id, currency).await?;
        Ok(wallet.into())
    }

    /// **Sandbox rail, development only**: credits the amount at once, on
    /// the client's word. In production it answers `FORBIDDEN`: real money
    /// comes in through `startDeposit` and the payment provider.
    async fn deposit(
        &self,
        ctx: &Context<'_>,
        input: DepositInput,
        idempotency_key: String,
    ) -> Result<TransactionPayload> {
        let (state, _) = parts(ctx)?;
        if state.settings.app_env == crate::config::AppEnv::Production {
            return Err(ApiError::from(DomainError::forbidden(
                "the sandbox deposit rail is off in production: use startDeposit",
            )));
        }
        let wallet_id = parse_id(&input.wallet_id, "walletId")?;
        let command = MoneyCommand::Deposit {
            wallet_id,
            amount: input.amount.0,
        };
        run_money(ctx, &idempotency_key, command, None).await
    }

    /// Holds an amount for pay-out; the transaction stays PENDING until the
    /// payment rail or an admin settles it.
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        input: WithdrawInput,
        idempotency_key: String,
    ) -> Result<TransactionPayload> {
        let wallet_id = parse_id(&input.wallet_id, "walletId")?;
        let destination = bounded_text(&input.destination, "destination", 255)?;
        if destination.is_empty() {
            return Err(ApiError::from(DomainError::bad_input(
                "destination must not be empty",
            )));
        }
        let command = MoneyCommand::Withdraw {
            wallet_id,
            amount: input.amount.0,
            destination,
        };
        run_money(ctx, &idempotency_key, command, None).await
    }

    /// Sends money to another wallet of the same currency, by the
    /// recipient's e-mail or wallet id.
    async fn transfer(
        &self,
        ctx: &Context<'_>,
        input: TransferInput,
        idempotency_key: String,
    ) -> Result<TransactionPayload> {
        let from_wallet_id = parse_id(&input.from_wallet_id, "fromWalletId")?;
        let to = match (&input.to_email, &input.to_wallet_id) {
            (Some(email), None) => Recipient::Email(Email::parse(email)?),
            (None, Some(id)) => Recipient::Wallet(parse_id(id, "toWalletId")?),
            _ => {
                return Err(ApiError::from(DomainError::bad_input(
                    "give exactly one of toEmail and toWalletId",
                )));
            }
        };
        let memo = input
            .memo
            .as_deref()
            .map(|m| bounded_text(m, "memo", 280))
            .transpose()?
            .filter(|m| !m.is_empty());
        let command = MoneyCommand::Transfer {
            from_wallet_id,
            to,
            amount: input.amount.0,
            memo,
        };
        run_money(
            ctx,
            &idempotency_key,
            command,
            input.step_up_token.as_deref(),
        )
        .await
    }
}
