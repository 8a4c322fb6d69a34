//! The live events of the API contract. A topic's name is also its Redis
//! channel and the outbox row's `topic`.

use crate::error::DomainError;

/// What happened, as subscribers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A wallet's balances changed.
    BalanceUpdated,
    /// Money arrived from another user.
    TransactionReceived,
    /// The KYC status changed.
    KycStatus,
    /// A notification was created.
    NotificationCreated,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 4] = [
        Topic::BalanceUpdated,
        Topic::TransactionReceived,
        Topic::KycStatus,
        Topic::NotificationCreated,
    ];

    /// The channel name, e.g. `balance.updated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::BalanceUpdated => "balance.updated",
            Topic::TransactionReceived => "transaction.received",
            Topic::KycStatus => "kyc.status",
            Topic::NotificationCreated => "notification.created",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.as_str()).expect("known"), t);
        }
        assert!(Topic::parse("balance").is_err());
    }
}
