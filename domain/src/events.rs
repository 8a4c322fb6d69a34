//! The event contract: one [`Envelope`] around a typed [`EventBody`], from
//! the outbox (written in the transaction of the change) through the relay,
//! the bus and the hub to the subscription resolvers and the notifier. A new
//! consumer is one more `match`; nobody reads a payload field by name.
//!
//! # Wire form
//! The outbox row and the message published on the topic's Redis channel
//! hold the same JSON:
//!
//! ```json
//! {"v": 1, "id": "…", "userId": "…", "sequence": 7, "occurredAt": "…",
//!  "topic": "balance.updated",
//!  "payload": {"walletId": "…", "delta": "-12.5", …, "v": 1, "id": "…", "sequence": 7, "userId": "…", "occurredAt": "…"}}
//! ```
//!
//! The outbox row keeps `payload` (its other columns hold the rest). Version 0
//! is what the release before the typed contract wrote: no `v`, and the
//! envelope fields only inside `payload`. Version 1 repeats them there, so a
//! version-0 reader (an older instance during a rolling deploy) still reads
//! every topic it knows, and this release reads version 0 rows and messages.
//! Within a version, changes are additive only (a new optional field, a new
//! topic); a breaking change raises [`WIRE_VERSION`] and is deployed only once
//! every running instance reads the new version.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::DomainError;
use crate::kyc::KycStatus;
use crate::money::Currency;
use crate::records::{NotificationRecord, TransactionRecord, WalletRecord};
use crate::transaction::WalletStatus;

/// The version of the wire form this release writes (and the newest it reads).
pub const WIRE_VERSION: u32 = 1;

/// What happened, as a name: the Redis channel and the outbox row's `topic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `balance.updated`: a wallet's balances changed.
    BalanceUpdated,
    /// `transaction.received`: money arrived from another user.
    TransactionReceived,
    /// `transaction.sent`: a transfer left the user's wallet.
    TransactionSent,
    /// `withdrawal.settled`: a pending withdrawal was paid out or failed.
    WithdrawalSettled,
    /// `kyc.status`: the KYC status changed.
    KycStatus,
    /// `notification.created`: an in-app notification was created.
    NotificationCreated,
    /// `security.notice`: a sign-in or a change of how the account is secured.
    SecurityNotice,
    /// `transaction.updated`: a movement was held, released or rejected by
    /// compliance, reversed or refunded.
    TransactionUpdated,
    /// `payment.request`: a payment request was made, paid or declined.
    PaymentRequest,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 9] = [
        Topic::BalanceUpdated,
        Topic::TransactionReceived,
        Topic::TransactionSent,
        Topic::WithdrawalSettled,
        Topic::KycStatus,
        Topic::NotificationCreated,
        Topic::SecurityNotice,
        Topic::TransactionUpdated,
        Topic::PaymentRequest,
    ];

    /// The channel name, e.g. `balance.updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::BalanceUpdated => "balance.updated",
            Topic::TransactionReceived => "transaction.received",
            Topic::TransactionSent => "transaction.sent",
            Topic::WithdrawalSettled => "withdrawal.settled",
            Topic::KycStatus => "kyc.status",
            Topic::NotificationCreated => "notification.created",
            Topic::SecurityNotice => "security.notice",
            Topic::TransactionUpdated => "transaction.updated",
            Topic::PaymentRequest => "payment.request",
        }
    }

    /// Parses a channel name.
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| DomainError::bad_input(format!("unknown topic `{name}`")))
    }
}

/// One committed event of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Unique id; consumers dedupe by it.
    pub id: Uuid,
    /// The user the event belongs to (and the only one who receives it).
    pub user_id: Uuid,
    /// Per user, strictly increasing, shared by all topics.
    pub sequence: i64,
    /// When the change committed (the writing instance's clock).
    pub occurred_at: DateTime<Utc>,
    /// What happened.
    pub body: EventBody,
}

/// What happened, with everything a consumer needs to act on it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// A wallet's balances changed.
    BalanceUpdated(BalanceUpdated),
    /// Money arrived from another user (the receiver's event).
    TransactionReceived(TransactionMoved),
    /// A transfer left the user's wallet (the sender's event).
    TransactionSent(TransactionMoved),
    /// A pending withdrawal was paid out or failed.
    WithdrawalSettled(WithdrawalSettled),
    /// The KYC status changed.
    KycStatusChanged(KycStatusChanged),
    /// An in-app notification was created.
    NotificationCreated(NotificationCreated),
    /// A sign-in or a change of how the account is secured.
    SecurityNotice(SecurityNotice),
    /// A movement was held, released, rejected, reversed or refunded.
    TransactionUpdated(TransactionUpdated),
    /// A payment request was made, paid or declined.
    PaymentRequest(PaymentRequestChanged),
}

impl EventBody {
    /// The topic this body is published on.
    pub fn topic(&self) -> Topic {
        match self {
            EventBody::BalanceUpdated(_) => Topic::BalanceUpdated,
            EventBody::TransactionReceived(_) => Topic::TransactionReceived,
            EventBody::TransactionSent(_) => Topic::TransactionSent,
            EventBody::WithdrawalSettled(_) => Topic::WithdrawalSettled,
            EventBody::KycStatusChanged(_) => Topic::KycStatus,
            EventBody::NotificationCreated(_) => Topic::NotificationCreated,
            EventBody::SecurityNotice(_) => Topic::SecurityNotice,
            EventBody::TransactionUpdated(_) => Topic::TransactionUpdated,
            EventBody::PaymentRequest(_) => Topic::PaymentRequest,
        }
    }
}

/// A wallet's balances after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BalanceUpdated {
    /// The wallet that changed.
    pub wallet_id: Uuid,
    /// Its currency.
    pub currency: Currency,
    /// Total balance after the change (available plus frozen).
    pub balance: Decimal,
    /// Spendable balance after the change.
    pub available_balance: Decimal,
    /// Held balance after the change.
    pub frozen_balance: Decimal,
    /// Wallet status after the change.
    pub status: WalletStatus,
    /// Wallet version after the change.
    pub version: i64,
    /// When the wallet changed.
    pub updated_at: DateTime<Utc>,
    /// Change of the total balance: negative for money out, zero for holds.
    pub delta: Decimal,
    /// The transaction that caused it.
    pub transaction_id: Uuid,
    /// What the owner still owes after a reversal (absent before debts existed).
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub debt: Decimal,
}

impl BalanceUpdated {
    /// The body for `wallet` right after a change of `delta` by a transaction.
    pub fn of(wallet: &WalletRecord, delta: Decimal, transaction_id: Uuid) -> Self {
        Self {
            wallet_id: wallet.id,
            currency: wallet.currency,
            balance: wallet.balance(),
            available_balance: wallet.available,
            frozen_balance: wallet.frozen,
            status: wallet.status,
            version: wallet.version,
            updated_at: wallet.updated_at,
            delta,
            transaction_id,
            debt: wallet.debt,
        }
    }

    /// The wallet as it is after the change; `owner` is the envelope's user.
    pub fn wallet(&self, owner: Uuid) -> WalletRecord {
        WalletRecord {
            id: self.wallet_id,
            user_id: owner,
            currency: self.currency,
            available: self.available_balance,
            frozen: self.frozen_balance,
            status: self.status,
            version: self.version,
            updated_at: self.updated_at,
            debt: self.debt,
        }
    }
}

/// A transfer between two users, for one of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionMoved {
    /// The transfer.
    pub transaction: TransactionRecord,
    /// The other user: the sender for the receiver, the receiver for the
    /// sender. Absent in version-0 events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty_id: Option<Uuid>,
}

/// A withdrawal that left `PENDING`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalSettled {
    /// The withdrawal in its final status (`COMPLETED` or `FAILED`).
    pub transaction: TransactionRecord,
}

/// A change of the user's KYC status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KycStatusChanged {
    /// The new status.
    pub status: KycStatus,
    /// The KYC level reached.
    pub level: i32,
    /// The reviewer's reason, for rejections.
    pub reason: Option<String>,
}

/// An in-app notification, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationCreated {
    /// The notification.
    pub notification: NotificationRecord,
}

/// A sign-in or a change of how the account is secured: the user is always
/// told by e-mail, whatever the preferences say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "camelCase")]
pub enum SecurityNotice {
    /// A new session was signed in.
    #[serde(rename_all = "camelCase")]
    SignedIn {
        /// How: `password`, `webauthn` (password and a security key), `oauth:<provider>`.
        method: String,
    },
    /// A security key or passkey was registered.
    #[serde(rename_all = "camelCase")]
    SecurityKeyAdded {
        /// The name the user gave it.
        name: String,
    },
    /// A security key or passkey was removed.
    #[serde(rename_all = "camelCase")]
    SecurityKeyRemoved {
        /// Its name.
        name: String,
    },
    /// The password was changed (other sessions were signed out).
    PasswordChanged,
    /// An identity provider was linked to the account for signing in;
    /// `credentials_reset` when that ended the account's password, keys and
    /// sessions (the address had never been verified).
    #[serde(rename_all = "camelCase")]
    ProviderLinked {
        /// The provider's configured name.
        provider: String,
        /// Whether the password, keys and sessions were ended.
        credentials_reset: bool,
    },
}

string_enum! {
    /// What happened to a movement after it was made.
    TransactionChange {
        /// The risk checks held it: its funds are frozen pending review.
        Held => "HELD",
        /// Compliance released it: it went through.
        Released => "RELEASED",
        /// Compliance rejected it: its funds returned to the sender.
        Rejected => "REJECTED",
        /// Staff reversed it with a compensating posting.
        Reversed => "REVERSED",
        /// Part of a card deposit was refunded to its source.
        Refunded => "REFUNDED",
    }
}

/// A movement that changed after it was made, for one of its parties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionUpdated {
    /// The movement as it is now (for a reversal or refund: the original).
    pub transaction: TransactionRecord,
    /// What happened.
    pub change: TransactionChange,
    /// The compensating movement (reversal or refund), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<TransactionRecord>,
    /// The reason staff gave, shown to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

string_enum! {
    /// What happened to a payment request.
    RequestChange {
        /// It was made (the payer's and the requester's event).
        Created => "CREATED",
        /// The payer paid it.
        Paid => "PAID",
        /// The payer declined it.
        Declined => "DECLINED",
    }
}

/// A payment request that was made or answered, for one of its parties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequestChanged {
    /// The request as it is now.
    pub request: crate::requests::PaymentRequestRecord,
    /// What happened.
    pub change: RequestChange,
}

/// Why a stored or published event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not an event of any version.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// A topic this release does not know (a newer release wrote it).
    #[error("unknown event topic `{0}`")]
    UnknownTopic(String),
    /// A wire version this release does not read (a newer release wrote it).
    #[error("event wire version {0} is newer than {WIRE_VERSION}")]
    NewerVersion(u32),
}

impl WireError {
    /// Whether a newer release wrote it: pass it on untouched, do not fail.
    pub fn is_from_newer_release(&self) -> bool {
        matches!(
            self,
            WireError::UnknownTopic(_) | WireError::NewerVersion(_)
        )
    }
}

/// The wire version of a stored payload (0 when it carries none).
pub fn payload_version(payload: &Value) -> u32 {
    payload
        .get("v")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// The published message.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    v: u32,
    id: Uuid,
    user_id: Uuid,
    sequence: i64,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
    topic: String,
    payload: Value,
}

fn malformed(what: impl std::fmt::Display) -> WireError {
    WireError::Malformed(what.to_string())
}

fn body_of<T: DeserializeOwned>(payload: &Value) -> Result<T, WireError> {
    // serde ignores the envelope fields repeated in the payload.
    T::deserialize(payload).map_err(malformed)
}

fn body_json<T: Serialize>(body: &T) -> Value {
    // Plain structs of strings, numbers and ids: serializing cannot fail.
    serde_json::to_value(body).unwrap_or(Value::Null)
}

impl Envelope {
    /// The body's topic.
    pub fn topic(&self) -> Topic {
        self.body.topic()
    }

    /// The `payload` of the wire form: the body's fields, and the envelope's
    /// repeated for version-0 readers. The outbox row stores this.
    pub fn payload(&self) -> Value {
        let mut payload = match &self.body {
            EventBody::BalanceUpdated(b) => body_json(b),
            EventBody::TransactionReceived(b) | EventBody::TransactionSent(b) => body_json(b),
            EventBody::WithdrawalSettled(b) => body_json(b),
            EventBody::KycStatusChanged(b) => body_json(b),
            EventBody::NotificationCreated(b) => body_json(b),
            EventBody::SecurityNotice(b) => body_json(b),
            EventBody::TransactionUpdated(b) => body_json(b),
            EventBody::PaymentRequest(b) => body_json(b),
        };
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("v".into(), WIRE_VERSION.into());
            obj.insert("id".into(), Value::String(self.id.to_string()));
            obj.insert("sequence".into(), self.sequence.into());
            obj.insert("userId".into(), Value::String(self.user_id.to_string()));
            obj.insert(
                "occurredAt".into(),
                serde_json::to_value(self.occurred_at).unwrap_or(Value::Null),
            );
        }
        payload
    }

    /// The message published on the topic's channel.
    pub fn to_wire(&self) -> String {
        let wire = Wire {
            v: WIRE_VERSION,
            id: self.id,
            user_id: self.user_id,
            sequence: self.sequence,
            occurred_at: Some(self.occurred_at),
            topic: self.topic().as_str().to_owned(),
            payload: self.payload(),
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a published message of any version up to [`WIRE_VERSION`].
    pub fn from_wire(text: &str) -> Result<Self, WireError> {
        let wire: Wire = serde_json::from_str(text).map_err(malformed)?;
        if wire.v > WIRE_VERSION {
            return Err(WireError::NewerVersion(wire.v));
        }
        Self::from_stored(
            Stored {
                id: wire.id,
                user_id: wire.user_id,
                sequence: wire.sequence,
                topic: &wire.topic,
                occurred_at: wire.occurred_at,
            },
            &wire.payload,
        )
    }

    /// Reads an outbox row: its columns and its `payload`, of any version.
    pub fn from_stored(row: Stored<'_>, payload: &Value) -> Result<Self, WireError> {
        let version = payload
            .get("v")
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| malformed("v is not a version number"))
            })
            .transpose()?
            .unwrap_or(0);
        if version > WIRE_VERSION {
            return Err(WireError::NewerVersion(version));
        }
        let topic =
            Topic::parse(row.topic).map_err(|_| WireError::UnknownTopic(row.topic.into()))?;
        let occurred_at = match row.occurred_at {
            Some(at) => at,
            None => payload
                .get("occurredAt")
                .map(|v| DateTime::<Utc>::deserialize(v).map_err(malformed))
                .transpose()?
                .ok_or_else(|| malformed("no occurredAt"))?,
        };
        let body = match topic {
            Topic::BalanceUpdated => EventBody::BalanceUpdated(body_of(payload)?),
            Topic::TransactionReceived => EventBody::TransactionReceived(body_of(payload)?),
            Topic::TransactionSent => EventBody::TransactionSent(body_of(payload)?),
            Topic::WithdrawalSettled => EventBody::WithdrawalSettled(body_of(payload)?),
            Topic::KycStatus => EventBody::KycStatusChanged(body_of(payload)?),
            Topic::NotificationCreated => EventBody::NotificationCreated(body_of(payload)?),
            Topic::SecurityNotice => EventBody::SecurityNotice(body_of(payload)?),
            Topic::TransactionUpdated => EventBody::TransactionUpdated(body_of(payload)?),
            Topic::PaymentRequest => EventBody::PaymentRequest(body_of(payload)?),
        };
        Ok(Self {
            id: row.id,
            user_id: row.user_id,
            sequence: row.sequence,
            occurred_at,
            body,
        })
    }
}

/// The columns of an outbox row (or the envelope fields of a message).
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// Event id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Per-user sequence.
    pub sequence: i64,
    /// Topic name.
    pub topic: &'a str,
    /// Commit time, when known outside the payload.
    pub occurred_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{TransactionKind, TransactionStatus};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn transfer() -> TransactionRecord {
        TransactionRecord {
            id: Uuid::now_v7(),
            kind: TransactionKind::Transfer,
            status: TransactionStatus::Completed,
            amount: Decimal::new(1250, 2),
            currency: Currency::Usd,
            from_wallet_id: Some(Uuid::now_v7()),
            to_wallet_id: Some(Uuid::now_v7()),
            memo: Some("lunch".into()),
            destination: None,
            created_at: at("2026-11-30T10:00:00Z"),
            updated_at: at("2026-11-30T10:00:00Z"),
            original_id: None,
        }
    }

    fn envelope(body: EventBody) -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            sequence: 7,
            occurred_at: at("2026-11-30T10:00:01.123456Z"),
            body,
        }
    }

    #[test]
    fn topic_names_round_trip() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.as_str()).expect("known"), t);
        }
        assert!(Topic::parse("balance").is_err());
    }

    #[test]
    fn every_body_round_trips_through_the_wire_and_the_outbox_row() {
        let wallet = WalletRecord {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            currency: Currency::Btc,
            available: Decimal::new(5, 8),
            frozen: Decimal::new(1, 1),
            status: WalletStatus::Active,
            version: 3,
            updated_at: at("2026-11-30T10:00:00Z"),
            debt: Decimal::new(3, 0),
        };
        let notification = NotificationRecord {
            id: Uuid::now_v7(),
            sequence: 7,
            kind: "transfer.received".into(),
            title: "Money received".into(),
            body: "You received 12.5 USD from Ann".into(),
            data: serde_json::json!({ "transactionId": Uuid::nil() }),
            read_at: None,
            created_at: at("2026-11-30T10:00:00Z"),
            source_event_id: Some(Uuid::now_v7()),
        };
        let bodies = [
            EventBody::BalanceUpdated(BalanceUpdated::of(
                &wallet,
                Decimal::new(-5, 1),
                Uuid::nil(),
            )),
            EventBody::TransactionReceived(TransactionMoved {
                transaction: transfer(),
                counterparty_id: Some(Uuid::now_v7()),
            }),
            EventBody::TransactionSent(TransactionMoved {
                transaction: transfer(),
                counterparty_id: None,
            }),
            EventBody::WithdrawalSettled(WithdrawalSettled {
                transaction: transfer(),
            }),
            EventBody::KycStatusChanged(KycStatusChanged {
                status: KycStatus::Rejected,
                level: 0,
                reason: Some("blurry".into()),
            }),
            EventBody::NotificationCreated(NotificationCreated { notification }),
            EventBody::SecurityNotice(SecurityNotice::SignedIn {
                method: "password".into(),
            }),
            EventBody::TransactionUpdated(TransactionUpdated {
                transaction: transfer(),
                change: TransactionChange::Reversed,
                compensation: Some(transfer()),
                reason: Some("fraud".into()),
            }),
            EventBody::PaymentRequest(PaymentRequestChanged {
                request: crate::requests::PaymentRequestRecord {
                    id: Uuid::now_v7(),
                    requester_id: Uuid::now_v7(),
                    payer_id: Uuid::now_v7(),
                    amount: Decimal::new(2000, 2),
                    currency: Currency::Eur,
                    memo: Some("dinner".into()),
                    status: crate::requests::RequestStatus::Pending,
                    transaction_id: None,
                    expires_at: at("2026-12-07T10:00:00Z"),
                    created_at: at("2026-11-30T10:00:00Z"),
                    updated_at: at("2026-11-30T10:00:00Z"),
                },
                change: RequestChange::Created,
            }),
        ];
        assert_eq!(bodies.len(), Topic::ALL.len(), "one body per topic");
        let mut more = vec![
            EventBody::SecurityNotice(SecurityNotice::PasswordChanged),
            EventBody::SecurityNotice(SecurityNotice::SecurityKeyAdded {
                name: "YubiKey".into(),
            }),
            EventBody::SecurityNotice(SecurityNotice::SecurityKeyRemoved { name: "old".into() }),
            EventBody::SecurityNotice(SecurityNotice::ProviderLinked {
                provider: "google".into(),
                credentials_reset: true,
            }),
        ];
        let mut bodies = bodies.to_vec();
        bodies.append(&mut more);
        for body in bodies {
            let e = envelope(body);
            assert_eq!(Envelope::from_wire(&e.to_wire()).expect("wire"), e);
            let row = Stored {
                id: e.id,
                user_id: e.user_id,
                sequence: e.sequence,
                topic: e.topic().as_str(),
                occurred_at: None,
            };
            assert_eq!(Envelope::from_stored(row, &e.payload()).expect("row"), e);
        }
    }

    /// The exact messages the release before the typed contract published.
    #[test]
    fn version_0_messages_and_rows_still_decode() {
        let user = "0193a0a0-0000-7000-8000-000000000001";
        let v0 = format!(
            r#"{{"id":"0193a0a0-0000-7000-8000-0000000000e1","userId":"{user}","sequence":4,"topic":"balance.updated",
               "payload":{{"walletId":"0193a0a0-0000-7000-8000-0000000000a1","currency":"USD","balance":"87.5",
               "availableBalance":"87.5","frozenBalance":"0","status":"ACTIVE","version":3,
               "updatedAt":"2026-11-30T10:00:00.123456Z","delta":"-12.5",
               "transactionId":"0193a0a0-0000-7000-8000-0000000000c1",
               "id":"0193a0a0-0000-7000-8000-0000000000e1","sequence":4,"userId":"{user}",
               "occurredAt":"2026-11-30T10:00:00.123456Z"}}}}"#
        );
        let e = Envelope::from_wire(&v0).expect("v0 balance.updated");
        assert_eq!(e.sequence, 4);
        assert_eq!(e.occurred_at, at("2026-11-30T10:00:00.123456Z"));
        let EventBody::BalanceUpdated(b) = &e.body else {
            panic!("not a balance update: {e:?}")
        };
        assert_eq!(b.delta, Decimal::new(-125, 1));
        assert_eq!(b.wallet(e.user_id).available, Decimal::new(875, 1));

        let kyc_row = serde_json::json!({
            "status": "APPROVED", "level": 2, "reason": null,
            "id": "0193a0a0-0000-7000-8000-0000000000e2", "sequence": 5, "userId": user,
            "occurredAt": "2026-11-30T10:00:02Z",
        });
        let row = Stored {
            id: Uuid::now_v7(),
            user_id: user.parse().expect("uuid"),
            sequence: 5,
            topic: "kyc.status",
            occurred_at: None,
        };
        let e = Envelope::from_stored(row, &kyc_row).expect("v0 kyc row");
        assert_eq!(
            e.body,
            EventBody::KycStatusChanged(KycStatusChanged {
                status: KycStatus::Approved,
                level: 2,
                reason: None
            })
        );

        // notification.created as the money transaction wrote it.
        let v0_notification = serde_json::json!({
            "notification": {
                "id": "0193a0a0-0000-7000-8000-0000000000f1", "sequence": 6,
                "kind": "transfer.received", "title": "Money received",
                "body": "You received 4.5 USD from Ann",
                "data": { "transactionId": "0193a0a0-0000-7000-8000-0000000000c1" },
                "readAt": null, "createdAt": "2026-11-30T10:00:04Z"
            },
            "id": "0193a0a0-0000-7000-8000-0000000000e6", "sequence": 6, "userId": user,
            "occurredAt": "2026-11-30T10:00:04Z",
        });
        let row = Stored {
            topic: "notification.created",
            sequence: 6,
            ..row
        };
        let e = Envelope::from_stored(row, &v0_notification).expect("v0 notification.created");
        let EventBody::NotificationCreated(n) = &e.body else {
            panic!("not a notification: {e:?}")
        };
        assert_eq!(n.notification.body, "You received 4.5 USD from Ann");
        assert_eq!(n.notification.source_event_id, None);
        // transaction.received exactly as the release before wrote it.
        let v0_received = serde_json::json!({
            "transaction": {
                "id": "0193a0a0-0000-7000-8000-0000000000c1", "kind": "TRANSFER", "status": "COMPLETED",
                "amount": "4.5", "currency": "USD",
                "fromWalletId": "0193a0a0-0000-7000-8000-0000000000a1",
                "toWalletId": "0193a0a0-0000-7000-8000-0000000000a2",
                "memo": null, "destination": null,
                "createdAt": "2026-11-30T10:00:03Z", "updatedAt": "2026-11-30T10:00:03Z"
            },
            "id": "0193a0a0-0000-7000-8000-0000000000e5", "sequence": 5, "userId": user,
            "occurredAt": "2026-11-30T10:00:03Z",
        });
        let row = Stored {
            topic: "transaction.received",
            sequence: 5,
            ..row
        };
        let e = Envelope::from_stored(row, &v0_received).expect("v0 transaction.received, exact");
        let EventBody::TransactionReceived(moved) = &e.body else {
            panic!("not a transfer: {e:?}")
        };
        assert_eq!(moved.transaction.amount, Decimal::new(45, 1));
        assert_eq!(payload_version(&v0_received), 0);
        let tx = serde_json::to_value(transfer()).expect("tx");
        let received =
            serde_json::json!({ "transaction": tx, "occurredAt": "2026-11-30T10:00:03Z" });
        let row = Stored {
            topic: "transaction.received",
            ..row
        };
        let e = Envelope::from_stored(row, &received).expect("v0 transaction.received");
        assert!(matches!(
            e.body,
            EventBody::TransactionReceived(TransactionMoved {
                counterparty_id: None,
                ..
            })
        ));
    }

    /// What an instance of the release before reads from a version-1
    /// message: the envelope fields and body fields it knew, by name.
    #[test]
    fn version_1_messages_keep_what_version_0_readers_read() {
        let e = envelope(EventBody::KycStatusChanged(KycStatusChanged {
            status: KycStatus::InReview,
            level: 1,
            reason: None,
        }));
        let wire: Value = serde_json::from_str(&e.to_wire()).expect("json");
        for key in ["id", "userId", "sequence", "topic", "payload"] {
            assert!(wire.get(key).is_some(), "{key}");
        }
        let payload = &wire["payload"];
        assert_eq!(payload["status"], "IN_REVIEW");
        assert_eq!(payload["level"], 1);
        assert_eq!(payload["sequence"], 7);
        assert_eq!(payload["occurredAt"], "2026-11-30T10:00:01.123456Z");
    }

    #[test]
    fn newer_releases_and_garbage_are_told_apart() {
        let e = envelope(EventBody::KycStatusChanged(KycStatusChanged {
            status: KycStatus::Approved,
            level: 1,
            reason: None,
        }));
        let mut wire: Value = serde_json::from_str(&e.to_wire()).expect("json");
        wire["v"] = 2.into();
        let err = Envelope::from_wire(&wire.to_string()).expect_err("v2");
        assert!(err.is_from_newer_release(), "{err}");
        wire["v"] = 1.into();
        wire["topic"] = "payment.refunded".into();
        let err = Envelope::from_wire(&wire.to_string()).expect_err("unknown topic");
        assert!(err.is_from_newer_release(), "{err}");
        wire["topic"] = "kyc.status".into();
        wire["payload"]["level"] = "high".into();
        let err = Envelope::from_wire(&wire.to_string()).expect_err("bad body");
        assert!(!err.is_from_newer_release(), "{err}");
        assert!(Envelope::from_wire("{\"nope\":1}").is_err());
    }
}
