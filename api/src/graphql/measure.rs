//! Counts every GraphQL operation, over HTTP and WebSocket alike, into the
//! instance's [`RequestMetrics`]: its type and name when parsed, its
//! duration and errors when executed (subscriptions are counted when they
//! start; they run as long as their client wants).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType as Kind};
use async_graphql::{Request, Response, ServerError, ServerResult, Variables};

use crate::observe::{OperationType, RequestMetrics};

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

#[async_trait::async_trait]
impl Extension for MeasureExtension {
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
        response
    }
}
