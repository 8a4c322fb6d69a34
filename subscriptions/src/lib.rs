//! The event bus of wallet-bff.
//!
//! # Layout
//! Today this crate names the topics (re-exported from `domain`): the outbox
//! rows written by `entity` carry them, and they are the Redis channel names.
//! The Redis pub/sub backend, the in-process backend and the fan-out to
//! per-user subscriber channels are the realtime work (issue 3).

pub use domain::Topic;
