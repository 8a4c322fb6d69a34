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
    }
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::InApp, Channel::Email, Channel::Push];
}

/// The channels an event is delivered on before preferences apply; empty for
/// events that only feed live subscriptions.
pub fn channels_for(body: &EventBody) -> &'static [Channel] {
    match body.topic() {
        Topic::TransactionReceived
        | Topic::TransactionSent
        | Topic::WithdrawalSettled
        | Topic::KycStatus => &Channel::ALL,
        // A balance change is announced by the event that caused it; an
        // in-app notification is itself a delivery.
        Topic::BalanceUpdated | Topic::NotificationCreated => &[],
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
    fn statuses_and_channels_round_trip() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()).expect("channel"), c);
        }
        assert!(DeliveryStatus::parse("LOST").is_err());
    }
}
