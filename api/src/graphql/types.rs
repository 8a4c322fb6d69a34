//! GraphQL object types. They are built from store records, never from rows.

use async_graphql::{ComplexObject, Context, Enum, ID, SimpleObject, Union};
use chrono::{DateTime, Utc};
use entity::store::records::{MoneyOutcome, TransactionRecord, UserRecord, WalletRecord};

use super::kyc::{KycHistoryEntry, KycStatus};
use super::scalars::Money;
use crate::error::{ApiError, Result};
use crate::state::AppState;

/// A role.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(name = "Role")]
pub enum RoleGql {
    /// Every registered user.
    User,
    /// Customer support.
    Support,
    /// Compliance officers.
    Compliance,
    /// Administrators.
    Admin,
}

impl From<RoleGql> for domain::Role {
    fn from(r: RoleGql) -> Self {
        match r {
            RoleGql::User => domain::Role::User,
            RoleGql::Support => domain::Role::Support,
            RoleGql::Compliance => domain::Role::Compliance,
            RoleGql::Admin => domain::Role::Admin,
        }
    }
}

impl From<domain::Role> for RoleGql {
    fn from(r: domain::Role) -> Self {
        match r {
            domain::Role::User => RoleGql::User,
            domain::Role::Support => RoleGql::Support,
            domain::Role::Compliance => RoleGql::Compliance,
            domain::Role::Admin => RoleGql::Admin,
        }
    }
}

/// The viewer's wallets, read at most once per HTTP query operation
/// (`me { wallets }`, `me { limits }` and `transactions` all need them).
/// Mutations and other users' wallets always read afresh.
#[derive(Debug, Default, Clone)]
pub struct ViewerWallets(tokio::sync::OnceCell<Vec<WalletRecord>>);

impl ViewerWallets {
    /// The wallets read with the session check.
    pub fn read(wallets: Vec<WalletRecord>) -> Self {
        Self(tokio::sync::OnceCell::new_with(Some(wallets)))
    }
}

/// The wallets of `user_id`, from the operation's [`ViewerWallets`] when
/// they are the viewer's and the operation is a query.
pub(crate) async fn user_wallets(
    ctx: &Context<'_>,
    user_id: uuid::Uuid,
) -> Result<Vec<WalletRecord>, ApiError> {
    let state = ctx.data_unchecked::<AppState>();
    let load = || entity::store::wallets::list_for_user(&state.db, user_id);
    let viewer_is_user = matches!(ctx.data_opt::<crate::auth::Viewer>(),
        Some(crate::auth::Viewer::User(u)) if u.id == user_id);
    let query =
        ctx.query_env.operation.node.ty == async_graphql::parser::types::OperationType::Query;
    match ctx.data_opt::<ViewerWallets>() {
        Some(cache) if viewer_is_user && query => Ok(cache.0.get_or_try_init(load).await?.clone()),
        _ => Ok(load().await?),
    }
}

/// A user account.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct User {
    /// The account's identifier (a UUID), the same in every event about it.
    pub id: ID,
    /// E-mail address.
    pub email: String,
    /// Name shown to others.
    pub display_name: String,
    /// Roles, always including USER.
    pub roles: Vec<RoleGql>,
    /// Where identity verification stands; `kycHistory` has each change.
    pub kyc_status: KycStatus,
    /// KYC level reached.
    pub kyc_level: i32,
    /// Whether a WebAuthn second factor is registered.
    pub two_factor_enabled: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub user_id: uuid::Uuid,
}

#[ComplexObject]
impl User {
    /// The user's wallets, oldest first.
    async fn wallets(&self, ctx: &Context<'_>) -> Result<Vec<Wallet>> {
        let list = user_wallets(ctx, self.user_id).await?;
        Ok(list.into_iter().map(Wallet::from).collect())
    }

    /// The user's personal details; only the user themself sees them (null
    /// for anyone else).
    async fn profile(&self, ctx: &Context<'_>) -> Result<Option<Profile>> {
        let (state, viewer) = super::parts(ctx)?;
        if !matches!(viewer, crate::auth::Viewer::User(u) if u.id == self.user_id) {
            return Ok(None);
        }
        let profile = entity::store::account::profile(&state.db, &state.pii, self.user_id).await?;
        Ok(Some(profile.into()))
    }

    /// Every change of the user's KYC status, oldest first: submissions,
    /// the provider's reviews and compliance decisions.
    async fn kyc_history(&self, ctx: &Context<'_>) -> Result<Vec<KycHistoryEntry>> {
        let state = ctx.data::<AppState>()?;
        let list = entity::store::kyc::history(&state.db, self.user_id).await?;
        Ok(list.into_iter().map(Into::into).collect())
    }

    /// What the user may still move: for each wallet's currency and each
    /// kind of movement, the limit at the user's verification level and what
    /// remains of the rolling 24 hours.
    async fn limits(&self, ctx: &Context<'_>) -> Result<Vec<TierLimit>> {
        let state = ctx.data::<AppState>()?;
        let wallets = user_wallets(ctx, self.user_id).await?;
        let list = entity::store::limits::allowances(
            &state.db,
            &state.settings.kyc.limits,
            self.user_id,
            &wallets,
        )
        .await?;
        Ok(list.into_iter().map(TierLimit::from).collect())
    }
}

/// One limit on the user's movements and what remains of it.
#[derive(SimpleObject, Debug, Clone)]
pub struct TierLimit {
    /// The currency of the amounts, e.g. "USD".
    pub currency: String,
    /// The kind of movement limited.
    pub kind: TransactionKind,
    /// Largest single movement.
    pub per_transaction: Money,
    /// Largest total over a rolling 24 hours.
    pub daily_limit: Money,
    /// What the last 24 hours leave of the daily limit.
    pub daily_remaining: Money,
}

impl From<domain::limits::Allowance> for TierLimit {
    fn from(a: domain::limits::Allowance) -> Self {
        Self {
            currency: a.currency.code().to_owned(),
            kind: a.kind.into(),
            per_transaction: Money::of(a.limit.per_transaction, a.currency),
            daily_limit: Money::of(a.limit.daily, a.currency),
            daily_remaining: Money::of(a.daily_remaining, a.currency),
        }
    }
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: ID(u.id.to_string()),
            email: u.email,
            display_name: u.display_name,
            roles: u.roles.into_iter().map(RoleGql::from).collect(),
            kyc_status: u.kyc_status.into(),
            kyc_level: u.kyc_level,
            two_factor_enabled: u.two_factor_enabled,
            created_at: u.created_at,
            user_id: u.id,
        }
    }
}

/// Whether a wallet may move money.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum WalletStatus {
    /// Sends and receives money.
    Active,
    /// Frozen by an administrator.
    Frozen,
    /// The account was closed.
    Closed,
}

/// A wallet in one currency.
#[derive(SimpleObject, Debug, Clone)]
pub struct Wallet {
    /// The wallet's identifier (a UUID), as money mutations and
    /// `transactions(walletId:)` name it.
    pub id: ID,
    /// Currency code, e.g. "USD".
    pub currency: String,
    /// Total: available plus frozen.
    pub balance: Money,
    /// Spendable now: the balance less the frozen part.
    pub available_balance: Money,
    /// Held for pending withdrawals, refunds and movements under risk review.
    pub frozen_balance: Money,
    /// What the owner owes after a reversal the balance could not cover;
    /// money arriving in the wallet repays it first.
    pub debt: Money,
    /// Whether the wallet may move money.
    pub status: WalletStatus,
    /// Incremented by every change; newer is larger.
    pub version: i64,
    /// When its balances or status last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<WalletRecord> for Wallet {
    fn from(w: WalletRecord) -> Self {
        Self {
            id: ID(w.id.to_string()),
            currency: w.currency.code().to_owned(),
            balance: Money::of(w.balance(), w.currency),
            available_balance: Money::of(w.available, w.currency),
            frozen_balance: Money::of(w.frozen, w.currency),
            debt: Money::of(w.debt, w.currency),
            status: match w.status {
                domain::WalletStatus::Active => WalletStatus::Active,
                domain::WalletStatus::Frozen => WalletStatus::Frozen,
                domain::WalletStatus::Closed => WalletStatus::Closed,
            },
            version: w.version,
            updated_at: w.updated_at,
        }
    }
}

/// What moved the money.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::TransactionKind")]
pub enum TransactionKind {
    /// Funding from the payment rail.
    Deposit,
    /// Pay-out to the payment rail.
    Withdrawal,
    /// From one user's wallet to another wallet of the same currency.
    Transfer,
    /// Between two of the user's wallets in different currencies.
    Exchange,
    /// Part of a card deposit paid back to the card; `originalId` names the deposit.
    Refund,
    /// Staff undid a transfer or deposit; `originalId` names it.
    Reversal,
}

/// Where a transaction is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Waiting for the payment rail.
    Pending,
    /// Held by the risk checks: the funds are set aside until compliance
    /// releases or rejects the movement (`transactionUpdated` tells which).
    Held,
    /// Done: the balances changed.
    Completed,
    /// Refused by the rail or by compliance; holds released.
    Failed,
    /// Undone by staff; a `REVERSAL` transaction names it as `originalId`.
    Reversed,
}

/// A movement of money: a deposit, withdrawal, transfer, exchange, refund
/// or reversal.
#[derive(SimpleObject, Debug, Clone)]
pub struct Transaction {
    /// The movement's identifier (a UUID), the same in its events and
    /// notifications.
    pub id: ID,
    /// What moved the money.
    pub kind: TransactionKind,
    /// Where it is in its life; `transactionUpdated` tells of each change.
    pub status: TransactionStatus,
    /// The amount moved, always positive: `fromWalletId` and `toWalletId`
    /// give the direction.
    pub amount: Money,
    /// The currency of `amount`, e.g. "USD".
    pub currency: String,
    /// Debited wallet (none for deposits).
    pub from_wallet_id: Option<ID>,
    /// Credited wallet (none for withdrawals).
    pub to_wallet_id: Option<ID>,
    /// The sender's note.
    pub memo: Option<String>,
    /// Withdrawal destination.
    pub destination: Option<String>,
    /// When it was made; history pages are newest first by it.
    pub created_at: DateTime<Utc>,
    /// Last status change.
    pub updated_at: DateTime<Utc>,
    /// For a refund or reversal: the movement it compensates.
    pub original_id: Option<ID>,
}

impl From<TransactionRecord> for Transaction {
    fn from(t: TransactionRecord) -> Self {
        Self {
            id: ID(t.id.to_string()),
            kind: t.kind.into(),
            status: match t.status {
                domain::TransactionStatus::Pending => TransactionStatus::Pending,
                domain::TransactionStatus::Held => TransactionStatus::Held,
                domain::TransactionStatus::Completed => TransactionStatus::Completed,
                domain::TransactionStatus::Failed => TransactionStatus::Failed,
                domain::TransactionStatus::Reversed => TransactionStatus::Reversed,
            },
            amount: Money::of(t.amount, t.currency),
            currency: t.currency.code().to_owned(),
            from_wallet_id: t.from_wallet_id.map(|id| ID(id.to_string())),
            to_wallet_id: t.to_wallet_id.map(|id| ID(id.to_string())),
            memo: t.memo,
            destination: t.destination,
            created_at: t.created_at,
            updated_at: t.updated_at,
            original_id: t.original_id.map(|id| ID(id.to_string())),
        }
    }
}

/// The result of a money mutation.
#[derive(SimpleObject, Debug, Clone)]
pub struct TransactionPayload {
    /// The movement the mutation made (the first time, when replayed).
    pub transaction: Transaction,
    /// The caller's wallet after the change.
    pub wallet: Wallet,
    /// True when this result was replayed for a repeated idempotency key.
    pub replayed: bool,
}

impl TransactionPayload {
    /// From a store outcome.
    pub fn new(outcome: MoneyOutcome, replayed: bool) -> Self {
        Self {
            transaction: outcome.transaction.into(),
            wallet: outcome.wallet.into(),
            replayed,
        }
    }
}

/// A signed-in session.
#[derive(SimpleObject, Debug, Clone)]
pub struct AuthPayload {
    /// Short-lived JWT for the `Authorization: Bearer` header.
    pub access_token: String,
    /// Opaque token for `refreshSession`; rotates on every use.
    pub refresh_token: String,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// The user.
    pub user: User,
}

/// A login that needs a WebAuthn assertion to finish.
#[derive(SimpleObject, Debug, Clone)]
pub struct MfaChallenge {
    /// Token to pass to `finishWebauthnLogin`.
    pub mfa_token: String,
    /// `PublicKeyCredentialRequestOptions` for `navigator.credentials.get`.
    pub webauthn_options: async_graphql::Json<serde_json::Value>,
}

/// The outcome of a login.
#[derive(Union, Debug, Clone)]
pub enum LoginResult {
    /// Signed in.
    AuthPayload(AuthPayload),
    /// A second factor is needed.
    MfaChallenge(MfaChallenge),
}

/// A postal address.
#[derive(SimpleObject, Debug, Clone)]
pub struct PostalAddress {
    /// Street and number.
    pub street: String,
    /// Town or city.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-3 country code.
    pub country: String,
}

impl From<domain::kyc::Address> for PostalAddress {
    fn from(a: domain::kyc::Address) -> Self {
        Self {
            street: a.street,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// The user's personal details (stored encrypted; visible to the user only).
#[derive(SimpleObject, Debug, Clone)]
pub struct Profile {
    /// Phone number, E.164 (`+447911123456`).
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// Preferred locale, BCP 47 (`en-GB`).
    pub locale: Option<String>,
}

impl From<entity::store::account::Profile> for Profile {
    fn from(p: entity::store::account::Profile) -> Self {
        Self {
            phone: p.phone,
            address: p.address.map(Into::into),
            locale: p.locale,
        }
    }
}
