//! The outbox relay and (later) the delivery channels of wallet-bff.
//!
//! # Layout
//! - [`relay`]: publishes committed outbox events to the bus, in per-user
//!   order, at least once, waking on PostgreSQL `NOTIFY` and polling as the
//!   fallback (and on SQLite).

pub mod relay;

pub use relay::{Relay, RelayConfig, RelayStats};
