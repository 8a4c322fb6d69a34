//! The request pipeline: everything the server does around a GraphQL
//! operation, over HTTP and WebSocket alike.
//!
//! [`Pipeline::prepare`], before anything runs:
//! 1. the name the request asked for ([`measure`]);
//! 2. trusted documents ([`trusted`]): a manifest id becomes its document,
//!    or the request is refused;
//! 3. Automatic Persisted Queries ([`apq`]): a hash becomes its document;
//! 4. parsing, through a cache of the documents parsed lately (apps send
//!    the same few dozen documents all day);
//! 5. the shape limits ([`shape`]), then the operation's type and name on
//!    the span and in the counts, and for a query whether it asks for the
//!    home screen's history page ([`home`]), which the session check then
//!    reads along.
//!
//! [`Pipeline::execute`], for a query or mutation: async-graphql validates
//! and runs it under the time limit ([`time_limit`]); it is timed, its
//! errors are counted, and a document registered with its hash is kept once
//! it passed validation. A subscription runs as a stream instead
//! ([`Pipeline::stream`]).
//!
//! Plain code around async-graphql and not one of its extensions:
//! async-graphql runs every field of every response through each
//! extension's `resolve` hook (a boxed future and two registry lookups per
//! field), so an extension costs on every field even when, like all of
//! these steps, it only works at the request's edges.
//!
//! [`measure`]: crate::graphql::measure
//! [`trusted`]: crate::graphql::trusted
//! [`apq`]: crate::graphql::apq
//! [`shape`]: crate::graphql::shape
//! [`time_limit`]: crate::graphql::time_limit

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::extensions::apollo_persisted_queries::{CacheStorage, LruCacheStorage};
use async_graphql::{Request, Response, ServerError};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::graphql::AppSchema;
use crate::graphql::apq::{Pending, PersistedQueries};
use crate::graphql::home;
use crate::graphql::measure::{self, Measured};
use crate::graphql::shape::{self, Origin};
use crate::graphql::time_limit;
use crate::graphql::trusted::TrustedDocuments;
use crate::limits::ClientAddr;
use crate::observe::{OperationType, RequestMetrics};
use crate::state::AppState;

/// Parsed documents kept for reuse.
const PARSED_DOCUMENTS: usize = 500;
/// Longest document text kept parsed.
const MAX_PARSED_BYTES: usize = 16 * 1024;

/// The steps every operation goes through; one per server, shared.
pub struct Pipeline {
    /// Where operations are counted.
    metrics: Arc<RequestMetrics>,
    /// The apps' manifests and how they are enforced.
    trusted: TrustedDocuments,
    /// The persisted-query store.
    persisted: PersistedQueries,
    /// Documents parsed lately, by their text.
    parsed: LruCacheStorage,
    /// How long a query or mutation may run.
    time_limit: Duration,
}

/// An operation that passed [`Pipeline::prepare`]: its document parsed and
/// within the limits, ready for async-graphql.
pub struct Prepared {
    request: Request,
    measured: Measured,
    /// A document sent with its hash, kept once it passed validation.
    pending: Option<Pending>,
    /// The page size of the history's first page a query asks for, which
    /// the session check can read along ([`home`]).
    home: Option<u64>,
    /// Time the request already took on its behalf before it runs (a
    /// session check that read its history page): it counts towards the
    /// time limit.
    spent: Duration,
}

impl Prepared {
    /// The type of the operation it runs.
    pub fn kind(&self) -> OperationType {
        self.measured.kind()
    }

    /// The page size of the history's first page it asks for (a query's).
    pub fn home(&self) -> Option<u64> {
        self.home
    }

    /// Counts `spent` towards its time limit.
    pub fn spent(mut self, spent: Duration) -> Self {
        self.spent = spent;
        self
    }

    /// Attaches request data for the resolvers.
    pub fn data<D: std::any::Any + Send + Sync>(mut self, data: D) -> Self {
        self.request = self.request.data(data);
        self
    }
}

impl Pipeline {
    /// The server's time limit of queries and mutations.
    pub fn time_limit(&self) -> Duration {
        self.time_limit
    }

    /// The pipeline of the server's settings.
    pub fn new(state: &AppState) -> Self {
        Self {
            metrics: state.metrics.clone(),
            trusted: TrustedDocuments::new(state.settings.trusted_documents, state.trusted.clone()),
            persisted: PersistedQueries::new(crate::graphql::apq::Store::from_state(state)),
            parsed: LruCacheStorage::new(PARSED_DOCUMENTS),
            time_limit: Duration::from_secs(state.settings.request_timeout_secs),
        }
    }

    /// Resolves the request's document and checks it; `Err` is the response
    /// of a request refused before it ran (counted).
    pub async fn prepare(&self, request: Request, origin: Origin) -> Result<Prepared, Response> {
        self.resolve(request, origin)
            .await
            .map_err(|err| self.refuse(err))
    }

    /// Steps 1 to 5: the name asked for, the document in place, parsed and
    /// within the limits, counted.
    async fn resolve(&self, request: Request, origin: Origin) -> Result<Prepared, ServerError> {
        let asked = request.operation_name.clone();
        let request = self.trusted.prepare(request)?;
        let (mut request, pending) = self.persisted.prepare(request).await?;
        // A persisted query arrives parsed, with its text taken out; a
        // document sent to be registered is parsed there.
        let cacheable = pending.is_none()
            && !request.query.is_empty()
            && request.query.len() <= MAX_PARSED_BYTES;
        // The text to keep the document under, when it is parsed here.
        let mut missed = None;
        if cacheable {
            match self.parsed.get(request.query.clone()).await {
                Some(doc) => request.set_parsed_query(doc),
                None => missed = Some(request.query.clone()),
            }
        }
        // Out of the request while its document is borrowed.
        let variables = std::mem::take(&mut request.variables);
        let doc = request.parsed_query()?;
        shape::check_request(doc, origin)?;
        if let Some(text) = missed {
            self.parsed.set(text, doc.clone()).await;
        }
        let home = home::history_limit(doc, asked.as_deref(), &variables);
        let measured = Measured::parsed(&self.metrics, asked, doc);
        request.variables = variables;
        Ok(Prepared {
            request,
            measured,
            pending,
            home,
            spent: Duration::ZERO,
        })
    }

    fn refuse(&self, err: ServerError) -> Response {
        measure::refused(&self.metrics, &err);
        Response::from_errors(vec![err])
    }

    /// Runs a prepared query or mutation under the time limit (validation
    /// included); counts it, and keeps a document registered with its hash
    /// once it passed validation.
    pub async fn execute(
        &self,
        schema: &AppSchema,
        state: &AppState,
        addr: Option<ClientAddr>,
        prepared: Prepared,
    ) -> Response {
        let Prepared {
            request,
            measured,
            pending,
            spent,
            ..
        } = prepared;
        let started = Instant::now();
        let name = request.operation_name.clone();
        let response = time_limit::within(
            self.time_limit,
            spent,
            name.as_deref(),
            schema.execute(request),
        )
        .await;
        measured.executed(&self.metrics, started, &response);
        if let Some(pending) = pending.filter(|_| !refused_before_execution(&response)) {
            self.persisted.keep(state, addr, pending).await;
        }
        response
    }

    /// The responses of a prepared operation as a stream: a subscription's
    /// events, or the one response of a query or mutation (sent over a
    /// WebSocket).
    pub fn stream(
        self: &Arc<Self>,
        schema: &AppSchema,
        state: &AppState,
        addr: Option<ClientAddr>,
        prepared: Prepared,
    ) -> BoxStream<'static, Response> {
        if prepared.kind() == OperationType::Subscription {
            let pending = prepared.pending;
            let stream = schema.execute_stream(prepared.request);
            let Some(pending) = pending else {
                return stream;
            };
            // Kept once the first response shows the document validated.
            let (pipeline, state) = (self.clone(), state.clone());
            let mut pending = Some(pending);
            return stream
                .then(move |response| {
                    let (pipeline, state, pending) =
                        (pipeline.clone(), state.clone(), pending.take());
                    async move {
                        if let Some(pending) =
                            pending.filter(|_| !refused_before_execution(&response))
                        {
                            pipeline.persisted.keep(&state, addr, pending).await;
                        }
                        response
                    }
                })
                .boxed();
        }
        let (pipeline, schema, state) = (self.clone(), schema.clone(), state.clone());
        futures_util::stream::once(async move {
            pipeline.execute(&schema, &state, addr, prepared).await
        })
        .boxed()
    }
}

/// Whether a response refused its request before executing it (it did not
/// parse, validate or start): no data, and no error at a field's path.
pub fn refused_before_execution(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}
