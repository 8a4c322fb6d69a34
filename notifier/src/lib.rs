//! The outbox relay and the notifier of wallet-bff.
//!
//! # Layout
//! - [`relay`]: publishes committed outbox events to the bus, in per-user
//!   order, at least once, waking on PostgreSQL `NOTIFY` and polling as the
//!   fallback (and on SQLite); plans each event's deliveries in the same
//!   transaction ([`plan`]).
//! - [`deliver`]: the delivery workers, a pool of their own: take due
//!   deliveries under a lease, render ([`templates`]), send through a
//!   [`channels::Channel`], record sent / retry / dead letter.
//! - [`channels`]: in-app (a notification row, exactly once) and e-mail
//!   (lettre over SMTP).
//! - [`templates`]: title, text and HTML per event kind.

pub mod channels;
pub mod deliver;
pub mod plan;
pub mod relay;
pub mod templates;

pub use deliver::{Deliverer, DeliveryConfig, DeliveryStats, HandOff};
pub use plan::Planner;
pub use relay::{Relay, RelayConfig, RelayStats};
