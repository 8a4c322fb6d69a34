//! In-app notifications: written in the transaction of what they announce,
//! with a `notification.created` outbox event.

use domain::EventBody;
use domain::events::NotificationCreated;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::entities::notifications;
use crate::store::history::{Position, before, split_page};
use crate::store::{StoreResult, events, now};

pub use domain::NotificationRecord;

impl From<notifications::Model> for NotificationRecord {
    fn from(m: notifications::Model) -> Self {
        Self {
            id: m.id,
            sequence: m.sequence,
            kind: m.kind,
            title: m.title,
            body: m.body,
            data: m.data,
            read_at: m.read_at,
            created_at: m.created_at,
            source_event_id: m.source_event_id,
        }
    }
}

/// A notification to create.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    /// Recipient.
    pub user_id: Uuid,
    /// What it is about.
    pub kind: &'a str,
    /// Title.
    pub title: String,
    /// Text (no secrets; may name amounts and counterparties' display names).
    pub body: String,
    /// Ids to link to.
    pub data: serde_json::Value,
    /// The event it announces.
    pub source_event_id: Option<Uuid>,
}

/// Stores a notification and its `notification.created` event.
pub async fn create(
    db: &impl ConnectionTrait,
    new: NewNotification<'_>,
) -> StoreResult<NotificationRecord> {
    let sequence = events::next_sequence(db, new.user_id).await?;
    let row = notifications::Model {
        id: Uuid::now_v7(),
        user_id: new.user_id,
        sequence,
        kind: new.kind.to_owned(),
        title: new.title,
        body: new.body,
        data: new.data,
        read_at: None,
        created_at: now(),
        source_event_id: new.source_event_id,
    };
    notifications::Entity::insert(notifications::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    let record = NotificationRecord::from(row);
    let body = NotificationCreated {
        notification: record.clone(),
    };
    events::append_with_sequence(
        db,
        new.user_id,
        sequence,
        EventBody::NotificationCreated(body),
    )
    .await?;
    Ok(record)
}

/// A page of the user's notifications, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    unread_only: bool,
    after: Option<Position>,
    limit: u64,
) -> StoreResult<(Vec<NotificationRecord>, bool)> {
    let mut select =
        notifications::Entity::find().filter(notifications::Column::UserId.eq(user_id));
    if unread_only {
        select = select.filter(notifications::Column::ReadAt.is_null());
    }
    if let Some(after) = after {
        select = select.filter(before(
            notifications::Column::CreatedAt,
            notifications::Column::Id,
            after,
        ));
    }
    let rows = select
        .order_by_desc(notifications::Column::CreatedAt)
        .order_by_desc(notifications::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let (rows, has_next) = split_page(rows, limit);
    Ok((
        rows.into_iter().map(NotificationRecord::from).collect(),
        has_next,
    ))
}

/// Marks the user's notifications with these ids read; returns how many
/// changed (others' ids are ignored).
pub async fn mark_read(db: &impl ConnectionTrait, user_id: Uuid, ids: &[Uuid]) -> StoreResult<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let res = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(Some(now())))
        .filter(notifications::Column::UserId.eq(user_id))
        .filter(notifications::Column::Id.is_in(ids.to_vec()))
        .filter(notifications::Column::ReadAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}
