//! SeaORM entities, one module per table. Rows, not API types: the store
//! turns them into records and domain types.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// `users`: accounts.
pub mod users {
    use sea_orm::entity::prelude::*;

    /// A user account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Normalized e-mail address, unique.
        pub email: String,
        /// Name shown to other users.
        pub display_name: String,
        /// argon2id PHC string; `None` for accounts without a password.
        pub password_hash: Option<String>,
        /// KYC status (`NOT_STARTED`, ...).
        pub kyc_status: String,
        /// KYC level reached.
        pub kyc_level: i32,
        /// Whether a second factor is registered.
        pub two_factor_enabled: bool,
        /// When an identity provider vouched for the e-mail address.
        pub email_verified_at: Option<DateTimeUtc>,
        /// Last event sequence handed out for this user.
        pub event_seq: i64,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `user_roles`: roles granted to users.
pub mod user_roles {
    use sea_orm::entity::prelude::*;

    /// One role of one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "user_roles")]
    pub struct Model {
        /// The user.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        /// The role name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub role: String,
        /// When it was granted.
        pub granted_at: DateTimeUtc,
    }

    no_relations!();
}

/// `sessions`: login sessions, the families of refresh tokens.
pub mod sessions {
    use sea_orm::entity::prelude::*;

    /// One login session.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        /// The family id carried by its refresh tokens and access tokens (`sid`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// Login time.
        pub created_at: DateTimeUtc,
        /// Logout or reuse-detection time.
        pub revoked_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

/// `refresh_tokens`: rotating refresh tokens, grouped in families.
pub mod refresh_tokens {
    use sea_orm::entity::prelude::*;

    /// One issued refresh token (only its hash is kept).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// The login session this token belongs to.
        pub family_id: Uuid,
        /// SHA-256 of the token, hex.
        pub token_hash: String,
        /// Issue time.
        pub created_at: DateTimeUtc,
        /// Expiry.
        pub expires_at: DateTimeUtc,
        /// When it was exchanged for a new one.
        pub used_at: Option<DateTimeUtc>,
        /// When its family was revoked.
        pub revoked_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

/// `wallets`: one per user and currency.
pub mod wallets {
    use crate::money::Money;
    use sea_orm::entity::prelude::*;

    /// A wallet and its balances.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wallets")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// Currency code.
        pub currency: String,
        /// available + frozen.
        pub balance: Money,
        /// Spendable.
        pub available: Money,
        /// On hold for pending withdrawals.
        pub frozen: Money,
        /// `ACTIVE` or `FROZEN`.
        pub status: String,
        /// Optimistic concurrency version, bumped on every change.
        pub version: i64,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `transactions`: money movements as users see them.
pub mod transactions {
    use crate::money::Money;
    use sea_orm::entity::prelude::*;

    /// One deposit, withdrawal or transfer.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transactions")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// `DEPOSIT`, `WITHDRAWAL` or `TRANSFER`.
        pub kind: String,
        /// `PENDING`, `COMPLETED`, `FAILED` or `REVERSED`.
        pub status: String,
        /// Positive amount.
        pub amount: Money,
        /// Currency code.
        pub currency: String,
        /// Debited wallet (none for deposits).
        pub from_wallet_id: Option<Uuid>,
        /// Credited wallet (none for withdrawals).
        pub to_wallet_id: Option<Uuid>,
        /// Free text from the sender.
        pub memo: Option<String>,
        /// Withdrawal destination reference.
        pub destination: Option<String>,
        /// The user who started it.
        pub initiated_by: Uuid,
        /// Creation time (microseconds).
        pub created_at: DateTimeUtc,
        /// Last status change.
        pub updated_at: DateTimeUtc,
    }

    no_relations!();
}

/// `ledger_entries`: the double-entry journal.
pub mod ledger_entries {
    use crate::money::Money;
    use sea_orm::entity::prelude::*;

    /// One signed line of a balanced posting.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The transaction the posting belongs to.
        pub transaction_id: Uuid,
        /// The wallet, for wallet accounts.
        pub wallet_id: Option<Uuid>,
        /// `AVAILABLE`, `HELD` or an external account name.
        pub account: String,
        /// Currency code.
        pub currency: String,
        /// Signed amount: positive credits the account.
        pub amount: Money,
        /// Booking time.
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

/// `idempotency_keys`: claimed keys and the results they replay.
pub mod idempotency_keys {
    use sea_orm::entity::prelude::*;

    /// One key of one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The user the key belongs to.
        pub user_id: Uuid,
        /// The client's key.
        pub key: String,
        /// The mutation it was used with.
        pub operation: String,
        /// SHA-256 of operation and canonical input.
        pub fingerprint: String,
        /// `IN_PROGRESS` or `COMPLETED`.
        pub status: String,
        /// Lease of the request working on it; also its claim token.
        pub locked_until: DateTimeUtc,
        /// The result to replay, once completed.
        pub response: Option<Json>,
        /// First use.
        pub created_at: DateTimeUtc,
        /// When it may be purged.
        pub expires_at: DateTimeUtc,
    }

    no_relations!();
}

/// `outbox_events`: events written with the change they describe.
pub mod outbox_events {
    use sea_orm::entity::prelude::*;

    /// One event for one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        /// Event id; consumers dedupe by it.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The user it is for.
        pub user_id: Uuid,
        /// Per-user, strictly increasing.
        pub sequence: i64,
        /// Channel name, e.g. `balance.updated`.
        pub topic: String,
        /// The event body.
        pub payload: Json,
        /// Commit time.
        pub created_at: DateTimeUtc,
        /// When the relay published it.
        pub published_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

/// `notifications`: in-app notifications.
pub mod notifications {
    use sea_orm::entity::prelude::*;

    /// One notification for one user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Recipient.
        pub user_id: Uuid,
        /// Sequence of its `notification.created` event.
        pub sequence: i64,
        /// What it is about, e.g. `transfer.received`.
        pub kind: String,
        /// Short title.
        pub title: String,
        /// Text shown to the user.
        pub body: String,
        /// Ids the app can link to.
        pub data: Json,
        /// When the user read it.
        pub read_at: Option<DateTimeUtc>,
        /// Creation time.
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

/// `audit_log`: who did what.
pub mod audit_log {
    use sea_orm::entity::prelude::*;

    /// One audit record.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The user who acted (none for the system).
        pub actor_id: Option<Uuid>,
        /// Dotted action name, e.g. `wallet.transfer`.
        pub action: String,
        /// Kind of object acted on.
        pub subject_type: String,
        /// The object acted on.
        pub subject_id: Option<Uuid>,
        /// Non-sensitive details.
        pub details: Json,
        /// When.
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}

/// `webauthn_credentials`: registered WebAuthn authenticators.
pub mod webauthn_credentials {
    use sea_orm::entity::prelude::*;

    /// One credential of a user.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webauthn_credentials")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owner.
        pub user_id: Uuid,
        /// Name the user gave it.
        pub name: String,
        /// The authenticator's credential id, base64url; unique.
        pub credential_id: String,
        /// The serialized credential (public key, counter): no secret.
        pub passkey: String,
        /// Highest signature counter seen; an assertion must exceed it.
        pub sign_count: i64,
        /// When it was registered.
        pub created_at: DateTimeUtc,
        /// When it last made an assertion.
        pub last_used_at: Option<DateTimeUtc>,
    }

    no_relations!();
}

/// `auth_flows`: short-lived, single-use authentication state kept on the
/// server (WebAuthn ceremonies, MFA logins, OAuth2 logins, step-up tokens).
pub mod auth_flows {
    use sea_orm::entity::prelude::*;

    /// One pending flow.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "auth_flows")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// What the flow is for.
        pub kind: String,
        /// Unique lookup key: a hash of the token the client holds, never
        /// the token itself.
        pub lookup: String,
        /// The user, when known.
        pub user_id: Option<Uuid>,
        /// Server-side state (JSON).
        pub payload: String,
        /// For tokens consumed by an operation: what consumed them.
        pub consumed_ref: Option<String>,
        /// When it was created.
        pub created_at: DateTimeUtc,
        /// When it stops being accepted.
        pub expires_at: DateTimeUtc,
    }

    no_relations!();
}

/// `oauth_identities`: accounts at OAuth2 providers linked to users.
pub mod oauth_identities {
    use sea_orm::entity::prelude::*;

    /// One linked identity.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "oauth_identities")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Provider name from the configuration.
        pub provider: String,
        /// The provider's stable subject id.
        pub subject: String,
        /// The linked user.
        pub user_id: Uuid,
        /// The verified e-mail the provider gave when linking.
        pub email: String,
        /// When it was linked.
        pub created_at: DateTimeUtc,
    }

    no_relations!();
}
