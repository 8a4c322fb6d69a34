//! HTTP routes: GraphQL over HTTP (GraphQL-over-HTTP spec), GraphiQL, health.

pub mod graphiql;
pub mod metrics;
pub mod session_watch;
pub mod webhooks;
pub mod ws;

use async_graphql::http::parse_query_string;
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use axum::body::Bytes;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::ErrorCode;
use serde_json::json;
use tracing::Instrument;

use crate::auth::{AuthUser, Authenticated, ReadAlong, SignedInAccount, Viewer};
use crate::error::enforce_codes;
use crate::graphql::AppSchema;
use crate::graphql::home::ViewerHistory;
use crate::graphql::pipeline::refused_before_execution;
use crate::graphql::shape::Origin;
use crate::graphql::types::ViewerWallets;
use crate::limits::ClientAddr;
use crate::state::AppState;

/// Path of the GraphQL endpoint.
pub const GRAPHQL_PATH: &str = "/graphql";
/// Path of the GraphQL WebSocket endpoint.
pub const GRAPHQL_WS_PATH: &str = "/graphql/ws";

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// Most operations one batched request may carry.
pub const MAX_BATCH: usize = 10;

/// State of the HTTP layer.
#[derive(Clone)]
pub struct HttpState {
    /// The executable schema.
    pub schema: AppSchema,
    /// What runs around each operation.
    pub pipeline: std::sync::Arc<crate::graphql::pipeline::Pipeline>,
    /// Shared application state.
    pub app: AppState,
}

/// The routes of the HTTP API.
pub fn routes(state: HttpState) -> Router {
    Router::new()
        .route(GRAPHQL_PATH, get(graphql_get).post(graphql_post))
        .route(GRAPHQL_WS_PATH, get(ws::graphql_ws))
        .route(
            "/webhooks/kyc",
            axum::routing::post(webhooks::kyc::kyc).layer(axum::extract::DefaultBodyLimit::max(
                state.app.settings.kyc.webhook_max_bytes,
            )),
        )
        .route(
            "/webhooks/payments",
            axum::routing::post(webhooks::payments::payments).layer(
                axum::extract::DefaultBodyLimit::max(state.app.settings.kyc.webhook_max_bytes),
            ),
        )
        .route("/metrics", get(metrics::guarded))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(graphiql::routes())
}

/// The routes of the `METRICS_BIND_ADDR` listener: `/metrics` alone, open
/// to whoever reaches that address.
pub fn metrics_routes(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::open))
        .with_state(app)
}

/// A request's viewer and what was read with its session.
struct SessionRead {
    viewer: Viewer,
    account: Option<SignedInAccount>,
    wallets: Option<Vec<entity::store::records::WalletRecord>>,
    history: Option<(u64, entity::store::history::HistoryPage)>,
}

/// What a request's `Authorization` header carries.
enum Credentials {
    /// No header.
    None,
    /// A header without a valid access token (malformed, forged, expired).
    Invalid,
    /// A valid access token's claims; its session is checked later.
    Token(AuthUser),
}

impl Credentials {
    /// Reads and verifies the bearer token (its signature and expiry, no
    /// database).
    fn of(headers: &HeaderMap, app: &AppState) -> Self {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Credentials::None;
        };
        value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .and_then(|token| app.keys.verify_access(token.trim()))
            .map_or(Credentials::Invalid, Credentials::Token)
    }

    /// The claims, for the rate limits.
    fn claims(&self) -> Option<&AuthUser> {
        match self {
            Credentials::Token(user) => Some(user),
            _ => None,
        }
    }

    /// The viewer, once its session is checked, with what was read with it
    /// (the account, and what `along` asks for); `Err` with the response
    /// when the session could not be checked.
    async fn viewer(self, app: &AppState, along: ReadAlong) -> Result<SessionRead, Response> {
        let nobody = |viewer| SessionRead {
            viewer,
            account: None,
            wallets: None,
            history: None,
        };
        match self {
            Credentials::None => Ok(nobody(Viewer::Anonymous)),
            Credentials::Invalid => Ok(nobody(Viewer::InvalidToken)),
            Credentials::Token(user) => match crate::auth::check_session(app, user, along).await {
                Ok(Some(Authenticated {
                    user,
                    account,
                    wallets,
                    history,
                })) => Ok(SessionRead {
                    viewer: Viewer::User(user),
                    account: Some(account),
                    wallets,
                    history: along.history().zip(history),
                }),
                Ok(None) => Ok(nobody(Viewer::InvalidToken)),
                Err(()) => Err(unavailable()),
            },
        }
    }
}

/// Whether the client accepts `application/graphql-response+json`.
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(GRAPHQL_RESPONSE_JSON))
}

fn request_error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "errors": [{ "message": message, "extensions": { "code": ErrorCode::BadUserInput.as_str() } }]
    });
    (status, Json(body)).into_response()
}

/// The client's address: the peer, or with `TRUST_FORWARDED_FOR` the
/// address the proxy in front appended last to `X-Forwarded-For`.
pub(crate) fn client_addr(headers: &HeaderMap, peer: SocketAddr, app: &AppState) -> IpAddr {
    if app.settings.trust_forwarded_for
        // The last address of the last header line: the one our proxy
        // added (some proxies add a line rather than append to the first).
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    {
        return forwarded;
    }
    peer.ip()
}

/// Adds `Retry-After: secs` to a refusal.
fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, value);
    }
    resp
}

/// The server cannot answer now (its database did not): HTTP 503 with
/// `Retry-After` and a coded GraphQL error.
fn unavailable() -> Response {
    let body = json!({
        "errors": [{
            "message": "the server cannot check the session right now; try again shortly",
            "extensions": { "code": ErrorCode::InternalServerError.as_str() }
        }]
    });
    with_retry_after(
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response(),
        1,
    )
}

/// `RATE_LIMITED` as an HTTP 429 with `Retry-After`.
pub(crate) fn too_many_requests(retry_after_secs: u64) -> Response {
    let body = json!({
        "errors": [{
            "message": format!("too many requests: try again in {retry_after_secs} s"),
            "extensions": { "code": ErrorCode::RateLimited.as_str(), "retryAfter": retry_after_secs }
        }]
    });
    with_retry_after(
        (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response(),
        retry_after_secs,
    )
}

/// Runs a request in its server span, continuing the caller's `traceparent`.
/// A batch gets one more span per operation (see `graphql::measure`).
async fn execute(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    batch: BatchRequest,
    via_get: bool,
) -> Response {
    let span = crate::telemetry::operation_span(
        if matches!(&batch, BatchRequest::Batch(items) if items.len() > 1) {
            "GraphQL batch"
        } else {
            "GraphQL Operation"
        },
    );
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    entity::trace::continue_from(&span, traceparent);
    run(state, headers, peer, batch, via_get)
        .instrument(span)
        .await
}

async fn run(
    state: &HttpState,
    headers: &HeaderMap,
    peer: SocketAddr,
    batch: BatchRequest,
    via_get: bool,
) -> Response {
    let (requests, batched) = match batch {
        BatchRequest::Single(request) => (vec![request], false),
        BatchRequest::Batch(items) => (items, true),
    };
    // The rate limits first, by the token's claims (or the address): a
    // client over its budget costs neither a parse nor a session read.
    let credentials = Credentials::of(headers, &state.app);
    let addr = client_addr(headers, peer, &state.app);
    // Every operation of a batch counts.
    if let Err(limited) = state
        .app
        .limiter
        .requests(
            &state.app.settings,
            credentials.claims(),
            addr,
            requests.len().max(1) as u64,
        )
        .await
    {
        return too_many_requests(limited.retry_after_secs);
    }
    let origin = Origin {
        in_batch: requests.len() > 1,
        via_get,
    };
    // Parsed and checked before the session: what the operations are
    // decides what the session check reads along.
    let prepared = futures_util::future::join_all(
        requests
            .into_iter()
            .map(|request| state.pipeline.prepare(request, origin)),
    )
    .await;
    let queries = prepared
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .filter(|p| p.kind() == crate::observe::OperationType::Query);
    let along = queries.fold(ReadAlong::Account, |_, query| match query.home() {
        // Not in a batch: its other operations would wait for the page.
        Some(limit) if !origin.in_batch => ReadAlong::Home(limit),
        _ => ReadAlong::Wallets,
    });
    // A session check that reads the history page runs under the
    // operation's time limit, as the page's own read would, and what it
    // took counts towards it.
    let checking = Instant::now();
    let read = match along {
        ReadAlong::Home(_) => tokio::time::timeout(
            state.pipeline.time_limit(),
            credentials.viewer(&state.app, along),
        )
        .await
        .ok(),
        _ => Some(credentials.viewer(&state.app, along).await),
    };
    let spent = checking.elapsed();
    let SessionRead {
        viewer,
        account,
        wallets,
        history,
    } = match read {
        Some(Ok(read)) => read,
        Some(Err(resp)) => return resp,
        None => {
            tracing::warn!(
                limit.secs = state.pipeline.time_limit().as_secs(),
                "GraphQL operation cancelled at the time limit while its session was checked"
            );
            let error = crate::graphql::time_limit::timed_out(state.pipeline.time_limit());
            return respond(
                headers,
                BatchResponse::Single(async_graphql::Response::from_errors(vec![error])),
            );
        }
    };
    let device = crate::limits::ClientDevice::of(headers, addr);
    let operations = prepared.into_iter().map(|prepared| {
        let operation = async {
            let mut prepared = match prepared {
                Ok(prepared) => prepared,
                Err(refused) => return refused,
            };
            // The viewer's wallets as read with the session, for a query.
            let viewer_wallets = match &wallets {
                Some(list) if prepared.kind() == crate::observe::OperationType::Query => {
                    ViewerWallets::read(list.clone())
                }
                _ => ViewerWallets::default(),
            };
            if let (Some((limit, page)), Viewer::User(user)) = (&history, &viewer)
                && prepared.kind() == crate::observe::OperationType::Query
            {
                prepared = prepared
                    .data(ViewerHistory::new(user.id, *limit, page.clone()))
                    .spent(spent);
            }
            prepared = prepared
                .data(viewer.clone())
                .data(viewer_wallets)
                .data(ClientAddr(addr))
                .data(device.clone());
            if let Some(account) = &account {
                prepared = prepared.data(account.clone());
            }
            state
                .pipeline
                .execute(&state.schema, &state.app, Some(ClientAddr(addr)), prepared)
                .await
        };
        // One server span per operation of a batch; a request of its own
        // has the request's.
        let span = if origin.in_batch {
            crate::telemetry::operation_span("GraphQL Operation")
        } else {
            tracing::Span::none()
        };
        operation.instrument(span)
    });
    let mut responses = futures_util::future::join_all(operations).await;
    let response = match responses.pop() {
        Some(only) if !batched => BatchResponse::Single(only),
        last => {
            responses.extend(last);
            BatchResponse::Batch(responses)
        }
    };
    respond(headers, response)
}

/// The HTTP response of executed (or refused) operations: the status and
/// content type GraphQL over HTTP asks for, given what the client accepts,
/// `Retry-After` when a lone operation timed out, and the body.
fn respond(headers: &HeaderMap, mut response: BatchResponse) -> Response {
    let single_request_error = match &mut response {
        BatchResponse::Single(r) => {
            enforce_codes(&mut r.errors);
            refused_before_execution(r)
        }
        BatchResponse::Batch(items) => {
            for r in items.iter_mut() {
                enforce_codes(&mut r.errors);
            }
            false
        }
    };
    // A lone operation cancelled at the time limit is the server's failure:
    // 503 with `Retry-After` (in a batch, each item carries its own error).
    let timed_out = matches!(&response, BatchResponse::Single(r)
        if r.errors.iter().any(crate::graphql::time_limit::is_timed_out));
    let graphql_response = wants_graphql_response(headers);
    let status = if timed_out {
        StatusCode::SERVICE_UNAVAILABLE
    } else if graphql_response && single_request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let content_type = if graphql_response {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    // A request error (it did not parse, validate or start) executed
    // nothing: no `data` entry at all, as GraphQL over HTTP wants.
    let body = if single_request_error {
        serde_json::to_value(&response).and_then(|mut v| {
            if let Some(obj) = v.as_object_mut() {
                obj.remove("data");
            }
            serde_json::to_vec(&v)
        })
    } else {
        serde_json::to_vec(&response)
    };
    match body {
        Ok(body) => {
            let resp = (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
                body,
            )
                .into_response();
            if timed_out {
                with_retry_after(resp, 1)
            } else {
                resp
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "serializing GraphQL response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn graphql_post(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /graphql needs content-type: application/json",
        );
    }
    let body = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => v,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "the body is not JSON: expected a GraphQL request with a \"query\" string",
            );
        }
    };
    if let Some(problem) = invalid_parameters(&body) {
        return request_error(StatusCode::BAD_REQUEST, problem);
    }
    let batch: BatchRequest = match serde_json::from_value(with_document_ids(body)) {
        Ok(b) => b,
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "the body is not a GraphQL request: expected JSON with a \"query\" string",
            );
        }
    };
    if let BatchRequest::Batch(items) = &batch
        && items.len() > MAX_BATCH
    {
        return request_error(
            StatusCode::BAD_REQUEST,
            &format!("a batch may carry at most {MAX_BATCH} operations"),
        );
    }
    execute(&state, &headers, peer, batch, false).await
}

/// Why a request body is not a GraphQL request (answered 400 whatever the
/// `Accept`): each request needs a `query` string, a `documentId` or a
/// persisted-query hash.
fn invalid_parameters(body: &serde_json::Value) -> Option<&'static str> {
    fn check(item: &serde_json::Value) -> Option<&'static str> {
        let Some(obj) = item.as_object() else {
            return Some("each GraphQL request must be a JSON object");
        };
        match obj.get("query") {
            Some(serde_json::Value::String(_)) => return None,
            Some(_) => return Some("query must be a string"),
            None => {}
        }
        let by_id = obj.contains_key("documentId")
            || obj
                .get("extensions")
                .and_then(|e| e.get("persistedQuery"))
                .is_some();
        (!by_id).then_some("the request has no query (nor a documentId or persisted-query hash)")
    }
    match body {
        serde_json::Value::Array(items) if items.is_empty() => Some("the batch is empty"),
        serde_json::Value::Array(items) => items.iter().find_map(check),
        item => check(item),
    }
}

/// GraphQL over HTTP's `documentId` (a trusted document's id) travels to
/// the trusted-documents extension in `extensions.documentId`.
fn with_document_ids(mut body: serde_json::Value) -> serde_json::Value {
    fn move_id(item: &mut serde_json::Value) {
        let Some(obj) = item.as_object_mut() else {
            return;
        };
        if let Some(id) = obj.remove("documentId") {
            let ext = obj
                .entry("extensions")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(ext) = ext.as_object_mut() {
                ext.insert("documentId".into(), id);
            }
            // A request by id alone has no text.
            obj.entry("query").or_insert_with(|| "".into());
        }
    }
    match &mut body {
        serde_json::Value::Array(items) => items.iter_mut().for_each(move_id),
        item => move_id(item),
    }
    body
}

/// Apollo's CSRF prevention: a GET is a "simple request" a browser sends
/// cross-site without asking, unless it carries a header only a script can
/// set. (POST is covered by requiring `content-type: application/json`.)
fn preflighted(headers: &HeaderMap) -> bool {
    headers.contains_key("apollo-require-preflight")
        || headers.contains_key("x-apollo-operation-name")
        || headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The type of the operation a request would run, when its text parses
/// (a hash-only persisted query has none yet).
pub(crate) fn operation_type(request: &async_graphql::Request) -> Option<OperationType> {
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    match &request.operation_name {
        Some(name) => doc
            .operations
            .iter()
            .find(|(n, _)| n.map(|n| n.as_str()) == Some(name.as_str()))
            .map(|(_, op)| op.node.ty),
        None => doc.operations.iter().next().map(|(_, op)| op.node.ty),
    }
}

async fn graphql_get(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if !query.contains("query=") && accepts_html(&headers) {
        if state.app.settings.graphiql_enabled {
            return graphiql::page(GRAPHQL_PATH, GRAPHQL_WS_PATH).into_response();
        }
        return (StatusCode::NOT_FOUND, "GraphiQL is disabled").into_response();
    }
    if !preflighted(&headers) {
        return request_error(
            StatusCode::BAD_REQUEST,
            "this GET request could be a cross-site request forgery: send an `apollo-require-preflight: true` \
             or `x-apollo-operation-name` header (or use POST with content-type: application/json)",
        );
    }
    // GraphQL over HTTP's `documentId` names a trusted document instead of
    // sending its text.
    let document_id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "documentId")
        .map(|(_, v)| v.into_owned());
    let mut request = match parse_query_string(&query) {
        Ok(r) => r,
        Err(_) if document_id.is_some() => {
            let without: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    url::form_urlencoded::parse(query.as_bytes())
                        .filter(|(k, _)| k != "documentId")
                        .chain(std::iter::once(("query".into(), "".into()))),
                )
                .finish();
            match parse_query_string(&without) {
                Ok(r) => r,
                Err(_) => {
                    return request_error(
                        StatusCode::BAD_REQUEST,
                        "GET /graphql: variables and extensions must be JSON-encoded",
                    );
                }
            }
        }
        Err(_) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "GET /graphql needs a query parameter (and JSON-encoded variables)",
            );
        }
    };
    if let Some(id) = document_id {
        request
            .extensions
            .insert("documentId".to_owned(), async_graphql::Value::String(id));
    }
    if operation_type(&request) == Some(OperationType::Mutation) {
        let mut resp = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are not allowed over GET; use POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&state, &headers, peer, BatchRequest::Single(request), true).await
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when the database answers. The bus and relay are reported but do
/// not fail readiness: queries and mutations keep working without Redis, and
/// held-back events are delivered when it returns.
async fn readyz(State(state): State<HttpState>) -> Response {
    let bus = match &state.app.bus {
        subscriptions::Bus::InProcess(_) => "in-process",
        subscriptions::Bus::Redis(r) if r.is_connected() => "ok",
        subscriptions::Bus::Redis(_) => "reconnecting",
    };
    let relay = match state.app.live.relay.get() {
        None => "disabled",
        Some(r) if r.healthy.load(std::sync::atomic::Ordering::Relaxed) => "ok",
        Some(_) => "retrying",
    };
    match state.app.db.ping().await {
        Ok(()) => Json(json!({ "status": "ready", "database": "ok", "bus": bus, "relay": relay }))
            .into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "database": "unreachable", "bus": bus, "relay": relay })),
            )
                .into_response()
        }
    }
}
