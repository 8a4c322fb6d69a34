//! In-app notifications: written in the transaction of what they announce,
//! with a `notification.created` outbox event.

use domain::EventBody;
use domain::events::NotificationCreated;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::entities::notifications;
use crate::store::history::{Position, before, split_page};
use crate::store::writes::{Write, Writes};
use crate::store::{StoreResult, events, inconsistent, now};

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
    /// The trace its `notification.created` event joins (the delivery's).
    pub trace_parent: Option<String>,
}

/// Stores notifications, each with its `notification.created` event (the
/// two share the user's next sequence): the users' sequences taken in one
/// statement, then the notifications and the events in one each.
pub async fn create_all(
    db: &impl ConnectionTrait,
    news: Vec<NewNotification<'_>>,
) -> StoreResult<Vec<NotificationRecord>> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    let mut counts: Vec<(Uuid, i64)> = Vec::new();
    for new in &news {
        match counts.iter_mut().find(|(u, _)| *u == new.user_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((new.user_id, 1)),
        }
    }
    let mut next = events::reserve(db, &counts).await?;
    let at = now();
    let mut rows = Vec::with_capacity(news.len());
    let mut sequenced = Vec::with_capacity(news.len());
    for new in news {
        let (_, sequence) = next
            .iter_mut()
            .find(|(u, _)| *u == new.user_id)
            .ok_or_else(|| inconsistent("a notification's user has no sequence"))?;
        let row = notifications::Model {
            id: Uuid::now_v7(),
            user_id: new.user_id,
            sequence: *sequence,
            kind: new.kind.to_owned(),
            title: new.title,
            body: new.body,
            data: new.data,
            read_at: None,
            created_at: at,
            source_event_id: new.source_event_id,
        };
        *sequence += 1;
        let record = NotificationRecord::from(row.clone());
        sequenced.push(events::Sequenced {
            user_id: row.user_id,
            sequence: row.sequence,
            body: EventBody::NotificationCreated(NotificationCreated {
                notification: record.clone(),
            }),
            trace_parent: new.trace_parent,
        });
        rows.push((row, record));
    }
    let mut writes = Writes::new(db);
    writes.push(Write::new(
        notifications::Entity::insert_many(
            rows.iter()
                .map(|(row, _)| notifications::ActiveModel::from(row.clone())),
        )
        .build(writes.backend()),
    ));
    events::stage_sequenced(&mut writes, sequenced);
    writes.flush(db).await?;
    Ok(rows.into_iter().map(|(_, record)| record).collect())
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
