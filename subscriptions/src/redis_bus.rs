//! Redis pub/sub backend: one subscriber connection per process, feeding the
//! local [`Hub`], and a multiplexed publisher connection.
//!
//! Redis pub/sub does not keep messages for a subscriber that is away. When
//! the subscriber connection comes back after a failure, every local
//! subscription is therefore interrupted with `Resync`: its owner reads the
//! gap from storage and subscribes again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use domain::Topic;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tracing::Instrument;

use crate::hub::Hub;
use domain::Envelope;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The subscriber publishes a heartbeat to itself this often...
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// ...and treats the connection as dead (half-open sockets never error) when
/// none came back for this long.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);

struct Inner {
    hub: Hub,
    publisher: ConnectionManager,
    connected: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
}

/// The Redis-backed bus; cheap to clone.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

impl RedisBus {
    /// Connects the publisher and starts the subscriber task; waits up to
    /// `ready_within` for the subscription to be in place.
    pub async fn connect(url: &str, hub: Hub, ready_within: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("parsing REDIS_URL")?;
        let publisher = ConnectionManager::new(client.clone())
            .await
            .context("connecting to Redis")?;
        let connected = Arc::new(AtomicBool::new(false));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(subscriber_loop(
            client,
            publisher.clone(),
            hub.clone(),
            connected.clone(),
            stop_rx,
        ));
        let bus = Self {
            inner: Arc::new(Inner {
                hub,
                publisher,
                connected,
                stop,
            }),
        };
        let deadline = tokio::time::Instant::now() + ready_within;
        while !bus.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the Redis subscription was not established within {ready_within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(bus)
    }

    /// The local hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Whether the subscriber connection is up.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Publishes an event on its topic's channel.
    pub async fn publish(&self, event: &Envelope) -> anyhow::Result<()> {
        self.publish_wire(event.topic().as_str(), &event.to_wire())
            .await
    }

    /// Publishes a message already in wire form on `topic`'s channel.
    pub async fn publish_wire(&self, topic: &str, wire: &str) -> anyhow::Result<()> {
        let mut conn = self.inner.publisher.clone();
        let span = tracing::info_span!(
            "redis.publish",
            otel.name = "PUBLISH",
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = "PUBLISH",
        );
        let _receivers: i64 = conn
            .publish(topic, wire)
            .instrument(span)
            .await
            .context("publishing to Redis")?;
        Ok(())
    }

    /// Publishes a batch in one pipeline: one round trip, in order.
    pub async fn publish_all(&self, batch: &[crate::Outgoing]) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut spans = Vec::with_capacity(batch.len());
        for out in batch {
            match &out.payload {
                crate::Payload::Event(event) => {
                    pipe.cmd("PUBLISH")
                        .arg(event.topic().as_str())
                        .arg(event.to_wire())
                        .ignore();
                }
                crate::Payload::Wire { topic, wire } => {
                    pipe.cmd("PUBLISH").arg(topic).arg(wire).ignore();
                }
            }
            spans.push(tracing::info_span!(
                parent: &out.span,
                "redis.publish",
                otel.name = "PUBLISH",
                otel.kind = "client",
                db.system.name = "redis",
                db.operation.name = "PUBLISH",
                db.operation.batch.size = batch.len(),
            ));
        }
        let mut conn = self.inner.publisher.clone();
        let () = pipe
            .query_async(&mut conn)
            .await
            .context("publishing to Redis")?;
        drop(spans);
        Ok(())
    }

    /// Stops the subscriber task.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
    }
}

async fn subscriber_loop(
    client: redis::Client,
    publisher: ConnectionManager,
    hub: Hub,
    connected: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let link = Link {
            client: &client,
            publisher: &publisher,
            hub: &hub,
            connected: &connected,
        };
        match run_subscription(link, &mut stop, first, &mut backoff).await {
            Ok(()) => return,
            Err(err) => {
                connected.store(false, Ordering::Release);
                tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "Redis subscriber disconnected");
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What one subscriber connection works with.
struct Link<'a> {
    client: &'a redis::Client,
    publisher: &'a ConnectionManager,
    hub: &'a Hub,
    connected: &'a AtomicBool,
}

async fn run_subscription(
    link: Link<'_>,
    stop: &mut watch::Receiver<bool>,
    first: bool,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let Link {
        client,
        publisher,
        hub,
        connected,
    } = link;
    let heartbeat_channel = format!("wallet_bff.heartbeat.{}", uuid::Uuid::new_v4());
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .context("opening the subscriber connection")?;
    for topic in Topic::ALL {
        pubsub
            .subscribe(topic.as_str())
            .await
            .context("subscribing")?;
    }
    pubsub
        .subscribe(&heartbeat_channel)
        .await
        .context("subscribing to the heartbeat")?;
    if !first {
        // Events published while we were away never reach us: let every
        // subscriber resubscribe and replay the gap from storage.
        let cut = hub.resync_all();
        tracing::info!(
            subscriptions = cut,
            "Redis subscriber reconnected; subscribers asked to resync"
        );
    }
    connected.store(true, Ordering::Release);
    *backoff = MIN_BACKOFF;
    tracing::info!("Redis subscriber connected");
    let mut messages = pubsub.into_on_message();
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = beat.tick() => {
                if last_beat.elapsed() > HEARTBEAT_TIMEOUT {
                    anyhow::bail!("no heartbeat through the subscriber connection for {HEARTBEAT_TIMEOUT:?}");
                }
                let mut conn = publisher.clone();
                // A failed publish shows up as a missing heartbeat.
                let _: Result<i64, _> = conn.publish(&heartbeat_channel, "").await;
            }
            msg = messages.next() => {
                let Some(msg) = msg else {
                    anyhow::bail!("the Redis subscriber connection closed");
                };
                if msg.get_channel_name() == heartbeat_channel {
                    last_beat = tokio::time::Instant::now();
                    continue;
                }
                let text: String = match msg.get_payload() {
                    Ok(t) => t,
                    Err(err) => {
                        tracing::warn!(error = %err, "undecodable Redis message");
                        continue;
                    }
                };
                match Envelope::from_wire(&text) {
                    Ok(event) => hub.dispatch(Arc::new(event)),
                    // Written by a newer release during a rolling deploy:
                    // its own instances serve it.
                    Err(err) if err.is_from_newer_release() => {
                        tracing::debug!(error = %err, channel = msg.get_channel_name(), "event of a newer release skipped");
                    }
                    Err(err) => tracing::warn!(error = %err, channel = msg.get_channel_name(), "malformed event"),
                }
            }
            _ = stop.changed() => {
                connected.store(false, Ordering::Release);
                return Ok(());
            }
        }
    }
}
