//! The event envelope and its wire form.

use domain::Topic;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One committed event for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id; consumers dedupe by it.
    pub id: Uuid,
    /// The user the event belongs to.
    pub user_id: Uuid,
    /// Per-user, strictly increasing.
    pub sequence: i64,
    /// What happened.
    pub topic: Topic,
    /// The event body as stored in the outbox.
    pub payload: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    id: Uuid,
    user_id: Uuid,
    sequence: i64,
    topic: String,
    payload: serde_json::Value,
}

impl Event {
    /// The JSON published on the topic's channel.
    pub fn to_wire(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&Wire {
            id: self.id,
            user_id: self.user_id,
            sequence: self.sequence,
            topic: self.topic.as_str().to_owned(),
            payload: self.payload.clone(),
        })?)
    }

    /// Parses a published message.
    pub fn from_wire(text: &str) -> anyhow::Result<Self> {
        let wire: Wire = serde_json::from_str(text)?;
        let topic = Topic::parse(&wire.topic).map_err(|e| anyhow::anyhow!(e.message))?;
        Ok(Self {
            id: wire.id,
            user_id: wire.user_id,
            sequence: wire.sequence,
            topic,
            payload: wire.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_the_wire_form() {
        let e = Event {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            sequence: 42,
            topic: Topic::BalanceUpdated,
            payload: serde_json::json!({ "balance": "12.5" }),
        };
        let back = Event::from_wire(&e.to_wire().expect("encode")).expect("decode");
        assert_eq!(back, e);
        assert!(Event::from_wire("{\"nope\":1}").is_err());
    }
}
