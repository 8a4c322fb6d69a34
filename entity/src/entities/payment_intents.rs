//! `payment_intents`: card deposits at the payment provider.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One deposit's payment intent.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_intents")]
pub struct Model {
    /// Primary key (our id, shown to the app).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Who deposits.
    pub user_id: Uuid,
    /// The wallet credited on success.
    pub wallet_id: Uuid,
    /// The provider's intent id (`pi_...`), unique.
    pub provider_id: String,
    /// The amount.
    pub amount: Money,
    /// How much of it was refunded (or is being refunded).
    pub refunded: Money,
    /// Its currency.
    pub currency: String,
    /// `REQUIRES_ACTION`, `PROCESSING`, `SUCCEEDED`, `FAILED` or `CANCELED`.
    pub status: String,
    /// What the app confirms the payment with.
    pub client_secret: Option<String>,
    /// The deposit transaction, once succeeded.
    pub transaction_id: Option<Uuid>,
    /// Creation time of the last provider event applied.
    pub last_event_at: Option<DateTimeUtc>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
