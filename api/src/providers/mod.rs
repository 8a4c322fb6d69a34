//! Clients of outside providers, each behind a configurable base URL.

pub mod kyc;
pub mod payments;
pub mod rates;
