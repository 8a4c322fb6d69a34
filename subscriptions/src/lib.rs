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

/// One message of a batch for [`Bus::publish_all`].
pub struct Outgoing {
    /// What goes out.
    pub payload: Payload,
    /// The span it is published in (the relay's, in the trace of the
    /// change it announces).
    pub span: tracing::Span,
}

/// What a message carries.
pub enum Payload {
    /// An event this release reads.
    Event(Arc<Envelope>),
    /// A message a newer release wrote (rolling deploy), passed on as it is
    /// to the instances that can read it; in process it is dropped.
    Wire {
        /// Its topic's channel.
        topic: String,
        /// Its wire form.
        wire: String,
    },
}

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

    /// Publishes a batch in its order, to Redis in one round trip (a
    /// pipeline), at most once per call. Each message's `PUBLISH` span is a
    /// child of the span it comes with and covers the round trip it went in.
    pub async fn publish_all(&self, batch: &[Outgoing]) -> anyhow::Result<()> {
        match self {
            Bus::InProcess(hub) => {
                for out in batch {
                    if let Payload::Event(event) = &out.payload {
                        hub.dispatch(event.clone());
                    }
                }
                Ok(())
            }
            Bus::Redis(bus) => bus.publish_all(batch).await,
        }
    }

    /// Subscribes to the events matching `filter` on this instance.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        self.hub().subscribe(filter)
    }
}
