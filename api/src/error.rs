//! The one error policy for GraphQL: refusals carry their contract code and
//! message; everything else is logged once, here, and masked.

use std::sync::Arc;

use async_graphql::{ErrorExtensions, ServerError};
use domain::{DomainError, ErrorCode};
use entity::StoreError;

/// An error leaving a resolver, which resolvers return as it is
/// ([`Result`]): `?` turns a domain refusal, a store error or an internal
/// failure into one. It deliberately does not implement `Display`, so
/// async-graphql's blanket `From<Display>` cannot turn it into a message that
/// leaks internals: the only way out is [`From<ApiError>`], which logs an
/// internal error once and masks it. `Clone` (hence the `Arc`) because
/// async-graphql asks it of a resolver's error type.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// A refusal the caller can act on.
    Refused(DomainError),
    /// Anything unexpected; logged when converted.
    Internal(Arc<anyhow::Error>),
    /// A rate limit was hit.
    RateLimited {
        /// Seconds until the limit resets.
        retry_after_secs: u64,
    },
    /// An error async-graphql itself made or one already coded
    /// ([`coded`]), passed on unchanged.
    Graphql(async_graphql::Error),
}

impl ApiError {
    /// An unexpected failure: logged once when it leaves the resolver,
    /// masked for the client.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(Arc::new(err.into()))
    }
}

/// What resolvers and their helpers return: `Result<T>` fails with an
/// [`ApiError`]; another error type can still be named.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        if e.code == ErrorCode::InternalServerError {
            ApiError::internal(anyhow::anyhow!(e.message))
        } else {
            ApiError::Refused(e)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        ApiError::internal(e)
    }
}

impl From<async_graphql::Error> for ApiError {
    fn from(e: async_graphql::Error) -> Self {
        ApiError::Graphql(e)
    }
}

/// The message clients see for internal errors.
pub const INTERNAL_MESSAGE: &str = "Internal server error";

/// A GraphQL error with a contract code.
pub fn coded(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code.as_str()))
}

/// A request-level error (refused before or around execution, by the
/// request pipeline) with a contract code.
pub fn coded_server_error(code: ErrorCode, message: impl Into<String>) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", code.as_str());
    err.extensions = Some(ext);
    err
}

/// `RATE_LIMITED`, with `extensions.retryAfter` in seconds.
pub fn rate_limited(retry_after_secs: u64) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "too many requests: try again in {retry_after_secs} s"
    ))
    .extend_with(|_, ext| {
        ext.set("code", ErrorCode::RateLimited.as_str());
        ext.set("retryAfter", retry_after_secs);
    })
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Refused(d) => {
                let details = d.details;
                coded(d.code, d.message).extend_with(move |_, ext| {
                    for (key, value) in &details {
                        ext.set(*key, value.as_str());
                    }
                })
            }
            ApiError::RateLimited { retry_after_secs } => rate_limited(retry_after_secs),
            ApiError::Graphql(e) => e,
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, "internal error while resolving");
                coded(ErrorCode::InternalServerError, INTERNAL_MESSAGE)
            }
        }
    }
}

/// Safety net applied to every response: an error without a contract code
/// is either a request error (parse, validation, bad argument: the message is
/// about the query and safe, code `BAD_USER_INPUT`) or something that escaped
/// the policy above (logged, then masked as `INTERNAL_SERVER_ERROR`).
pub fn enforce_codes(errors: &mut [ServerError]) {
    for err in errors.iter_mut() {
        let has_code = err
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        let too_complex = err.path.is_empty()
            && (err.message.starts_with("Query is nested too deep")
                || err.message.starts_with("Query is too complex")
                || err.message.starts_with("The recursion depth of the query"));
        // async-graphql's own complaints about the request: they carry the
        // field's path but are about the values sent (a scalar's parser
        // refusing a value validation let through, such as `true` for a
        // `Decimal`, says "Expected input type").
        let is_request_error = err.path.is_empty()
            || err.message.starts_with("Failed to parse")
            || err.message.starts_with("Expected input type ")
            || err.message.starts_with("Invalid value for argument")
            || (err.message.starts_with("Variable ") && err.message.ends_with(" is not defined."));
        let code = if err.message == "PersistedQueryNotFound" {
            ErrorCode::PersistedQueryNotFound
        } else if too_complex {
            ErrorCode::QueryTooComplex
        } else if is_request_error {
            ErrorCode::BadUserInput
        } else {
            tracing::error!(error = %err.message, path = ?err.path, "uncoded error escaped a resolver");
            err.message = INTERNAL_MESSAGE.to_owned();
            ErrorCode::InternalServerError
        };
        err.extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
}
