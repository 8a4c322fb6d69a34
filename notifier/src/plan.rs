//! Planning: which deliveries events get, written by the relay in the
//! transaction that publishes them, so every published event is planned
//! exactly once (the unique (event, channel, target) key absorbs a relay's
//! repeat). A batch costs a few queries whatever its size: the users'
//! preferences, addresses and devices are read for the whole batch.

use std::collections::HashMap;

use domain::Envelope;
use domain::notify::{Channel, NotificationKind};
use entity::StoreResult;
use entity::store::deliveries::Planned;
use entity::store::{preferences, users};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

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

    /// Plans the events' deliveries by their users' preferences (security
    /// notices always by e-mail): what to write with the batch's marks
    /// ([`entity::store::deliveries::plan_with_published`]).
    pub async fn plan(
        &self,
        db: &impl ConnectionTrait,
        events: &[&Envelope],
    ) -> StoreResult<Vec<Planned>> {
        let notifiable: Vec<(&Envelope, NotificationKind)> = events
            .iter()
            .filter_map(|e| NotificationKind::of(&e.body).map(|k| (*e, k)))
            .collect();
        if notifiable.is_empty() || self.enabled.is_empty() {
            return Ok(Vec::new());
        }
        let mut user_ids: Vec<Uuid> = notifiable.iter().map(|(e, _)| e.user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let prefs = preferences::load_many(db, &user_ids).await?;
        let emails = if self.enabled.contains(&Channel::Email) {
            users::emails(db, &user_ids).await?
        } else {
            HashMap::new()
        };
        let devices = if self.enabled.contains(&Channel::Push) {
            preferences::devices_of(db, &user_ids).await?
        } else {
            HashMap::new()
        };
        let mut planned = Vec::new();
        for (event, kind) in notifiable {
            let prefs = prefs.get(&event.user_id).cloned().unwrap_or_default();
            let mut add = |channel: Channel, target: String| {
                planned.push(Planned {
                    id: Uuid::now_v7(),
                    event_id: event.id,
                    user_id: event.user_id,
                    channel,
                    target,
                    taken_until: None,
                });
            };
            for channel in self.enabled.iter().copied() {
                if !prefs.allows(kind, channel) {
                    continue;
                }
                match channel {
                    Channel::InApp => add(channel, String::new()),
                    Channel::Email => {
                        if let Some(email) = emails.get(&event.user_id) {
                            add(channel, email.clone());
                        }
                    }
                    Channel::Push => {
                        for device in devices.get(&event.user_id).into_iter().flatten() {
                            add(channel, device.id.to_string());
                        }
                    }
                }
            }
        }
        Ok(planned)
    }
}
