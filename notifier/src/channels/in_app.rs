//! In-app notifications: a notification row and its `notification.created`
//! event, written with the delivery's mark in one transaction, so each
//! exists exactly once; a worker's whole batch goes in one such transaction.

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

    /// The whole batch in one transaction (see [`deliveries::deliver_in_app`]).
    async fn deliver_batch(&self, batch: Vec<Batched<'_>>) -> Vec<Result<Delivered, SendError>> {
        let count = batch.len();
        let items = batch
            .into_iter()
            .map(|item| {
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
            })
            .collect();
        match deliveries::deliver_in_app(&self.db, items).await {
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
            Err(err) => {
                let failed = super::database(&err);
                vec![Err(failed); count]
            }
        }
    }
}
