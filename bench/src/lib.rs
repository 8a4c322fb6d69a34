//! Tools that measure wallet-bff; see BENCHMARKS.md for the figures.
//!
//! # Layout
//! - `src/bin/ws_idle.rs`: resident memory per idle, subscribed WebSocket
//!   connection, for our buffer sizes against tungstenite's defaults.
//! - `src/bin/notify_burst.rs`: a burst of transfers through the notifier to
//!   a real SMTP server, healthy and slow: e-mails per second, and the
//!   commit-to-subscriber latency of the same transfers' live events.
