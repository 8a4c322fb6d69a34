//! `risk_alerts`: movements whose risk score crossed the hold or block
//! threshold, and what compliance decided about the held ones.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One alert.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "risk_alerts")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose movement.
    pub user_id: Uuid,
    /// The held movement; none for a blocked one (it was never made).
    pub transaction_id: Option<Uuid>,
    /// `TRANSFER` or `WITHDRAWAL`.
    pub kind: String,
    /// The amount.
    pub amount: Money,
    /// Its currency.
    pub currency: String,
    /// The score, 0 to 100.
    pub score: i32,
    /// `HOLD` or `BLOCK`.
    pub decision: String,
    /// The rules that fired with what they saw (JSON array).
    pub hits: String,
    /// `RELEASED` or `REJECTED` once compliance decided a hold.
    pub resolution: Option<String>,
    /// The compliance officer who decided.
    pub resolved_by: Option<Uuid>,
    /// Their reason.
    pub reason: Option<String>,
    /// When they decided.
    pub resolved_at: Option<DateTimeUtc>,
    /// When the movement was scored.
    pub created_at: DateTimeUtc,
}

no_relations!();
