//! In-app notifications: list, mark read, and the `Notification` type shared
//! with the `notificationCreated` subscription.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use domain::DomainError;
use entity::store::notifications::{self, NotificationRecord};

use super::{decode_cursor, encode_cursor, page_size, parse_id, parts};
use crate::error::ApiError;

/// An in-app notification.
#[derive(SimpleObject, Debug, Clone)]
pub struct Notification {
    /// Id.
    pub id: ID,
    /// Sequence of its `notification.created` event (per user, increasing).
    pub sequence: i64,
    /// What it is about, e.g. `transfer.received`, `withdrawal.settled`, `kyc.status`.
    pub kind: String,
    /// Short title.
    pub title: String,
    /// Text shown to the user.
    pub body: String,
    /// Ids the app can link to (e.g. `transactionId`).
    pub data: Json<serde_json::Value>,
    /// Whether the user has read it.
    pub read: bool,
    /// When it was read.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRecord> for Notification {
    fn from(n: NotificationRecord) -> Self {
        Self {
            id: ID(n.id.to_string()),
            sequence: n.sequence,
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: Json(n.data),
            read: n.read_at.is_some(),
            read_at: n.read_at,
            created_at: n.created_at,
        }
    }
}

/// Notification queries.
#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// The caller's notifications, newest first (Relay connection).
    #[graphql(complexity = "super::page_complexity(first, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        unread_only: Option<bool>,
    ) -> Result<Connection<String, Notification, EmptyFields, EmptyFields>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user().map_err(ApiError::from)?;
        let limit = page_size(first).map_err(ApiError::from)?;
        let after = after
            .as_deref()
            .map(decode_cursor)
            .transpose()
            .map_err(ApiError::from)?;
        let (items, has_next) = notifications::list(
            &state.db,
            user.id,
            unread_only.unwrap_or(false),
            after,
            limit,
        )
        .await
        .map_err(ApiError::from)?;
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(
            items
                .into_iter()
                .map(|n| Edge::new(encode_cursor(n.created_at, n.id), Notification::from(n))),
        );
        Ok(connection)
    }
}

/// Notification mutations.
#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Marks the caller's notifications read; returns how many changed.
    async fn mark_notifications_read(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<i32> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user().map_err(ApiError::from)?;
        if ids.len() > 500 {
            return Err(ApiError::from(DomainError::bad_input("at most 500 ids at once")).into());
        }
        let ids = ids
            .iter()
            .map(|id| parse_id(id, "ids"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::from)?;
        let changed = notifications::mark_read(&state.db, user.id, &ids)
            .await
            .map_err(ApiError::from)?;
        Ok(i32::try_from(changed).unwrap_or(i32::MAX))
    }
}
