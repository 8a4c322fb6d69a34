//! The event bus of wallet-bff: committed outbox events go out to every API
//! instance and reach the local subscribers of the user they belong to.
//!
//! # Layout
//! - [`event`]: the [`Event`] envelope and its wire form (the JSON published
//!   on the Redis channel named by the event's [`Topic`]).
//! - [`hub`]: the process-local fan-out. Each subscriber has a bounded buffer;
//!   one that falls behind is cut off with [`Interrupted::Lagged`] instead of slowing the
//!   others or growing memory, and must resubscribe from its last sequence.
//! - [`redis_bus`]: one Redis subscriber connection per process (reconnecting
//!   with backoff) feeding the hub, and a publisher.
//! - [`Bus`]: what the rest of the system uses: in-process for the embedded
//!   default, Redis for the production shape.

pub mod event;
pub mod hub;
pub mod redis_bus;

pub use domain::Topic;
pub use event::Event;
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
    pub async fn publish(&self, event: &Event) -> anyhow::Result<()> {
        match self {
            Bus::InProcess(hub) => {
                hub.dispatch(event);
                Ok(())
            }
            Bus::Redis(bus) => bus.publish(event).await,
        }
    }

    /// Subscribes to the events matching `filter` on this instance.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.hub().subscribe(filter)
    }
}
