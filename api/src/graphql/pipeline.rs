//! The request pipeline: everything the server does around a GraphQL
//! operation, as one async-graphql extension.
//!
//! For each operation, in order:
//! 1. its server span, when it is one of a batch ([`InBatch`]; a request of
//!    its own has the HTTP layer's);
//! 2. the name it asked for ([`measure`]);
//! 3. trusted documents ([`trusted`]): a manifest id becomes its document,
//!    or the request is refused;
//! 4. Automatic Persisted Queries ([`apq`]): a hash becomes its document;
//! 5. after parsing: the shape limits ([`shape`]), then the operation's type
//!    and name on the span and in the counts;
//! 6. after validation: a document registered with its hash is kept;
//! 7. execution under the time limit ([`time_limit`]), timed and its errors
//!    counted.
//!
//! One extension and not one per concern: async-graphql runs every field of
//! every response through each extension's `resolve` hook (a boxed future
//! per extension and field), so each extension costs on every field even
//! when, like all of these, it only works at the request's edges.
//!
//! [`InBatch`]: crate::graphql::shape::InBatch
//! [`measure`]: crate::graphql::measure
//! [`trusted`]: crate::graphql::trusted
//! [`apq`]: crate::graphql::apq
//! [`shape`]: crate::graphql::shape
//! [`time_limit`]: crate::graphql::time_limit

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};
use tracing::Instrument;

use crate::graphql::apq::{Pending, PersistedQueries};
use crate::graphql::measure::Measured;
use crate::graphql::shape::{self, InBatch};
use crate::graphql::time_limit;
use crate::graphql::trusted::TrustedDocuments;
use crate::observe::RequestMetrics;

/// The pipeline's steps, shared by every request.
pub struct Steps {
    /// Where operations are counted.
    pub metrics: Arc<RequestMetrics>,
    /// The apps' manifests and how they are enforced.
    pub trusted: TrustedDocuments,
    /// The persisted-query store.
    pub persisted: PersistedQueries,
    /// How long a query or mutation may run.
    pub time_limit: Duration,
}

/// The extension factory: each request gets an [`Operation`] sharing the
/// steps (one reference count, not a copy of each).
pub struct Pipeline(Arc<Steps>);

impl Pipeline {
    /// The pipeline of `steps`.
    pub fn new(steps: Steps) -> Self {
        Self(Arc::new(steps))
    }
}

impl ExtensionFactory for Pipeline {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Operation {
            pipeline: self.0.clone(),
            measured: Mutex::default(),
            pending: Mutex::default(),
        })
    }
}

/// One operation going through the pipeline.
struct Operation {
    pipeline: Arc<Steps>,
    measured: Mutex<Measured>,
    /// A document sent with its hash, kept once it passed validation.
    pending: Mutex<Option<Pending>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait::async_trait]
impl Extension for Operation {
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
        lock(&self.measured).asked(&request);
        let request = self.pipeline.trusted.prepare(request)?;
        let (request, pending) = self.pipeline.persisted.prepare(request).await?;
        *lock(&self.pending) = pending;
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next
            .run(ctx, query, variables)
            .await
            .and_then(|doc| shape::check_request(ctx, &doc).map(|()| doc));
        lock(&self.measured).parsed(&self.pipeline.metrics, &parsed);
        parsed
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        let pending = lock(&self.pending).take();
        if let Some(pending) = pending.filter(|_| result.is_ok()) {
            self.pipeline.persisted.keep(ctx, pending).await;
        }
        result
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = time_limit::within(
            self.pipeline.time_limit,
            operation_name,
            next.run(ctx, operation_name),
        )
        .await;
        lock(&self.measured).executed(&self.pipeline.metrics, started, &response);
        response
    }
}
