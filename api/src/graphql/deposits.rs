//! Card deposits through the payment provider: `startDeposit` creates the
//! payment intent the app confirms; the provider's webhook
//! (`POST /webhooks/payments`) credits the wallet once it succeeded.

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use domain::{Amount, DomainError, ErrorCode, IdempotencyKey};
use entity::store::deposits::{self, IntentRecord, Started};

use super::scalars::Money;
use super::wallets::DepositInput;
use super::{parse_id, parts};
use crate::error::{ApiError, Result};

/// Where a card deposit is.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::payments::IntentStatus")]
pub enum DepositStatus {
    /// The app must confirm the payment (client secret or redirect).
    RequiresAction,
    /// Confirmed; the provider is settling it.
    Processing,
    /// Paid: the wallet was credited.
    Succeeded,
    /// The payment failed; nothing was credited.
    Failed,
    /// Canceled before it was paid.
    Canceled,
}

/// A card deposit at the payment provider.
#[derive(SimpleObject, Debug, Clone)]
pub struct DepositIntent {
    /// Our id (for `depositIntent`).
    pub id: ID,
    /// Where it is; the wallet is credited when it becomes `SUCCEEDED`.
    pub status: DepositStatus,
    /// For the provider's client SDK to confirm the payment.
    pub client_secret: Option<String>,
    /// Where to send the user, for payment methods that redirect.
    pub redirect_url: Option<String>,
    /// The amount.
    pub amount: Money,
    /// Its currency.
    pub currency: String,
    /// The wallet credited.
    pub wallet_id: ID,
}

impl From<IntentRecord> for DepositIntent {
    fn from(i: IntentRecord) -> Self {
        Self {
            id: ID(i.id.to_string()),
            status: i.status.into(),
            client_secret: i.client_secret,
            redirect_url: i.redirect_url,
            amount: Money::of(i.amount, i.currency),
            currency: i.currency.code().to_owned(),
            wallet_id: ID(i.wallet_id.to_string()),
        }
    }
}

/// Card deposit queries.
#[derive(Default)]
pub struct DepositQuery;

#[Object]
impl DepositQuery {
    /// One of the caller's card deposits.
    async fn deposit_intent(&self, ctx: &Context<'_>, id: ID) -> Result<DepositIntent> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let id = parse_id(&id, "id")?;
        let intent = deposits::get(&state.db, user.id, id).await?;
        Ok(intent.into())
    }
}

/// Card deposit mutations.
#[derive(Default)]
pub struct DepositMutation;

async fn start(ctx: &Context<'_>, input: DepositInput, key: &str) -> Result<DepositIntent> {
    let (state, viewer) = parts(ctx).map_err(|e| ApiError::internal(anyhow::anyhow!(e.message)))?;
    let user = viewer.require_user()?;
    let key = IdempotencyKey::parse(key)?;
    state
        .limiter
        .hit(
            crate::limits::Bucket::Money(user.id),
            state.settings.rate_money_per_user,
        )
        .await?;
    let wallet_id = parse_id(&input.wallet_id, "walletId")?;
    let wallet = entity::store::wallets::get_owned(&state.db, user.id, wallet_id).await?;
    let amount = Amount::new(input.amount.0, wallet.currency)?;
    let minor = domain::payments::to_minor_units(amount.value(), wallet.currency)?;
    let client = state.payments.as_ref().ok_or_else(|| {
        DomainError::new(
            ErrorCode::ProviderUnavailable,
            "card deposits are not available on this server",
        )
    })?;
    let lease = match deposits::claim(
        &state.db,
        user.id,
        &key,
        wallet.id,
        amount.value(),
        state.key_policy,
    )
    .await?
    {
        Started::Replayed(intent) => return Ok((*intent).into()),
        Started::Fresh(lease) => lease,
    };
    let work = async {
        entity::store::limits::check(
            &state.db,
            &state.settings.kyc.limits,
            &wallet,
            domain::TransactionKind::Deposit,
            amount.value(),
        )
        .await?;
        let id = uuid::Uuid::now_v7();
        // The provider's own idempotency: a retry of this request (same
        // user and key) gets the same intent.
        let provider_key = format!("{}:{}", user.id, key.as_str());
        let created = client
            .create_intent(&provider_key, minor, wallet.currency, id)
            .await?;
        let intent = IntentRecord {
            id,
            wallet_id: wallet.id,
            provider_id: created.id,
            amount: amount.value(),
            currency: wallet.currency,
            status: domain::payments::IntentStatus::RequiresAction,
            client_secret: created.client_secret,
            redirect_url: created
                .next_action
                .and_then(|n| n.redirect_to_url)
                .map(|r| r.url),
        };
        deposits::record(&state.db, &lease, user.id, &intent).await?;
        Ok::<_, ApiError>(intent)
    }
    .await;
    match work {
        Ok(intent) => {
            tracing::info!(user.id = %user.id, deposit.id = %intent.id, "card deposit started");
            Ok(intent.into())
        }
        Err(err) => {
            deposits::release(&state.db, &lease).await;
            Err(err)
        }
    }
}

#[Object]
impl DepositMutation {
    /// Starts a card deposit (USD or EUR) at the payment provider and
    /// returns what the app confirms it with. The wallet is credited only
    /// when the provider reports the payment succeeded. Errors:
    /// `PROVIDER_UNAVAILABLE` (nothing started; retry with the same key),
    /// `KYC_REQUIRED` / `LIMIT_EXCEEDED`, `BAD_USER_INPUT`.
    async fn start_deposit(
        &self,
        ctx: &Context<'_>,
        input: DepositInput,
        idempotency_key: String,
    ) -> Result<DepositIntent> {
        start(ctx, input, &idempotency_key).await
    }
}
