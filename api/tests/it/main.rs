//! Integration tests: a real server on port 0 per test, each with its own
//! database (PostgreSQL cloned from a migrated template, or a fresh SQLite
//! file), driven over HTTP like the apps drive it.

mod authz;
mod concurrency;
mod deploy;
mod deposits;
mod exchange;
mod flows;
mod http;
mod idempotency;
mod kyc;
mod lifecycle;
mod limits;
mod money_race;
mod notify;
mod oauth;
mod pool;
mod precision;
mod push;
mod realtime;
mod requests;
mod reversals;
mod risk;
mod roles;
mod schema;
mod sessions;
mod support;
mod tiers;
mod traces;
mod trusted;
mod webauthn;
