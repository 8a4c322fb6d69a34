//! `exchange_quotes`: what a user was offered for an exchange between two of
//! their wallets, until when, and the transaction that used it.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One quote.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "exchange_quotes")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose quote it is.
    pub user_id: Uuid,
    /// The wallet the amount leaves.
    pub from_wallet_id: Uuid,
    /// The wallet that receives.
    pub to_wallet_id: Uuid,
    /// Source currency.
    pub from_currency: String,
    /// Target currency.
    pub to_currency: String,
    /// What leaves the source wallet.
    pub amount: Money,
    /// Fee, in the source currency.
    pub fee: Money,
    /// Units of the target per unit of the source.
    pub rate: Money,
    /// Converted amount at ledger precision.
    pub gross: Money,
    /// What the target wallet receives (its scale).
    pub received: Money,
    /// After this the quote cannot be used.
    pub expires_at: DateTimeUtc,
    /// When it was used.
    pub used_at: Option<DateTimeUtc>,
    /// The exchange that used it.
    pub transaction_id: Option<Uuid>,
    /// Creation time.
    pub created_at: DateTimeUtc,
}

no_relations!();
