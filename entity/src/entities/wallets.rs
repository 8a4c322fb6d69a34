//! `wallets`: one per user and currency.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// A wallet and its balances.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallets")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Currency code.
    pub currency: String,
    /// available + frozen.
    pub balance: Money,
    /// Spendable.
    pub available: Money,
    /// On hold for pending withdrawals.
    pub frozen: Money,
    /// Owed after a reversal the balance could not cover (see `external:debts`).
    pub debt: Money,
    /// `ACTIVE` or `FROZEN`.
    pub status: String,
    /// Optimistic concurrency version, bumped on every change.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
