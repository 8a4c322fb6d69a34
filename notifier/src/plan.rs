//! Planning: which deliveries an event gets, written by the relay in the
//! transaction that publishes it, so every published event is planned
//! exactly once (the unique (event, channel, target) key absorbs a relay's
//! repeat).

use domain::Envelope;
use domain::notify::{Channel, channels_for};
use entity::StoreResult;
use entity::store::{deliveries, users};
use sea_orm::ConnectionTrait;

/// The channels this deployment delivers on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Planner {
    enabled: Vec<Channel>,
}

impl Planner {
    /// A planner for the enabled channels.
    pub fn new(enabled: Vec<Channel>) -> Self {
        Self { enabled }
    }

    /// The enabled channels.
    pub fn enabled(&self) -> &[Channel] {
        &self.enabled
    }

    /// Plans the event's deliveries; returns how many targets it has.
    pub async fn plan(&self, db: &impl ConnectionTrait, event: &Envelope) -> StoreResult<usize> {
        let wanted: Vec<Channel> = channels_for(&event.body)
            .iter()
            .copied()
            .filter(|c| self.enabled.contains(c))
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let mut targets = Vec::with_capacity(wanted.len());
        for channel in wanted {
            match channel {
                Channel::InApp => targets.push((channel, String::new())),
                Channel::Email => {
                    if let Some(user) = users::load(db, event.user_id).await? {
                        targets.push((channel, user.email));
                    }
                }
                // Devices come with push registration.
                Channel::Push => {}
            }
        }
        deliveries::plan(db, event, &targets).await?;
        Ok(targets.len())
    }
}
