//! Counts every GraphQL operation, over HTTP and WebSocket alike, into the
//! instance's [`RequestMetrics`]: its type and name when parsed, its
//! duration and errors when executed (subscriptions are counted when they
//! start; they run as long as their client wants). The same names go on the
//! operation's server span (`crate::telemetry::operation_span`): the
//! request's own over HTTP, one per operation inside a batch (the HTTP
//! layer opens those).

use std::time::Instant;

use async_graphql::parser::types::{ExecutableDocument, OperationType as Kind};
use async_graphql::{Response, ServerError};

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::observe::{OperationType, RequestMetrics, name_label};

/// An operation's type and the name it is counted under, known once its
/// document is parsed.
#[derive(Debug)]
pub struct Measured {
    /// The `operationName` the request asked for, else the document's.
    operation: Option<String>,
    /// The type of the operation this request runs.
    kind: OperationType,
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

impl Measured {
    /// After parsing: the operation's type and name, on the span and, for a
    /// subscription (which is never executed as a whole), in the counts.
    pub fn parsed(
        metrics: &RequestMetrics,
        asked: Option<String>,
        doc: &ExecutableDocument,
    ) -> Self {
        let kind = kind_of(doc, asked.as_deref());
        // Counted under the document's name when the request named none.
        let operation = asked.or_else(|| {
            doc.operations
                .iter()
                .next()
                .and_then(|(n, _)| n.map(|n| n.to_string()))
        });
        name_span(kind, operation.as_deref());
        if kind == Some(OperationType::Subscription) {
            metrics.operation(OperationType::Subscription, operation.as_deref(), None);
        }
        Self {
            operation,
            kind: kind.unwrap_or(OperationType::Query),
        }
    }

    /// The operation's type (a query when the document names no such
    /// operation: async-graphql then refuses it).
    pub fn kind(&self) -> OperationType {
        self.kind
    }

    /// After execution: its duration and its errors by code.
    pub fn executed(&self, metrics: &RequestMetrics, started: Instant, response: &Response) {
        metrics.operation(
            self.kind,
            self.operation.as_deref(),
            Some(started.elapsed()),
        );
        for err in &response.errors {
            metrics.error(code_of(err).as_deref());
        }
        if !response.errors.is_empty() {
            tracing::Span::current().record("otel.status_code", "error");
        }
    }
}

/// Counts the error of a request refused before it was parsed or executed.
pub fn refused(metrics: &RequestMetrics, err: &ServerError) {
    metrics.error(code_of(err).as_deref());
}
