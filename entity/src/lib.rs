//! SeaORM entities of wallet-bff and the store functions that turn rows into
//! records and run the database transactions.
//!
//! # Layout
//! - [`money`]: the exact [`Money`] column type (NUMERIC on PostgreSQL, text on SQLite).
//! - [`entities`]: one module per table.
//! - [`pii`]: personal data sealed with AES-256-GCM under master and per-user keys.
//! - [`store`]: connecting, and the operations the API calls, each in one
//!   database transaction: users and sessions, wallets, money movements with
//!   idempotency, history, outbox events and audit records.

pub mod entities;
pub mod money;
pub mod pii;
pub mod store;
pub mod trace;

pub use money::Money;
pub use store::{StoreError, StoreResult};
