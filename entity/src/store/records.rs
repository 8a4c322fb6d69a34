//! Records: rows turned into typed values the API can rely on.

use chrono::{DateTime, Utc};
use domain::{Currency, KycStatus, Role, TransactionKind, TransactionStatus, WalletStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use domain::{TransactionRecord, WalletRecord};

use crate::entities::{transactions, users, wallets};
use crate::store::{StoreError, inconsistent};

/// A user account as the API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Id.
    pub id: Uuid,
    /// Normalized e-mail.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Granted roles, sorted; always contains `User`.
    pub roles: Vec<Role>,
    /// Where the user is in identity verification.
    pub kyc_status: KycStatus,
    /// KYC level.
    pub kyc_level: i32,
    /// Whether a second factor is registered.
    pub two_factor_enabled: bool,
    /// When the account was closed (nothing can be done with it since).
    pub closed_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl UserRecord {
    /// Builds the record from the row and its role rows.
    pub fn from_row(row: users::Model, role_names: &[String]) -> Result<Self, StoreError> {
        Ok(Self {
            roles: Self::roles_of(role_names.iter().map(String::as_str))?,
            kyc_status: Self::kyc_status_of(row.id, &row.kyc_status)?,
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            kyc_level: row.kyc_level,
            two_factor_enabled: row.two_factor_enabled,
            closed_at: row.closed_at,
            created_at: row.created_at,
        })
    }

    /// The roles of the stored names, sorted, with `User` always among them.
    pub(crate) fn roles_of<'n>(
        role_names: impl IntoIterator<Item = &'n str>,
    ) -> Result<Vec<Role>, StoreError> {
        let mut roles = vec![Role::User];
        for name in role_names {
            let role =
                Role::parse(name).map_err(|_| inconsistent(format!("unknown role {name}")))?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        roles.sort();
        Ok(roles)
    }

    /// User `id`'s stored KYC status.
    pub(crate) fn kyc_status_of(id: Uuid, stored: &str) -> Result<KycStatus, StoreError> {
        KycStatus::parse(stored).map_err(|_| inconsistent(format!("user {id} kyc status")))
    }
}

impl TryFrom<wallets::Model> for WalletRecord {
    type Error = StoreError;

    fn try_from(row: wallets::Model) -> Result<Self, Self::Error> {
        if row.balance.0 != row.available.0 + row.frozen.0 {
            return Err(inconsistent(format!(
                "wallet {} balance != available + frozen",
                row.id
            )));
        }
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            currency: Currency::parse(&row.currency)
                .map_err(|_| inconsistent(format!("wallet {} currency", row.id)))?,
            available: row.available.0.normalize(),
            frozen: row.frozen.0.normalize(),
            status: WalletStatus::parse(&row.status)
                .map_err(|_| inconsistent(format!("wallet {} status", row.id)))?,
            version: row.version,
            updated_at: row.updated_at,
            debt: row.debt.0.normalize(),
        })
    }
}

impl TryFrom<transactions::Model> for TransactionRecord {
    type Error = StoreError;

    fn try_from(row: transactions::Model) -> Result<Self, Self::Error> {
        let bad = |what: &str| inconsistent(format!("transaction {} {what}", row.id));
        Ok(Self {
            id: row.id,
            kind: TransactionKind::parse(&row.kind).map_err(|_| bad("kind"))?,
            status: TransactionStatus::parse(&row.status).map_err(|_| bad("status"))?,
            amount: row.amount.0.normalize(),
            currency: Currency::parse(&row.currency).map_err(|_| bad("currency"))?,
            from_wallet_id: row.from_wallet_id,
            to_wallet_id: row.to_wallet_id,
            memo: row.memo,
            destination: row.destination,
            created_at: row.created_at,
            updated_at: row.updated_at,
            original_id: row.original_id,
        })
    }
}

/// What a money mutation returns, and what an idempotency key replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoneyOutcome {
    /// The transaction created or changed.
    pub transaction: TransactionRecord,
    /// The caller's wallet right after the change.
    pub wallet: WalletRecord,
    /// The caller's other wallet, for an exchange (the one that received).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<WalletRecord>,
}
