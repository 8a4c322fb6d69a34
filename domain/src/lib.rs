//! Business rules of wallet-bff, free of I/O: nothing here knows axum,
//! async-graphql, sea-orm or redis.
//!
//! # Layout
//! - [`error`]: the stable error codes of the API contract and the domain error type.
//! - [`events`]: the topics of the live events.
//! - [`money`]: currencies with their scales and validated, exact amounts.
//! - [`identity`]: validated e-mail addresses, passwords, display names and roles.
//! - [`idempotency`]: idempotency keys and request fingerprints.
//! - [`ledger`]: wallet balances and the balanced double-entry postings that change them.
//! - [`transaction`]: kinds and states of money movements.

pub mod error;
pub mod events;
pub mod idempotency;
pub mod identity;
pub mod ledger;
pub mod money;
pub mod transaction;

pub use error::{DomainError, ErrorCode};
pub use events::Topic;
pub use idempotency::{Fingerprint, IdempotencyKey};
pub use identity::{DisplayName, Email, Password, Role};
pub use ledger::{Balances, Bucket, EntryAccount, Posting, PostingLine};
pub use money::{Amount, Currency};
pub use transaction::{TransactionKind, TransactionStatus, WalletStatus, WithdrawalOutcome};
