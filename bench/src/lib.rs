//! Tools that measure wallet-bff; see BENCHMARKS.md for the figures.
//!
//! # Layout
//! - `src/bin/ws_idle.rs`: resident memory per idle, subscribed WebSocket
//!   connection, for our buffer sizes against tungstenite's defaults.
//! - `src/bin/notify_burst.rs`: a burst of transfers through the notifier to
//!   a real SMTP server, healthy and slow: e-mails per second, and the
//!   commit-to-subscriber latency of the same transfers' live events.
//! - `src/bin/history_query.rs`: the transaction-history page query as it
//!   was (one `OR` over both wallet columns) against the merged per-wallet
//!   index range scans, side by side on one PostgreSQL database.
//!
//! Shared here: [`graphql_ws`], an authenticated `graphql-transport-ws`
//! connection with one subscription running.

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `ws://{addr}/graphql/ws` with `token`, waits for the
/// `connection_ack` and starts `query` as operation `id`.
pub async fn graphql_ws(addr: &str, token: &str, id: &str, query: &str) -> anyhow::Result<Socket> {
    let mut req = format!("ws://{addr}/graphql/ws").into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
            .to_string(),
    ))
    .await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str().contains("connection_ack") => {}
        other => bail!("no connection_ack: {other:?}"),
    }
    ws.send(Message::text(
        json!({ "id": id, "type": "subscribe", "payload": { "query": query } }).to_string(),
    ))
    .await?;
    Ok(ws)
}
