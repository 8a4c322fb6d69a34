//! In-app notifications: a notification row and its `notification.created`
//! event, written with the delivery's mark in one transaction, so each
//! exists exactly once; a worker's batch goes in one such transaction per user.

use entity::store::deliveries::{self, DeliveryRecord};
use entity::store::notifications::NewNotification;
use sea_orm::DatabaseConnection;

use super::{Batched, Channel, Delivered, SendError};
use crate::templates::Rendered;

/// The in-app channel.
pub struct InApp {
    db: DatabaseConnection,
}

impl InApp {
    /// The channel writing to `db`.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait::async_trait]
impl Channel for InApp {
    fn kind(&self) -> domain::notify::Channel {
        domain::notify::Channel::InApp
    }

    async fn deliver(
        &self,
        delivery: &DeliveryRecord,
        message: &Rendered,
    ) -> Result<Delivered, SendError> {
        let one = Batched {
            delivery,
            message: Some(message.clone()),
            trace_parent: entity::trace::current(),
        };
        self.deliver_batch(vec![one])
            .await
            .pop()
            .unwrap_or(Ok(Delivered::ClaimLost))
    }

    fn batched(&self) -> bool {
        true
    }

    /// One transaction per user of the batch (see
    /// [`deliveries::deliver_in_app`]).
    async fn deliver_batch(&self, batch: Vec<Batched<'_>>) -> Vec<Result<Delivered, SendError>> {
        let mut outcomes: Vec<Option<Result<Delivered, SendError>>> =
            (0..batch.len()).map(|_| None).collect();
        let mut users: Vec<uuid::Uuid> = batch.iter().map(|b| b.delivery.user_id).collect();
        users.sort_unstable();
        users.dedup();
        let mut items: Vec<Option<Batched<'_>>> = batch.into_iter().map(Some).collect();
        for user in users {
            let mut at = Vec::new();
            let mut group = Vec::new();
            for (i, slot) in items.iter_mut().enumerate() {
                if slot.as_ref().is_some_and(|b| b.delivery.user_id == user)
                    && let Some(item) = slot.take()
                {
                    at.push(i);
                    group.push(notification(item));
                }
            }
            let written = match deliveries::deliver_in_app(&self.db, group).await {
                Ok(ours) => ours
                    .into_iter()
                    .map(|ours| {
                        Ok(if ours {
                            Delivered::Recorded
                        } else {
                            Delivered::ClaimLost
                        })
                    })
                    .collect(),
                Err(err) => vec![Err(super::database(&err)); at.len()],
            };
            for (i, outcome) in at.into_iter().zip(written) {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ok(Delivered::ClaimLost)))
            .collect()
    }
}

/// A delivery with its notification to write (none: nothing to tell).
fn notification(item: Batched<'_>) -> (&DeliveryRecord, Option<NewNotification<'static>>) {
    let new = item.message.map(|m| NewNotification {
        user_id: item.delivery.user_id,
        kind: m.kind,
        title: m.title,
        body: m.text,
        data: m.data,
        source_event_id: Some(item.delivery.event_id),
        trace_parent: item.trace_parent,
    });
    (item.delivery, new)
}
