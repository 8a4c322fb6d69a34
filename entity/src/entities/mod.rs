//! SeaORM entities, one file per table. Rows, not API types: the store
//! turns them into records and domain types.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod audit_log;
pub mod auth_flows;
pub mod deliveries;
pub mod exchange_quotes;
pub mod idempotency_keys;
pub mod kyc_applications;
pub mod kyc_status_history;
pub mod kyc_webhooks;
pub mod ledger_entries;
pub mod notification_preferences;
pub mod notifications;
pub mod oauth_identities;
pub mod outbox_events;
pub mod outbox_pruned;
pub mod payment_events;
pub mod payment_intents;
pub mod payment_requests;
pub mod payouts;
pub mod push_devices;
pub mod refresh_tokens;
pub mod refunds;
pub mod risk_alerts;
pub mod sessions;
pub mod transactions;
pub mod user_keys;
pub mod user_roles;
pub mod users;
pub mod wallets;
pub mod webauthn_credentials;
