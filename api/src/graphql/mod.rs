//! The GraphQL schema: roots merged from one module per area. Free of axum.

pub mod account;
pub mod admin;
pub mod apq;
pub mod live;
pub mod notifications;
pub mod scalars;
pub mod security;
pub mod shape;
pub mod time_limit;
pub mod types;
pub mod wallets;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, MergedObject, SDLExportOptions, Schema, SchemaBuilder};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use domain::DomainError;
use entity::store::history::Position;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::state::AppState;

/// Every query field.
#[derive(MergedObject, Default)]
pub struct Query(
    account::AccountQuery,
    wallets::WalletQuery,
    notifications::NotificationQuery,
    security::SecurityQuery,
    admin::AdminQuery,
);

/// Every mutation field.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    wallets::WalletMutation,
    notifications::NotificationMutation,
    admin::AdminMutation,
    security::SecurityMutation,
);

/// The schema type.
pub type AppSchema = Schema<Query, Mutation, live::LiveSubscription>;

fn builder() -> SchemaBuilder<Query, Mutation, live::LiveSubscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        live::LiveSubscription,
    )
    // GraphiQL's introspection query nests `ofType` about 13 levels deep.
    .limit_depth(20)
    .limit_complexity(5_000)
    .limit_recursive_depth(32)
}

/// The schema with its state.
pub fn build_schema(state: AppState) -> AppSchema {
    // Automatic Persisted Queries (Apollo's protocol): in Redis when there
    // is one, so a query registered through one instance is known to all.
    let deliveries = async_graphql::dataloader::DataLoader::new(
        notifications::DeliveryLoader(state.db.clone()),
        tokio::spawn,
    );
    let mut b = builder()
        .data(state.clone())
        .data(deliveries)
        .extension(apq::PersistedQueries::new(apq::Store::from_state(&state)))
        .extension(time_limit::TimeLimit(std::time::Duration::from_secs(
            state.settings.request_timeout_secs,
        )));
    b = b.extension(shape::QueryShape);
    if !state.settings.introspection_enabled {
        b = b.disable_introspection();
    }
    if !state.settings.suggestions_enabled {
        b = b.disable_suggestions();
    }
    b.finish()
}

/// The SDL that `schema.graphql` must equal: sorted, so diffs stay small.
pub fn sdl() -> String {
    builder().finish().sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items(),
    )
}

/// The state and the viewer of a request.
pub(crate) fn parts<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a AppState, &'a Viewer)> {
    Ok((ctx.data::<AppState>()?, ctx.data::<Viewer>()?))
}

/// Parses an `ID` argument that must be a UUID.
pub(crate) fn parse_id(id: &async_graphql::ID, what: &str) -> Result<Uuid, domain::DomainError> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| domain::DomainError::bad_input(format!("{what} is not a valid ID")))
}

/// Largest page of a connection.
pub const MAX_PAGE: i32 = 100;
/// Page size when `first` is not given.
pub const DEFAULT_PAGE: i32 = 20;

/// Complexity of a connection field: its selection counts once per node
/// the page may hold, so `first: 100` of a deep selection costs what it
/// makes the server load.
pub(crate) fn page_complexity(first: Option<i32>, child_complexity: usize) -> usize {
    let nodes = usize::try_from(first.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)).unwrap_or(1);
    nodes.saturating_mul(child_complexity).saturating_add(1)
}

/// The page size asked for with `first`, checked.
pub(crate) fn page_size(first: Option<i32>) -> Result<u64, DomainError> {
    let limit = first.unwrap_or(DEFAULT_PAGE);
    u64::try_from(limit)
        .ok()
        .filter(|_| limit <= MAX_PAGE)
        .ok_or_else(|| DomainError::bad_input(format!("first must be between 0 and {MAX_PAGE}")))
}

/// What a Relay connection asks for: its page size (`first`) and where it
/// starts (`after`), checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageRequest {
    /// Items per page.
    pub limit: u64,
    /// The position after which the page starts.
    pub after: Option<Position>,
}

impl PageRequest {
    /// Parses `first` and `after`.
    pub(crate) fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self, DomainError> {
        Ok(Self {
            limit: page_size(first)?,
            after: after.map(decode_cursor).transpose()?,
        })
    }

    /// The connection of a page of items keyed by (creation time, id).
    pub(crate) fn connection<R, N: async_graphql::OutputType>(
        &self,
        items: Vec<R>,
        has_next: bool,
        key: impl Fn(&R) -> (DateTime<Utc>, Uuid),
        mut node: impl FnMut(R) -> N,
    ) -> Connection<String, N, EmptyFields, EmptyFields> {
        let mut connection = Connection::new(self.after.is_some(), has_next);
        connection.edges.extend(items.into_iter().map(|item| {
            let (at, id) = key(&item);
            Edge::new(encode_cursor(at, id), node(item))
        }));
        connection
    }
}

/// Opaque keyset cursor of a (creation time, id) position.
pub(crate) fn encode_cursor(created_at: DateTime<Utc>, id: uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{}|{}", created_at.timestamp_micros(), id))
}

/// Parses a cursor made by [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Result<Position, DomainError> {
    let bad = || DomainError::bad_input("after is not a cursor from this connection");
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.split('|');
    let (Some("v1"), Some(micros), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    Ok(Position {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        id: uuid::Uuid::parse_str(id).map_err(|_| bad())?,
    })
}
