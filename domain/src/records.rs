//! What the system holds about wallets, transactions and notifications, as
//! plain values: what events carry, idempotent results replay and the API
//! shows. The store builds them from rows; nothing here knows a table.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ledger::Balances;
use crate::money::Currency;
use crate::transaction::{TransactionKind, TransactionStatus, WalletStatus};

/// A wallet and its balances at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletRecord {
    /// The wallet's id.
    pub id: Uuid,
    /// The user who owns it.
    pub user_id: Uuid,
    /// The one currency it holds.
    pub currency: Currency,
    /// What the owner can spend now.
    pub available: Decimal,
    /// What is held for pending withdrawals.
    pub frozen: Decimal,
    /// Whether money may move in and out.
    pub status: WalletStatus,
    /// Bumped on every change of the balances or the status.
    pub version: i64,
    /// When the balances or the status last changed.
    pub updated_at: DateTime<Utc>,
    /// What the owner owes after a reversal the balance could not cover;
    /// money arriving in the wallet repays it first.
    #[serde(default)]
    pub debt: Decimal,
}

impl WalletRecord {
    /// The total balance: available plus frozen.
    pub fn balance(&self) -> Decimal {
        self.available + self.frozen
    }

    /// The balances the ledger rules work on.
    pub fn balances(&self) -> Balances {
        Balances {
            available: self.available,
            frozen: self.frozen,
        }
    }
}

/// A money movement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionRecord {
    /// The transaction's id.
    pub id: Uuid,
    /// Deposit, withdrawal or transfer.
    pub kind: TransactionKind,
    /// Where it is in its life.
    pub status: TransactionStatus,
    /// The amount moved, always positive.
    pub amount: Decimal,
    /// The currency of the amount.
    pub currency: Currency,
    /// The wallet debited (none for deposits).
    pub from_wallet_id: Option<Uuid>,
    /// The wallet credited (none for withdrawals).
    pub to_wallet_id: Option<Uuid>,
    /// The sender's note to the receiver of a transfer.
    pub memo: Option<String>,
    /// Where a withdrawal is paid to (the rail's account reference).
    pub destination: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// For a reversal or refund: the movement it compensates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_id: Option<Uuid>,
}

/// An in-app notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRecord {
    /// The notification's id.
    pub id: Uuid,
    /// The sequence of its `notification.created` event.
    pub sequence: i64,
    /// What it is about, e.g. `transfer.received`.
    pub kind: String,
    /// Short title.
    pub title: String,
    /// The text shown to the user (amounts and display names, never secrets).
    pub body: String,
    /// Ids the app can link to, e.g. `transactionId`.
    pub data: serde_json::Value,
    /// When the user read it.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The event it announces (its deliveries are that event's); absent for
    /// notifications made before the notifier delivered them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_event_id: Option<Uuid>,
}
