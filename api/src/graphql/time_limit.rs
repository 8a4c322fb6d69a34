//! The execution time limit (`REQUEST_TIMEOUT_SECS`) of queries and
//! mutations, whatever the transport: `Pipeline::execute`
//! (`crate::graphql::pipeline`) runs every query and mutation under it (over
//! HTTP, batched or not, and over a WebSocket, hash-only persisted ones
//! included), never a subscription, which runs as long as its client wants.
//!
//! A cancelled operation answers `INTERNAL_SERVER_ERROR` with
//! `extensions.timedOut: true`. Dropping its future rolls back its open
//! database transaction; a money mutation whose outcome the client did not
//! learn is settled by retrying it with the same `idempotencyKey`.

use std::time::Duration;

use async_graphql::{Response, ServerError};
use domain::ErrorCode;

/// The error of an operation cancelled at `limit`.
pub fn timed_out(limit: Duration) -> ServerError {
    let mut err = crate::error::coded_server_error(
        ErrorCode::InternalServerError,
        format!(
            "the request took longer than the server's limit of {} s and was cancelled; \
             retry it (money mutations with the same idempotencyKey)",
            limit.as_secs().max(1)
        ),
    );
    if let Some(ext) = err.extensions.as_mut() {
        ext.set("timedOut", true);
    }
    err
}

/// Whether `err` is [`timed_out`]'s.
pub fn is_timed_out(err: &ServerError) -> bool {
    err.extensions
        .as_ref()
        .and_then(|ext| ext.get("timedOut"))
        .is_some_and(|v| *v == async_graphql::Value::Boolean(true))
}

/// Runs `operation`, cancelled once `spent` (what the request already took
/// on its behalf) and its own run reach `limit`.
pub async fn within(
    limit: Duration,
    spent: Duration,
    operation_name: Option<&str>,
    operation: impl std::future::Future<Output = Response>,
) -> Response {
    match tokio::time::timeout(limit.saturating_sub(spent), operation).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                operation = operation_name.unwrap_or("-"),
                limit.secs = limit.as_secs(),
                "GraphQL operation cancelled at the time limit"
            );
            Response::from_errors(vec![timed_out(limit)])
        }
    }
}
