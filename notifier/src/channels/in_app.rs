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

    /// One write per user of the batch (see
    /// [`deliveries::deliver_in_app`]).
    async fn deliver_batch(&self, batch: Vec<Batched<'_>>) -> Vec<Result<Delivered, SendError>> {
        let mut outcomes = vec![Ok(Delivered::ClaimLost); batch.len()];
        // Each user's deliveries together, in their order (a stable sort).
        let mut items: Vec<(usize, Batched<'_>)> = batch.into_iter().enumerate().collect();
        items.sort_by_key(|(_, b)| b.delivery.user_id);
        let mut items = items.into_iter().peekable();
        while let Some((i, first)) = items.next() {
            let user = first.delivery.user_id;
            let (mut at, mut group) = (vec![i], vec![notification(first)]);
            while let Some((i, item)) = items.next_if(|(_, b)| b.delivery.user_id == user) {
                at.push(i);
                group.push(notification(item));
            }
            match deliveries::deliver_in_app(&self.db, group).await {
                Ok(ours) => {
                    for (i, ours) in at.into_iter().zip(ours) {
                        outcomes[i] = Ok(if ours {
                            Delivered::Recorded
                        } else {
                            Delivered::ClaimLost
                        });
                    }
                }
                Err(err) => {
                    let failed = super::database(&err);
                    for i in at {
                        outcomes[i] = Err(failed.clone());
                    }
                }
            }
        }
        outcomes
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
