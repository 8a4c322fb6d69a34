//! `GET /graphql/ws`: GraphQL over WebSocket, speaking `graphql-transport-ws`
//! (the `graphql-ws` library, Apollo's `GraphQLWsLink`) and the legacy
//! `graphql-ws` protocol (`subscriptions-transport-ws`).
//!
//! - Auth: `{"authorization": "Bearer <jwt>"}` in the `connection_init`
//!   payload; a missing, forged or expired token closes with 4403.
//! - The client has `WS_INIT_TIMEOUT_SECS` to initialise (else 4408).
//! - Keep-alive: the server pings every `WS_KEEPALIVE_SECS` (WebSocket ping,
//!   plus `ka` messages on the legacy protocol); two unanswered pings close
//!   the socket.
//! - When the access token expires the socket closes with 4403, so the
//!   client reconnects with a fresh token (graphql-ws retries that code).
//! - At most `WS_MAX_SUBSCRIPTIONS` operations per connection and
//!   `WS_MAX_MESSAGE_BYTES` per message; small buffers keep idle sockets cheap.
//! - On shutdown every operation is completed and the socket closes with 1001.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::ErrorCode;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio_stream::StreamMap;

use super::HttpState;
use crate::auth::{AuthUser, Viewer};
use crate::error::enforce_codes;
use crate::graphql::pipeline::refused_before_execution;
use crate::graphql::shape::Origin;
use crate::limits::ClientAddr;

/// The two subprotocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// Legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Transport => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }
}

/// The upgrade handler.
pub async fn graphql_ws(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // The upgrade carries no token yet: it counts against the address's
    // anonymous request budget, like any other request without one.
    let addr = super::client_addr(&headers, peer, &state.app);
    if let Err(limited) = state
        .app
        .limiter
        .request(&state.app.settings, None, addr)
        .await
    {
        return super::too_many_requests(limited.retry_after_secs);
    }
    let offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    let protocol = if offered.contains(&"graphql-transport-ws") {
        Protocol::Transport
    } else if offered.contains(&"graphql-ws") {
        Protocol::Legacy
    } else {
        return (
            StatusCode::BAD_REQUEST,
            "use the graphql-transport-ws (or legacy graphql-ws) WebSocket subprotocol",
        )
            .into_response();
    };
    let settings = &state.app.settings;
    let max_message = settings.ws_max_message_bytes;
    // Small buffers: most sockets sit idle between events (see BENCHMARKS.md).
    ws.protocols([protocol.name()])
        .read_buffer_size(settings.ws_read_buffer_bytes)
        .write_buffer_size(settings.ws_write_buffer_bytes)
        // Outgoing results may be larger than what clients may send us.
        .max_write_buffer_size(usize::MAX)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| {
            // Built before the task's future, which then holds it once: an
            // async block that built it from `socket` and `state` would keep
            // those too, and a future that owned it would hold it twice.
            let mut connection = Connection::new(socket, state, protocol, addr);
            async move {
                let live = connection.state.app.live.clone();
                live.ws_connections.fetch_add(1, Ordering::Relaxed);
                connection.run().await;
                drop(connection);
                live.ws_connections.fetch_sub(1, Ordering::Relaxed);
                live.ws_closed.notify_waiters();
            }
        })
}

/// Longest a single frame may take to go out before the peer counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long our close waits for the peer's answering close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Whether an open socket's session is still live. A database that cannot
/// answer keeps the socket open (one outage should not drop every client;
/// the token's expiry still bounds it, and each operation the socket
/// starts meets the database again).
async fn socket_session_live(state: &crate::state::AppState, session_id: uuid::Uuid) -> bool {
    crate::auth::session_live(state, session_id)
        .await
        .unwrap_or(true)
}

type ResponseStream = Pin<Box<dyn Stream<Item = Option<async_graphql::Response>> + Send>>;

/// The operations a connection runs.
struct Operations {
    /// Each operation's results by the client's id; `None` ends one.
    running: StreamMap<String, ResponseStream>,
    /// Operations that sent their first result.
    started: std::collections::HashSet<String>,
    /// Keep-alive pings the client has not answered.
    unanswered: u8,
    /// Who runs them.
    viewer: Viewer,
}

/// What woke an idle connection.
enum Wake {
    /// A frame from the client, an error, or `None` when it went away.
    Incoming(Option<Result<Message, axum::Error>>),
    /// An operation's next result; `None` when it completed.
    Result(String, Option<async_graphql::Response>),
    /// Time for a keep-alive ping.
    Ping,
    /// The server is shutting down.
    Stopping,
}

struct Connection {
    socket: WebSocket,
    state: HttpState,
    protocol: Protocol,
    /// The client's address, for rate limits and the resolvers.
    addr: std::net::IpAddr,
}

/// How the connection ended, from our side.
enum Ending {
    /// The peer went away without a close frame.
    Gone,
    /// The peer sent a close frame: it gets its answer, so the client sees
    /// a clean close (1000 after `dispose()`), not 1006.
    PeerClosed,
    /// We close with this code and reason.
    Close(u16, String),
}

/// A read error: an oversize message is closed with 1009 (graphql-ws does
/// not retry it), anything else means the peer is gone.
fn ending_for(err: axum::Error) -> Ending {
    let too_big = err
        .into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    if too_big {
        Ending::Close(1009, "Message too big".into())
    } else {
        Ending::Gone
    }
}

fn bearer(payload: &Value) -> Option<&str> {
    let obj = payload.as_object()?;
    let raw = ["authorization", "Authorization", "authToken"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))?;
    Some(
        raw.strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim(),
    )
}

impl Connection {
    fn new(
        socket: WebSocket,
        state: HttpState,
        protocol: Protocol,
        addr: std::net::IpAddr,
    ) -> Self {
        Self {
            socket,
            state,
            protocol,
            addr,
        }
    }

    /// Refuses one operation with an `error` message; `Some` when the peer
    /// is gone.
    async fn refuse_operation(&mut self, id: String, error: Value) -> Option<Ending> {
        let payload = if self.protocol == Protocol::Transport {
            json!([error])
        } else {
            error
        };
        (!self
            .send_json(json!({ "id": id, "type": "error", "payload": payload }))
            .await)
            .then_some(Ending::Gone)
    }

    /// Sends one frame; false when the peer is gone or does not read it
    /// within [`SEND_TIMEOUT`] (a stalled reader must not pin the task).
    async fn send(&mut self, message: Message) -> bool {
        matches!(
            tokio::time::timeout(SEND_TIMEOUT, self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }

    async fn send_json(&mut self, value: Value) -> bool {
        self.send(Message::Text(value.to_string().into())).await
    }

    /// Closes with `code` and waits (briefly) for the peer's answer, so the
    /// closing handshake completes and the client sees our code.
    async fn close(&mut self, code: u16, reason: &str) {
        let sent = self
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.to_owned().into(),
            })))
            .await;
        if sent {
            let drain = async {
                while let Some(Ok(msg)) = self.socket.recv().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drain).await;
        }
    }

    /// Answers the peer's close frame: tungstenite queued the echo when it
    /// read it; flushing sends it.
    async fn answer_close(&mut self) {
        use futures_util::SinkExt;
        let _ = tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await;
    }

    async fn finish(&mut self, ending: Ending) {
        match ending {
            Ending::Close(code, reason) => self.close(code, &reason).await,
            Ending::PeerClosed => self.answer_close().await,
            Ending::Gone => {}
        }
    }

    async fn run(&mut self) {
        let settings = self.state.app.settings.clone();
        // Boxed, like every await that touches the database or Redis: a
        // connection's task is as large as its largest await, and it sits
        // idle in `serve` for hours (see `Connection::serve`).
        let init = tokio::time::timeout(
            Duration::from_secs(settings.ws_init_timeout_secs),
            Box::pin(self.wait_for_init()),
        )
        .await;
        let user = match init {
            Err(_) => return self.close(4408, "Connection initialisation timeout").await,
            Ok(Err(ending)) => return self.finish(ending).await,
            Ok(Ok(user)) => user,
        };
        if !self.send_json(json!({ "type": "connection_ack" })).await {
            return;
        }
        if self.protocol == Protocol::Legacy && !self.send_json(json!({ "type": "ka" })).await {
            return;
        }
        let ending = self.serve(user).await;
        self.finish(ending).await;
    }

    /// Reads until `connection_init`; returns the authenticated user.
    async fn wait_for_init(&mut self) -> Result<AuthUser, Ending> {
        loop {
            let text = match self.socket.recv().await {
                None => return Err(Ending::Gone),
                Some(Ok(Message::Close(_))) => return Err(Ending::PeerClosed),
                Some(Err(err)) => return Err(ending_for(err)),
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(Ending::Close(
                        4400,
                        "Binary messages are not supported".into(),
                    ));
                }
            };
            let msg: Value = serde_json::from_str(text.as_str())
                .map_err(|_| Ending::Close(4400, "Invalid message".into()))?;
            match msg.get("type").and_then(Value::as_str) {
                Some("connection_init") => {
                    let payload = msg.get("payload").cloned().unwrap_or(Value::Null);
                    let user = match bearer(&payload) {
                        Some(token) => {
                            match crate::auth::authenticate(
                                &self.state.app,
                                token,
                                crate::auth::ReadAlong::Account,
                            )
                            .await
                            {
                                Ok(found) => found.map(|found| found.user),
                                // Unchecked is not refused: 1011 lets the client retry.
                                Err(()) => {
                                    return Err(Ending::Close(1011, "Try again later".into()));
                                }
                            }
                        }
                        None => None,
                    };
                    return match user {
                        Some(user) => Ok(user),
                        None => {
                            tracing::info!("websocket init refused: missing or invalid token");
                            if self.protocol == Protocol::Legacy {
                                let _ = self
                                    .send_json(json!({ "type": "connection_error", "payload": { "message": "Forbidden" } }))
                                    .await;
                            }
                            Err(Ending::Close(4403, "Forbidden".into()))
                        }
                    };
                }
                Some("ping") if self.protocol == Protocol::Transport => {
                    if !self.send_json(json!({ "type": "pong" })).await {
                        return Err(Ending::Gone);
                    }
                }
                _ => return Err(Ending::Close(4401, "Unauthorized".into())),
            }
        }
    }

    /// Runs the connection after `connection_ack` until it ends.
    ///
    /// Most sockets sit here for hours between events, holding this
    /// future's state, so the wait is kept apart from the work: the wait
    /// owns only the timers and the select, and what woke it is handled by a
    /// boxed future that is gone again once done (BENCHMARKS.md: memory per
    /// idle subscriber).
    async fn serve(&mut self, user: AuthUser) -> Ending {
        let keepalive = Duration::from_secs(self.state.app.settings.ws_keepalive_secs.max(1));
        let mut shutdown = self.state.app.live.shutdown.subscribe();
        let stopping = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        tokio::pin!(stopping);
        let until_expiry = (user.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(until_expiry);
        tokio::pin!(expiry);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut session = self.state.app.live.sessions.register(user.session_id);
        let mut live = Operations {
            running: StreamMap::new(),
            started: std::collections::HashSet::new(),
            unanswered: 0,
            viewer: Viewer::User(user),
        };
        loop {
            let wake = tokio::select! {
                incoming = self.socket.recv() => Wake::Incoming(incoming),
                Some((id, item)) = live.running.next(), if !live.running.is_empty() => Wake::Result(id, item),
                _ = ping.tick() => Wake::Ping,
                // A session ended since the socket opened (logout, a reused
                // refresh token, a password change) stops its streams
                // within one sweep of the session watch (a keep-alive
                // interval).
                () = session.ended() => return Ending::Close(4403, "Forbidden: the session ended; sign in again".into()),
                _ = &mut expiry => return Ending::Close(4403, "Forbidden: the access token expired; reconnect with a fresh one".into()),
                () = &mut stopping => Wake::Stopping,
            };
            if let Some(ending) = Box::pin(self.on_wake(wake, &mut live)).await {
                return ending;
            }
        }
    }

    /// Handles what woke the connection; `Some` ends it.
    async fn on_wake(&mut self, wake: Wake, live: &mut Operations) -> Option<Ending> {
        match wake {
            Wake::Incoming(incoming) => {
                let text = match incoming {
                    None => return Some(Ending::Gone),
                    Some(Ok(Message::Close(_))) => return Some(Ending::PeerClosed),
                    Some(Err(err)) => return Some(ending_for(err)),
                    Some(Ok(Message::Pong(_) | Message::Ping(_))) => {
                        live.unanswered = 0;
                        return None;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return Some(Ending::Close(
                            4400,
                            "Binary messages are not supported".into(),
                        ));
                    }
                    Some(Ok(Message::Text(t))) => t,
                };
                live.unanswered = 0;
                let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) else {
                    return Some(Ending::Close(4400, "Invalid message".into()));
                };
                self.on_message(msg, live).await
            }
            Wake::Result(id, item) => {
                let sent = match item {
                    Some(response) => self.send_result(id, response, live).await,
                    None => {
                        live.running.remove(&id);
                        live.started.remove(&id);
                        self.send_json(json!({ "id": id, "type": "complete" }))
                            .await
                    }
                };
                (!sent).then_some(Ending::Gone)
            }
            Wake::Ping => {
                if live.unanswered >= 2 {
                    return Some(Ending::Close(4408, "Keep-alive timeout".into()));
                }
                live.unanswered += 1;
                if !self.send(Message::Ping(Vec::new().into())).await {
                    return Some(Ending::Gone);
                }
                if self.protocol == Protocol::Legacy
                    && !self.send_json(json!({ "type": "ka" })).await
                {
                    return Some(Ending::Gone);
                }
                None
            }
            Wake::Stopping => {
                let ids: Vec<String> = live.running.keys().cloned().collect();
                for id in ids {
                    if !self
                        .send_json(json!({ "id": id, "type": "complete" }))
                        .await
                    {
                        return Some(Ending::Gone);
                    }
                }
                Some(Ending::Close(1001, "Server shutting down".into()))
            }
        }
    }

    /// Sends an operation's result: `next` (`data`), or one `error` message
    /// when it was refused before execution; false when the peer is gone.
    async fn send_result(
        &mut self,
        id: String,
        mut response: async_graphql::Response,
        live: &mut Operations,
    ) -> bool {
        enforce_codes(&mut response.errors);
        let first = live.started.insert(id.clone());
        let request_error = first && refused_before_execution(&response);
        if request_error {
            // Refused before execution: one `error` message, nothing else.
            live.running.remove(&id);
            live.started.remove(&id);
            let payload = serde_json::to_value(&response.errors).unwrap_or(Value::Null);
            let payload = if self.protocol == Protocol::Transport {
                payload
            } else {
                payload.get(0).cloned().unwrap_or(Value::Null)
            };
            self.send_json(json!({ "id": id, "type": "error", "payload": payload }))
                .await
        } else {
            let kind = if self.protocol == Protocol::Transport {
                "next"
            } else {
                "data"
            };
            let payload = serde_json::to_value(&response).unwrap_or(Value::Null);
            self.send_json(json!({ "id": id, "type": kind, "payload": payload }))
                .await
        }
    }

    /// Handles one client message after the handshake; `Some` ends the connection.
    async fn on_message(&mut self, msg: Value, live: &mut Operations) -> Option<Ending> {
        let Operations {
            running: ops,
            started,
            viewer,
            ..
        } = live;
        let viewer = &*viewer;
        let kind = msg
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let id = msg.get("id").and_then(Value::as_str).map(str::to_owned);
        match (self.protocol, kind.as_str()) {
            (_, "connection_init") => Some(Ending::Close(
                4429,
                "Too many initialisation requests".into(),
            )),
            (Protocol::Transport, "subscribe") | (Protocol::Legacy, "start") => {
                let Some(id) = id else {
                    return Some(Ending::Close(4400, "Operation id missing".into()));
                };
                if ops.contains_key(&id) {
                    return Some(Ending::Close(
                        4409,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
                let limit = self.state.app.settings.ws_max_subscriptions;
                if ops.len() >= limit {
                    let error = json!({
                        "message": format!("at most {limit} operations may run on one connection"),
                        "extensions": { "code": ErrorCode::LimitExceeded.as_str() },
                    });
                    return self.refuse_operation(id, error).await;
                }
                // Each operation counts against the caller's request budget,
                // like an HTTP request.
                let user = match viewer {
                    Viewer::User(u) => Some(u),
                    _ => None,
                };
                if let Err(limited) = self
                    .state
                    .app
                    .limiter
                    .request(&self.state.app.settings, user, self.addr)
                    .await
                {
                    let error = json!({
                        "message": format!("too many requests: try again in {} s", limited.retry_after_secs),
                        "extensions": {
                            "code": ErrorCode::RateLimited.as_str(),
                            "retryAfter": limited.retry_after_secs,
                        },
                    });
                    return self.refuse_operation(id, error).await;
                }
                // The session may have ended since the last keep-alive check.
                if let Viewer::User(u) = viewer
                    && !socket_session_live(&self.state.app, u.session_id).await
                {
                    return Some(Ending::Close(
                        4403,
                        "Forbidden: the session ended; sign in again".into(),
                    ));
                }
                let request: async_graphql::Request = match serde_json::from_value(
                    msg.get("payload").cloned().unwrap_or(Value::Null),
                ) {
                    Ok(r) => r,
                    Err(_) => return Some(Ending::Close(4400, "Invalid subscribe payload".into())),
                };
                let addr = ClientAddr(self.addr);
                let request = request.data(viewer.clone()).data(addr);
                let pipeline = &self.state.pipeline;
                let responses = match pipeline.prepare(request, Origin::default()).await {
                    Ok(prepared) => {
                        pipeline.stream(&self.state.schema, &self.state.app, Some(addr), prepared)
                    }
                    // Refused before it ran: one `error` message.
                    Err(refused) => futures_util::stream::once(async { refused }).boxed(),
                };
                let stream: ResponseStream = Box::pin(
                    responses
                        .map(Some)
                        .chain(futures_util::stream::once(async { None })),
                );
                ops.insert(id, stream);
                None
            }
            (Protocol::Transport, "complete") | (Protocol::Legacy, "stop") => {
                if let Some(id) = id {
                    let was_running = ops.remove(&id).is_some();
                    started.remove(&id);
                    if was_running
                        && self.protocol == Protocol::Legacy
                        && !self
                            .send_json(json!({ "id": id, "type": "complete" }))
                            .await
                    {
                        return Some(Ending::Gone);
                    }
                }
                None
            }
            (Protocol::Transport, "ping") => {
                (!self.send_json(json!({ "type": "pong" })).await).then_some(Ending::Gone)
            }
            (Protocol::Transport, "pong") => None,
            (Protocol::Legacy, "connection_terminate") => {
                Some(Ending::Close(1000, "Terminated".into()))
            }
            _ => Some(Ending::Close(
                4400,
                format!("Unexpected message type `{kind}`"),
            )),
        }
    }
}
