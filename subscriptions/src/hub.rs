//! Process-local fan-out of events to subscribers.
//!
//! Lag policy: every subscriber has a bounded buffer of `buffer` events. When
//! an event finds it full, the subscriber is removed and its stream ends with
//! [`Lagged`] once the buffered events are read: it never silently misses an
//! event, never slows the others, and never grows memory. The client then
//! resubscribes with the last sequence it saw and the missed events are
//! replayed from storage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use domain::Topic;
use tokio::sync::mpsc;
use uuid::Uuid;

use domain::Envelope;

/// Whose events a subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// One user's.
    User(Uuid),
    /// Everyone's (staff dashboards).
    All,
}

/// What a subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The topic.
    pub topic: Topic,
    /// Whose events.
    pub audience: Audience,
}

/// Why a subscription stopped receiving live events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// It fell behind its buffer and was cut off: the client must resubscribe
    /// from the last sequence it saw.
    Lagged,
    /// Events may have been missed upstream (the bus reconnected): read the
    /// gap from storage and subscribe again.
    Resync,
}

const LIVE: u8 = 0;
const LAGGED: u8 = 1;
const RESYNC: u8 = 2;

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Arc<Envelope>>,
    state: Arc<AtomicU8>,
}

#[derive(Default)]
struct Routes {
    next_id: u64,
    by_filter: HashMap<Filter, Vec<Subscriber>>,
}

/// Counters for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Subscriptions cut off for lag since start.
    pub dropped_for_lag: u64,
    /// Events dispatched since start.
    pub dispatched: u64,
}

struct Inner {
    buffer: usize,
    routes: Mutex<Routes>,
    dropped_for_lag: AtomicU64,
    dispatched: AtomicU64,
}

/// The fan-out; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// A hub whose subscribers buffer up to `buffer` events (at least 1).
    pub fn new(buffer: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                buffer: buffer.max(1),
                routes: Mutex::new(Routes::default()),
                dropped_for_lag: AtomicU64::new(0),
                dispatched: AtomicU64::new(0),
            }),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding the lock leaves the routes consistent (every
        // mutation is a single push or retain), so poisoning is ignored.
        self.inner
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a subscriber.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inner.buffer);
        let state = Arc::new(AtomicU8::new(LIVE));
        let mut routes = self.routes();
        routes.next_id += 1;
        let id = routes.next_id;
        routes
            .by_filter
            .entry(filter)
            .or_default()
            .push(Subscriber {
                id,
                tx,
                state: state.clone(),
            });
        Subscription {
            rx,
            state,
            done: false,
            hub: self.clone(),
            filter,
            id,
        }
    }

    /// Delivers an event to the user's subscribers of its topic and to the
    /// topic's all-users subscribers. Never waits.
    pub fn dispatch(&self, event: Arc<Envelope>) {
        self.inner.dispatched.fetch_add(1, Ordering::Relaxed);
        let topic = event.topic();
        let mut routes = self.routes();
        for audience in [Audience::User(event.user_id), Audience::All] {
            let filter = Filter { topic, audience };
            let Some(subs) = routes.by_filter.get_mut(&filter) else {
                continue;
            };
            subs.retain(|s| match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.state.store(LAGGED, Ordering::Release);
                    self.inner.dropped_for_lag.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        subscription = s.id,
                        topic = topic.as_str(),
                        "subscriber fell behind; cut off"
                    );
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if subs.is_empty() {
                routes.by_filter.remove(&filter);
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> HubStats {
        let subscriptions = self.routes().by_filter.values().map(Vec::len).sum();
        HubStats {
            subscriptions,
            dropped_for_lag: self.inner.dropped_for_lag.load(Ordering::Relaxed),
            dispatched: self.inner.dispatched.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription with [`Interrupted::Resync`] (events may
    /// have been missed, e.g. while the bus reconnected); returns how many.
    pub fn resync_all(&self) -> usize {
        let mut routes = self.routes();
        let mut count = 0;
        for subs in routes.by_filter.values() {
            for s in subs {
                s.state.store(RESYNC, Ordering::Release);
                count += 1;
            }
        }
        routes.by_filter.clear();
        count
    }

    fn unsubscribe(&self, filter: Filter, id: u64) {
        let mut routes = self.routes();
        if let Some(subs) = routes.by_filter.get_mut(&filter) {
            subs.retain(|s| s.id != id);
            if subs.is_empty() {
                routes.by_filter.remove(&filter);
            }
        }
    }
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Arc<Envelope>>,
    state: Arc<AtomicU8>,
    done: bool,
    hub: Hub,
    filter: Filter,
    id: u64,
}

impl Subscription {
    /// The next event; once interrupted, `Some(Err(..))` once (after the
    /// buffered events), then `None`.
    pub async fn next(&mut self) -> Option<Result<Arc<Envelope>, Interrupted>> {
        if self.done {
            return None;
        }
        match self.rx.recv().await {
            Some(event) => Some(Ok(event)),
            None => {
                self.done = true;
                match self.state.load(Ordering::Acquire) {
                    LAGGED => Some(Err(Interrupted::Lagged)),
                    RESYNC => Some(Err(Interrupted::Resync)),
                    _ => None,
                }
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.filter, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: Uuid, sequence: i64, topic: Topic) -> Arc<Envelope> {
        use domain::events::{EventBody, KycStatusChanged};
        let kyc = KycStatusChanged {
            status: domain::KycStatus::Pending,
            level: 0,
            reason: None,
        };
        let body = match topic {
            Topic::KycStatus => EventBody::KycStatusChanged(kyc),
            Topic::BalanceUpdated => {
                let wallet = domain::WalletRecord {
                    id: Uuid::new_v4(),
                    user_id: user,
                    currency: domain::Currency::Usd,
                    available: Default::default(),
                    frozen: Default::default(),
                    status: domain::WalletStatus::Active,
                    version: sequence,
                    updated_at: chrono::Utc::now(),
                    debt: Default::default(),
                };
                EventBody::BalanceUpdated(domain::events::BalanceUpdated::of(
                    &wallet,
                    Default::default(),
                    Uuid::new_v4(),
                ))
            }
            other => panic!("no test body for {other:?}"),
        };
        Arc::new(Envelope {
            id: Uuid::new_v4(),
            user_id: user,
            sequence,
            occurred_at: chrono::Utc::now(),
            body,
        })
    }

    fn mine(user: Uuid) -> Filter {
        Filter {
            topic: Topic::BalanceUpdated,
            audience: Audience::User(user),
        }
    }

    #[tokio::test]
    async fn users_receive_only_their_own_events_and_staff_see_all() {
        let hub = Hub::new(8);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sub_a = hub.subscribe(mine(a));
        let mut all = hub.subscribe(Filter {
            topic: Topic::BalanceUpdated,
            audience: Audience::All,
        });
        hub.dispatch(event(b, 1, Topic::BalanceUpdated));
        hub.dispatch(event(a, 1, Topic::KycStatus));
        hub.dispatch(event(a, 2, Topic::BalanceUpdated));
        let got = sub_a.next().await.expect("event").expect("not lagged");
        assert_eq!((got.user_id, got.sequence), (a, 2));
        assert_eq!(all.next().await.expect("event").expect("ok").user_id, b);
        assert_eq!(all.next().await.expect("event").expect("ok").user_id, a);
        drop(sub_a);
        drop(all);
        assert_eq!(hub.stats().subscriptions, 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_after_its_buffer_without_slowing_others() {
        let hub = Hub::new(2);
        let user = Uuid::new_v4();
        let mut slow = hub.subscribe(mine(user));
        let mut fast = hub.subscribe(mine(user));
        for seq in 1..=5 {
            hub.dispatch(event(user, seq, Topic::BalanceUpdated));
            let got = fast.next().await.expect("event").expect("fast keeps up");
            assert_eq!(got.sequence, seq);
        }
        // The slow one gets what fit in its buffer, then the lag signal, then the end.
        assert_eq!(slow.next().await.expect("1").expect("ok").sequence, 1);
        assert_eq!(slow.next().await.expect("2").expect("ok").sequence, 2);
        assert_eq!(slow.next().await, Some(Err(Interrupted::Lagged)));
        assert_eq!(slow.next().await, None);
        let stats = hub.stats();
        assert_eq!(stats.dropped_for_lag, 1);
        assert_eq!(stats.subscriptions, 1);
    }
}
