//! Counts every GraphQL operation, over HTTP and WebSocket alike, into the
//! instance's [`RequestMetrics`]: its type and name when parsed, its
//! duration and errors when executed (subscriptions are counted when they
//! start; they run as long as their client wants). The same names go on the
//! operation's server span (`crate::telemetry::operation_span`): the
//! request's own over HTTP, one per operation inside a batch.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType as Kind};
use async_graphql::{Request, Response, ServerError, ServerResult, Variables};

use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::graphql::shape::InBatch;
use crate::observe::{OperationType, RequestMetrics, name_label};

/// The extension factory.
#[derive(Debug, Clone)]
pub struct Measure(pub Arc<RequestMetrics>);

impl ExtensionFactory for Measure {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(MeasureExtension {
            metrics: self.0.clone(),
            operation: Mutex::new(None),
            kind: Mutex::new(None),
        })
    }
}

struct MeasureExtension {
    metrics: Arc<RequestMetrics>,
    /// The `operationName` the request asked for.
    operation: Mutex<Option<String>>,
    /// The type of the operation this request runs, once parsed.
    kind: Mutex<Option<OperationType>>,
}

fn code_of(err: &ServerError) -> Option<String> {
    match err.extensions.as_ref().and_then(|e| e.get("code")) {
        Some(async_graphql::Value::String(code)) => Some(code.clone()),
        _ => None,
    }
}

/// The type of the operation `name` selects in the document.
fn kind_of(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    let found = doc
        .operations
        .iter()
        .find(|(n, _)| name.is_none() || n.map(|n| n.as_str()) == name)?;
    Some(match found.1.node.ty {
        Kind::Query => OperationType::Query,
        Kind::Mutation => OperationType::Mutation,
        Kind::Subscription => OperationType::Subscription,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Names the current span after the operation, as the GraphQL semantic
/// conventions have it: `mutation SendMoney`, or `query` without a name.
/// The span started before the document was parsed, so its OpenTelemetry
/// span is renamed in place (recording `otel.name` no longer would).
fn name_span(kind: Option<OperationType>, name: Option<&str>) {
    let span = tracing::Span::current();
    let Some(kind) = kind else { return };
    if span.is_disabled() {
        return;
    }
    span.record("graphql.operation.type", kind.as_str());
    let label = name.map(|n| name_label(Some(n)));
    if let Some(label) = label {
        span.record("graphql.operation.name", label);
    }
    let cx = span.context();
    let otel = cx.span();
    if otel.span_context().is_valid() {
        otel.update_name(match label {
            Some(label) => format!("{} {label}", kind.as_str()),
            None => kind.as_str().to_owned(),
        });
    }
}

#[async_trait::async_trait]
impl Extension for MeasureExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        if ctx.data_opt::<InBatch>().is_none() {
            return next.run(ctx).await;
        }
        next.run(ctx)
            .instrument(crate::telemetry::operation_span("GraphQL Operation"))
            .await
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        lock(&self.operation).clone_from(&request.operation_name);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next.run(ctx, query, variables).await;
        match &parsed {
            Ok(doc) => {
                let asked = lock(&self.operation).clone();
                let kind = kind_of(doc, asked.as_deref());
                *lock(&self.kind) = kind;
                // Counted under the document's name when the request named none.
                let name = asked.or_else(|| {
                    doc.operations
                        .iter()
                        .next()
                        .and_then(|(n, _)| n.map(|n| n.to_string()))
                });
                name_span(kind, name.as_deref());
                // A subscription never goes through `execute`.
                if kind == Some(OperationType::Subscription) {
                    self.metrics
                        .operation(OperationType::Subscription, name.as_deref(), None);
                }
                *lock(&self.operation) = name;
            }
            Err(err) => self.metrics.error(code_of(err).as_deref()),
        }
        parsed
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let kind = lock(&self.kind).unwrap_or(OperationType::Query);
        let name = lock(&self.operation).clone();
        self.metrics
            .operation(kind, name.as_deref(), Some(started.elapsed()));
        for err in &response.errors {
            self.metrics.error(code_of(err).as_deref());
        }
        if !response.errors.is_empty() {
            tracing::Span::current().record("otel.status_code", "error");
        }
        response
    }
}
