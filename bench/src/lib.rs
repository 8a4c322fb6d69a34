//! Tools that measure wallet-bff; see BENCHMARKS.md for the figures.
//!
//! # Layout
//! - `src/bin/ws_idle.rs`: resident memory per idle, subscribed WebSocket
//!   connection, for our buffer sizes against tungstenite's defaults.
