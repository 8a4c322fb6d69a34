//! Business rules of wallet-bff, free of I/O: nothing here knows axum,
//! async-graphql, sea-orm or redis.
//!
//! # Layout
//! - [`command`]: the money mutations ([`MoneyCommand`]) with their idempotency fingerprints.
//! - [`error`]: the stable error codes of the API contract and the domain error type.
//! - [`events`]: the event contract: [`Envelope`] around a typed [`EventBody`], its topics and versioned wire form.
//! - [`fx`]: exchange rates, quotes and the rounding of exchanges between currencies.
//! - [`money`]: currencies with their scales and validated, exact amounts.
//! - [`identity`]: validated e-mail addresses, passwords, display names and roles.
//! - [`idempotency`]: idempotency keys and request fingerprints.
//! - [`kyc`]: KYC statuses and the review decisions that move between them.
//! - [`ledger`]: wallet balances and the balanced double-entry postings that change them.
//! - [`limits`]: tier limits per transaction and per rolling day, by KYC level, kind and currency.
//! - [`notify`]: which events reach people on which channels, delivery states, retry with backoff.
//! - [`payments`]: card deposits through the payment provider: intent lifecycle, minor units.
//! - [`requests`]: payment requests: who may answer them, and their expiry.
//! - [`risk`]: risk rules scored inside the money transaction: allow, hold for review, or block.
//! - [`step_up`]: the transfer amounts, per currency, that need a second factor confirmed.
//! - [`records`]: wallets, transactions and notifications as values (what events carry and the API shows).
//! - [`transaction`]: kinds and states of money movements.

/// Declares an enum with a fixed stored/displayed string per variant.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The stored and displayed form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the stored form.
            pub fn parse(text: &str) -> Result<Self, $crate::error::DomainError> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err($crate::error::DomainError::bad_input(format!(
                        concat!("unknown ", stringify!($name), " `{}`"),
                        other
                    ))),
                }
            }
        }
    };
}

pub mod command;
pub mod error;
pub mod events;
pub mod fx;
pub mod idempotency;
pub mod identity;
pub mod kyc;
pub mod ledger;
pub mod limits;
pub mod money;
pub mod notify;
pub mod payments;
pub mod records;
pub mod requests;
pub mod risk;
pub mod step_up;
pub mod transaction;

pub use command::{MoneyCommand, Recipient};
pub use error::{DomainError, ErrorCode};
pub use events::{Envelope, EventBody, Topic};
pub use idempotency::{Fingerprint, IdempotencyKey};
pub use identity::{DisplayName, Email, Password, Role};
pub use kyc::{KycDecision, KycStatus};
pub use ledger::{Balances, Bucket, EntryAccount, Posting, PostingLine};
pub use money::{Amount, Currency};
pub use records::{NotificationRecord, TransactionRecord, WalletRecord};
pub use transaction::{
    HoldDecision, TransactionKind, TransactionStatus, WalletStatus, WithdrawalOutcome,
};
