//! The notifier's rules: which events reach people on which channels, the
//! states of a delivery, and how failed deliveries are retried.

use std::time::Duration;

use crate::events::{EventBody, Topic};

string_enum! {
    /// How a notification reaches a person.
    Channel {
        /// A notification row in the app (and `notificationCreated`).
        InApp => "IN_APP",
        /// An e-mail over SMTP.
        Email => "EMAIL",
        /// A push message through Firebase Cloud Messaging.
        Push => "PUSH",
    }
}

string_enum! {
    /// Where a delivery is in its life.
    DeliveryStatus {
        /// Planned, not tried yet.
        Pending => "PENDING",
        /// A worker is sending it (under a lease).
        Sending => "SENDING",
        /// The channel accepted it.
        Sent => "SENT",
        /// The last attempt failed; it is tried again at its next attempt time.
        Failed => "FAILED",
        /// Every attempt failed: a dead letter, retried only by an admin.
        Dead => "DEAD",
        /// Its target is gone (a push device removed or unregistered): nothing to send.
        Cancelled => "CANCELLED",
    }
}

string_enum! {
    /// Where a push device runs.
    PushPlatform {
        /// An iPhone or iPad app (through APNs).
        Ios => "IOS",
        /// An Android app.
        Android => "ANDROID",
        /// A web app (Web Push).
        Web => "WEB",
    }
}

/// An FCM registration token, checked: 16 to 4096 characters of letters,
/// digits and `-_:.` (what FCM issues), never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct PushToken(String);

impl std::fmt::Debug for PushToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushToken(***)")
    }
}

impl PushToken {
    /// Longest token accepted.
    pub const MAX_LEN: usize = 4096;

    /// Parses a token the app got from FCM.
    pub fn parse(raw: &str) -> Result<Self, crate::error::DomainError> {
        let ok = (16..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(crate::error::DomainError::bad_input(format!(
                "token must be an FCM registration token: 16 to {} letters, digits or -_:.",
                Self::MAX_LEN
            )))
        }
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::InApp, Channel::Email, Channel::Push];
}

string_enum! {
    /// What a notification is about: what preferences are set for.
    NotificationKind {
        /// Money arrived from another user.
        TransferReceived => "TRANSFER_RECEIVED",
        /// A transfer left the user's wallet.
        TransferSent => "TRANSFER_SENT",
        /// A withdrawal was paid out or failed.
        WithdrawalSettled => "WITHDRAWAL_SETTLED",
        /// The KYC status changed.
        KycStatus => "KYC_STATUS",
        /// A sign-in, a new or removed security key, a password change.
        Security => "SECURITY",
        /// A movement held for review, released, rejected, reversed or refunded.
        TransactionUpdate => "TRANSACTION_UPDATE",
        /// A payment request made to the user, or an answer to one of theirs.
        PaymentRequest => "PAYMENT_REQUEST",
    }
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 7] = [
        NotificationKind::TransferReceived,
        NotificationKind::TransferSent,
        NotificationKind::WithdrawalSettled,
        NotificationKind::KycStatus,
        NotificationKind::Security,
        NotificationKind::TransactionUpdate,
        NotificationKind::PaymentRequest,
    ];

    /// What an event is announced as; `None` for events that only feed
    /// live subscriptions (a balance change is announced by the event that
    /// caused it; an in-app notification is itself a delivery).
    pub fn of(body: &EventBody) -> Option<Self> {
        match body.topic() {
            Topic::TransactionReceived => Some(NotificationKind::TransferReceived),
            Topic::TransactionSent => Some(NotificationKind::TransferSent),
            Topic::WithdrawalSettled => Some(NotificationKind::WithdrawalSettled),
            Topic::KycStatus => Some(NotificationKind::KycStatus),
            Topic::SecurityNotice => Some(NotificationKind::Security),
            Topic::TransactionUpdated => Some(NotificationKind::TransactionUpdate),
            Topic::PaymentRequest => Some(NotificationKind::PaymentRequest),
            Topic::BalanceUpdated | Topic::NotificationCreated => None,
        }
    }

    /// Whether this kind always goes on `channel`, whatever the user chose:
    /// security notices by e-mail, so a stolen session cannot silence them.
    pub fn is_locked_on(self, channel: Channel) -> bool {
        self == NotificationKind::Security && channel == Channel::Email
    }
}

/// A user's choices: every (kind, channel) is on unless switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    /// The pairs the user switched off.
    pub off: Vec<(NotificationKind, Channel)>,
}

impl Preferences {
    /// Whether `kind` goes out on `channel`.
    pub fn allows(&self, kind: NotificationKind, channel: Channel) -> bool {
        kind.is_locked_on(channel) || !self.off.contains(&(kind, channel))
    }
}

/// How failed deliveries are retried: exponential backoff with full jitter
/// (a delay drawn uniformly from zero to `base * 2^(attempt-1)`, capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last, a dead letter.
    pub max_attempts: u32,
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after this delay.
    RetryIn(Duration),
    /// No attempts left: a dead letter.
    GiveUp,
}

impl RetryPolicy {
    /// The decision after attempt number `attempt` (1 for the first) failed.
    /// `unit` is a uniform random number in `[0, 1)`; a `retry_after` the
    /// channel was given (HTTP `Retry-After`) is the least delay.
    pub fn after_failure(
        &self,
        attempt: u32,
        unit: f64,
        retry_after: Option<Duration>,
    ) -> AfterFailure {
        if attempt >= self.max_attempts {
            return AfterFailure::GiveUp;
        }
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max)
            .max(Duration::from_millis(1));
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        AfterFailure::RetryIn(jittered.max(retry_after.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };

    #[test]
    fn delays_grow_exponentially_within_the_cap_and_jitter_spans_the_whole_range() {
        assert_eq!(
            POLICY.after_failure(1, 0.999_999, None),
            AfterFailure::RetryIn(Duration::from_secs(1).mul_f64(0.999_999))
        );
        assert_eq!(
            POLICY.after_failure(3, 0.5, None),
            AfterFailure::RetryIn(Duration::from_secs(2))
        );
        // 2^3 s = 8 s, then the 10 s cap.
        assert_eq!(
            POLICY.after_failure(4, 1.0, None),
            AfterFailure::RetryIn(Duration::from_secs(8))
        );
        assert_eq!(
            POLICY.after_failure(2, 0.0, None),
            AfterFailure::RetryIn(Duration::ZERO)
        );
        let long = RetryPolicy {
            max_attempts: 100,
            ..POLICY
        };
        assert_eq!(
            long.after_failure(60, 1.0, None),
            AfterFailure::RetryIn(Duration::from_secs(10))
        );
    }

    #[test]
    fn retry_after_is_the_least_delay_and_the_last_attempt_gives_up() {
        assert_eq!(
            POLICY.after_failure(1, 0.1, Some(Duration::from_secs(2))),
            AfterFailure::RetryIn(Duration::from_secs(2))
        );
        assert_eq!(POLICY.after_failure(5, 0.5, None), AfterFailure::GiveUp);
        assert_eq!(POLICY.after_failure(9, 0.5, None), AfterFailure::GiveUp);
    }

    #[test]
    fn security_notices_by_email_cannot_be_switched_off() {
        let prefs = Preferences {
            off: vec![
                (NotificationKind::Security, Channel::Email),
                (NotificationKind::Security, Channel::Push),
                (NotificationKind::TransferReceived, Channel::Email),
            ],
        };
        assert!(prefs.allows(NotificationKind::Security, Channel::Email));
        assert!(!prefs.allows(NotificationKind::Security, Channel::Push));
        assert!(!prefs.allows(NotificationKind::TransferReceived, Channel::Email));
        assert!(prefs.allows(NotificationKind::TransferReceived, Channel::InApp));
        assert!(Preferences::default().allows(NotificationKind::KycStatus, Channel::Push));
    }

    #[test]
    fn push_tokens_are_checked_and_never_printed() {
        let token = "dXs3aBcDeFgHiJkL:APA91bH-x_y.z";
        assert_eq!(PushToken::parse(token).expect("token").as_str(), token);
        assert_eq!(
            format!("{:?}", PushToken::parse(token).expect("token")),
            "PushToken(***)"
        );
        for bad in [
            "short",
            "has space in it   ok",
            "ünïcode-token-value",
            &"a".repeat(4097),
        ] {
            assert!(PushToken::parse(bad).is_err(), "{bad}");
        }
        assert!(PushPlatform::parse("BLACKBERRY").is_err());
    }

    #[test]
    fn statuses_and_channels_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()).expect("channel"), c);
        }
        assert!(DeliveryStatus::parse("LOST").is_err());
    }
}
