//! `payment_requests`: one user asking another for money.

use crate::money::Money;
use sea_orm::entity::prelude::*;

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payment_requests")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Who asks (and receives).
    pub requester_id: Uuid,
    /// Who is asked to pay.
    pub payer_id: Uuid,
    /// The amount.
    pub amount: Money,
    /// Its currency.
    pub currency: String,
    /// The requester's note.
    pub memo: Option<String>,
    /// `PENDING`, `PAID` or `DECLINED` (expiry is read from `expires_at`).
    pub status: String,
    /// The transfer that paid it.
    pub transaction_id: Option<Uuid>,
    /// When it stops being payable.
    pub expires_at: DateTimeUtc,
    /// When it was made.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

no_relations!();
