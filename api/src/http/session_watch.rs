//! Which open WebSockets' sessions have ended.
//!
//! A socket authenticates once, at `connection_init`; its session may end
//! later (logout, a reused refresh token, a password change), and its
//! streams must stop within one keep-alive interval. Each socket registers
//! its session here, and one sweep per instance and interval asks the
//! database about all of them at once (a statement per [`CHUNK`] sessions),
//! instead of one query per socket and keep-alive: at 10,000 sockets and
//! 15 s that was 667 queries a second, in bursts where sockets had
//! connected together.
//!
//! A sweep the database cannot answer ends nothing: one outage should not
//! drop every client; the token's expiry still bounds a socket, and each
//! operation it starts checks its session again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Sessions asked about in one statement.
pub const CHUNK: usize = 1_000;

/// The sessions of this instance's open sockets.
#[derive(Default)]
pub struct SessionWatch {
    sessions: Mutex<HashMap<Uuid, Watched>>,
}

struct Watched {
    /// Sockets of this session.
    sockets: usize,
    /// Becomes `true` when the session ends.
    ended: watch::Sender<bool>,
}

/// A socket's registration; it leaves the watch when dropped.
pub struct Registration {
    watch: Arc<SessionWatch>,
    session_id: Uuid,
    ended: watch::Receiver<bool>,
}

impl Registration {
    /// Resolves once the session has ended (never, if the watch forgets it
    /// without an end, which only a dropped registration does).
    pub async fn ended(&mut self) {
        if self.ended.wait_for(|ended| *ended).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut sessions = self.watch.lock();
        if let Some(watched) = sessions.get_mut(&self.session_id) {
            watched.sockets -= 1;
            if watched.sockets == 0 {
                sessions.remove(&self.session_id);
            }
        }
    }
}

impl SessionWatch {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Watched>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a socket of `session_id`.
    pub fn register(self: &Arc<Self>, session_id: Uuid) -> Registration {
        let mut sessions = self.lock();
        let watched = sessions.entry(session_id).or_insert_with(|| Watched {
            sockets: 0,
            ended: watch::channel(false).0,
        });
        watched.sockets += 1;
        Registration {
            watch: self.clone(),
            session_id,
            ended: watched.ended.subscribe(),
        }
    }

    /// Sessions with an open socket.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Asks the database which watched sessions are still live and ends
    /// the others' sockets; returns how many sessions ended.
    pub async fn sweep(&self, db: &DatabaseConnection) -> entity::StoreResult<usize> {
        let ids: Vec<Uuid> = self.lock().keys().copied().collect();
        let mut ended = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let live = entity::store::sessions::live_among(db, chunk).await?;
            ended.extend(chunk.iter().filter(|id| !live.contains(id)).copied());
        }
        let sessions = self.lock();
        for id in &ended {
            if let Some(watched) = sessions.get(id) {
                watched.ended.send_replace(true);
            }
        }
        Ok(ended.len())
    }
}

/// Sweeps every `interval` until `cancel`.
pub async fn run(
    watch: Arc<SessionWatch>,
    db: DatabaseConnection,
    interval: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = cancel.cancelled() => return,
        }
        if watch.is_empty() {
            continue;
        }
        match watch.sweep(&db).await {
            Ok(0) => {}
            Ok(ended) => tracing::debug!(sessions = ended, "ended sessions' WebSockets closing"),
            Err(err) => {
                tracing::warn!(error = %err, "checking the WebSockets' sessions failed; they stay open")
            }
        }
    }
}
