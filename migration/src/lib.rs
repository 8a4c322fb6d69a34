//! SeaORM migrations of wallet-bff, for PostgreSQL and SQLite.
//!
//! # Layout
//! - [`m20261121_000001_initial`]: users, roles, refresh tokens, wallets, the
//!   double-entry ledger, transactions, idempotency keys, the outbox and the
//!   audit log.
//! - [`m20261122_000001_security`]: WebAuthn credentials, authentication
//!   flows (ceremonies, MFA and OAuth2 logins, step-up tokens), OAuth2 identities.
//! - [`m20261201_000001_notifier`]: delivery records of the notifier; the
//!   source event of each in-app notification.
//! - [`m20261202_000001_kyc`]: per-user data keys, KYC applications (sealed
//!   personal data), status history, webhook receipts; the profile and the
//!   closing and erasure times of users.
//! - [`m20261202_000002_exchange`]: exchange quotes.
//! - [`m20261202_000003_payments`]: card deposits' payment intents and the payment log.
//! - [`m20261203_000001_money_control`]: risk scores and alerts, debts, refunds, payment requests.
//! - [`m20261203_000002_outbox_trace`]: the outbox's trace context and the relays' wake-up trigger.
//! - [`m20261204_000001_outbox_waiting`]: unpublished events by age, for the relay.
//! - [`m20261204_000002_limit_usage`]: what each wallet moved per kind and hour (PostgreSQL).
//!
//! Amount columns are `NUMERIC(28,18)` on PostgreSQL and `TEXT` holding the
//! canonical decimal on SQLite, where SeaORM would otherwise go through `f64`.

pub use sea_orm_migration::prelude::*;

pub mod m20261121_000001_initial;
pub mod m20261122_000001_security;
pub mod m20261201_000001_notifier;
pub mod m20261202_000001_kyc;
pub mod m20261202_000002_exchange;
pub mod m20261202_000003_payments;
pub mod m20261203_000001_money_control;
pub mod m20261203_000002_outbox_trace;
pub mod m20261204_000001_outbox_waiting;
pub mod m20261204_000002_limit_usage;
pub mod m20261207_000001_queue_indexes;
pub mod m20261207_000002_deliveries_dead_index;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261122_000001_security::Migration),
            Box::new(m20261201_000001_notifier::Migration),
            Box::new(m20261202_000001_kyc::Migration),
            Box::new(m20261202_000002_exchange::Migration),
            Box::new(m20261202_000003_payments::Migration),
            Box::new(m20261203_000001_money_control::Migration),
            Box::new(m20261203_000002_outbox_trace::Migration),
            Box::new(m20261204_000001_outbox_waiting::Migration),
            Box::new(m20261204_000002_limit_usage::Migration),
            Box::new(m20261207_000001_queue_indexes::Migration),
            Box::new(m20261207_000002_deliveries_dead_index::Migration),
        ]
    }
}
