//! The execution time limit (`REQUEST_TIMEOUT_SECS`) of queries and
//! mutations, whatever the transport: async-graphql calls the `execute` hook
//! for every query and mutation (over HTTP, batched or not, and over a
//! WebSocket, hash-only persisted ones included) and never for a
//! subscription, which runs as long as its client wants.
//!
//! A cancelled operation answers `INTERNAL_SERVER_ERROR` with
//! `extensions.timedOut: true`. Dropping its future rolls back its open
//! database transaction; a money mutation whose outcome the client did not
//! learn is settled by retrying it with the same `idempotencyKey`.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Response, ServerError};
use domain::ErrorCode;

/// The extension factory.
#[derive(Debug, Clone, Copy)]
pub struct TimeLimit(pub Duration);

impl ExtensionFactory for TimeLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(TimeLimitExtension(self.0))
    }
}

struct TimeLimitExtension(Duration);

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

#[async_trait::async_trait]
impl Extension for TimeLimitExtension {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        match tokio::time::timeout(self.0, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(
                    operation = operation_name.unwrap_or("-"),
                    limit.secs = self.0.as_secs(),
                    "GraphQL operation cancelled at the time limit"
                );
                Response::from_errors(vec![timed_out(self.0)])
            }
        }
    }
}
