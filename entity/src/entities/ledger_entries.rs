//! `ledger_entries`: the double-entry journal.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One signed line of a balanced posting.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The transaction the posting belongs to.
    pub transaction_id: Uuid,
    /// The wallet, for wallet accounts.
    pub wallet_id: Option<Uuid>,
    /// `AVAILABLE`, `HELD` or an external account name.
    pub account: String,
    /// Currency code.
    pub currency: String,
    /// Signed amount: positive credits the account.
    pub amount: Money,
    /// Booking time.
    pub created_at: DateTimeUtc,
}

no_relations!();
