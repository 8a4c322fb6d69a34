//! Planning: which deliveries an event gets, written by the relay in the
//! transaction that publishes it, so every published event is planned
//! exactly once (the unique (event, channel, target) key absorbs a relay's
//! repeat).

use domain::Envelope;
use domain::notify::{Channel, NotificationKind};
use entity::StoreResult;
use entity::store::{deliveries, preferences, users};
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

    /// Plans the event's deliveries by the user's preferences (security
    /// notices always by e-mail); returns how many targets it has.
    pub async fn plan(&self, db: &impl ConnectionTrait, event: &Envelope) -> StoreResult<usize> {
        let Some(kind) = NotificationKind::of(&event.body) else {
            return Ok(0);
        };
        let prefs = preferences::load(db, event.user_id).await?;
        let mut targets = Vec::new();
        for channel in self.enabled.iter().copied() {
            if !prefs.allows(kind, channel) {
                continue;
            }
            match channel {
                Channel::InApp => targets.push((channel, String::new())),
                Channel::Email => {
                    if let Some(user) = users::load(db, event.user_id).await? {
                        targets.push((channel, user.email));
                    }
                }
                Channel::Push => {
                    for device in preferences::devices(db, event.user_id).await? {
                        targets.push((channel, device.id.to_string()));
                    }
                }
            }
        }
        deliveries::plan(db, event, &targets).await?;
        Ok(targets.len())
    }
}
