//! The event bus of wallet-bff: committed outbox events go out to every API
//! instance and reach the local subscribers of the user they belong to.
//!
//! # Layout
//! - [`hub`]: the process-local fan-out of [`Envelope`]s. Each subscriber has
//!   a bounded buffer; one that falls behind is cut off with
//!   [`Interrupted::Lagged`] instead of slowing the others or growing memory,
//!   and must resubscribe from its last sequence.
//! - [`redis_bus`]: one Redis subscriber connection per process (reconnecting
//!   with backoff) feeding the hub, and a publisher. Messages are the
//!   envelope's versioned wire form on the channel named by its [`Topic`].
//! - [`Bus`]: what the rest of the system uses: in-process for the embedded
//!   default, Redis for the production shape.

pub mod hub;
pub mod redis_bus;

use std::sync::Arc;

pub use domain::{Envelope, Topic};
pub use hub::{Audience, Filter, Hub, HubStats, Interrupted, Subscription};

/// Publishes events and hands out subscriptions.
#[derive(Clone)]
pub enum Bus {
    /// One process, no Redis: publishing dispatches straight to the hub.
    InProcess(Hub),
    /// Events travel through Redis to the hubs of every instance.
    Redis(redis_bus::RedisBus),
}

impl Bus {
    /// An in-process bus with subscriber buffers of `buffer` events.
    pub fn in_process(buffer: usize) -> Self {
        Bus::InProcess(Hub::new(buffer))
    }

    /// The local hub.
    pub fn hub(&self) -> &Hub {
        match self {
            Bus::InProcess(hub) => hub,
            Bus::Redis(bus) => bus.hub(),
        }
    }

    /// Publishes one event to every instance (at most once per call; the
    /// outbox relay retries what fails).
    pub async fn publish(&self, event: Arc<Envelope>) -> anyhow::Result<()> {
        match self {
            Bus::InProcess(hub) => {
                hub.dispatch(event);
                Ok(())
            }
            Bus::Redis(bus) => bus.publish(&event).await,
        }
    }

    /// Passes on a message this release cannot read (a newer release wrote
    /// it during a rolling deploy) to the instances that can. In process
    /// there are none: it is dropped.
    pub async fn forward(&self, topic: &str, wire: &str) -> anyhow::Result<()> {
        match self {
            Bus::InProcess(_) => Ok(()),
            Bus::Redis(bus) => bus.publish_wire(topic, wire).await,
        }
    }

    /// Subscribes to the events matching `filter` on this instance.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.hub().subscribe(filter)
    }
}
