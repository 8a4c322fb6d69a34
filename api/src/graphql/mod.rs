//! The GraphQL schema: roots merged from one module per area. Free of axum.

pub mod account;
pub mod admin;
pub mod live;
pub mod scalars;
pub mod types;
pub mod wallets;

use async_graphql::{Context, MergedObject, SDLExportOptions, Schema, SchemaBuilder};
use uuid::Uuid;

use crate::auth::Viewer;
use crate::state::AppState;

/// Every query field.
#[derive(MergedObject, Default)]
pub struct Query(account::AccountQuery, wallets::WalletQuery);

/// Every mutation field.
#[derive(MergedObject, Default)]
pub struct Mutation(
    account::AccountMutation,
    wallets::WalletMutation,
    admin::AdminMutation,
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
    let mut b = builder().data(state.clone());
    if !state.settings.introspection_enabled {
        b = b.disable_introspection().disable_suggestions();
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
