//! `transactions`: money movements as users see them.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One deposit, withdrawal or transfer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transactions")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `DEPOSIT`, `WITHDRAWAL` or `TRANSFER`.
    pub kind: String,
    /// `PENDING`, `COMPLETED`, `FAILED` or `REVERSED`.
    pub status: String,
    /// Positive amount.
    pub amount: Money,
    /// Currency code.
    pub currency: String,
    /// Debited wallet (none for deposits).
    pub from_wallet_id: Option<Uuid>,
    /// Credited wallet (none for withdrawals).
    pub to_wallet_id: Option<Uuid>,
    /// Free text from the sender.
    pub memo: Option<String>,
    /// Withdrawal destination reference.
    pub destination: Option<String>,
    /// The user who started it.
    pub initiated_by: Uuid,
    /// Creation time (microseconds).
    pub created_at: DateTimeUtc,
    /// Last status change.
    pub updated_at: DateTimeUtc,
    /// For a reversal or refund: the movement it compensates.
    pub original_id: Option<Uuid>,
    /// The risk score at creation (movements out only).
    pub risk_score: Option<i32>,
    /// The risk rules that fired, comma-separated.
    pub risk_rules: Option<String>,
}

no_relations!();
