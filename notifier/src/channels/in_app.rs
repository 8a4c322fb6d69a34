//! In-app notifications: a notification row and its `notification.created`
//! event, written with the delivery's mark in one transaction, so each
//! exists exactly once.

use entity::store::deliveries::{self, DeliveryRecord};
use entity::store::notifications::NewNotification;
use sea_orm::DatabaseConnection;

use super::{Channel, Delivered, SendError};
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
        let new = NewNotification {
            user_id: delivery.user_id,
            kind: message.kind,
            title: message.title.clone(),
            body: message.text.clone(),
            data: message.data.clone(),
            source_event_id: Some(delivery.event_id),
        };
        match deliveries::deliver_in_app(&self.db, delivery, new).await {
            Ok(true) => Ok(Delivered::Recorded),
            Ok(false) => Ok(Delivered::ClaimLost),
            Err(err) => Err(super::database(&err)),
        }
    }
}
