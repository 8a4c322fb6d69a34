//! The audit trail: who did what, written in the transaction of the action.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryTrait};
use uuid::Uuid;

use crate::entities::audit_log;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreResult, now};

/// One audit record to write.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// The acting user, if any.
    pub actor_id: Option<Uuid>,
    /// Dotted action name such as `wallet.transfer`.
    pub action: &'a str,
    /// Kind of object, such as `transaction`.
    pub subject_type: &'a str,
    /// The object.
    pub subject_id: Option<Uuid>,
    /// Non-sensitive details (never secrets, never full PII).
    pub details: serde_json::Value,
}

/// Writes an audit record.
pub async fn record(db: &impl ConnectionTrait, rec: AuditRecord<'_>) -> StoreResult<()> {
    writes::at_once(db, |w| stage(w, rec)).await
}

/// Stages an audit record with the other writes of its transaction.
pub(crate) fn stage(writes: &mut Writes, rec: AuditRecord<'_>) {
    let insert = audit_log::Entity::insert(audit_log::ActiveModel {
        id: Set(Uuid::now_v7()),
        actor_id: Set(rec.actor_id),
        action: Set(rec.action.to_owned()),
        subject_type: Set(rec.subject_type.to_owned()),
        subject_id: Set(rec.subject_id),
        details: Set(rec.details),
        created_at: Set(now()),
    });
    writes.push(Write::new(insert.build(writes.backend())));
}

/// A page of the audit trail, newest first, optionally by actor and action.
pub async fn list(
    db: &impl ConnectionTrait,
    actor_id: Option<Uuid>,
    action: Option<&str>,
    after: Option<crate::store::history::Position>,
    limit: u64,
) -> StoreResult<(Vec<audit_log::Model>, bool)> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    let mut select = audit_log::Entity::find();
    if let Some(actor_id) = actor_id {
        select = select.filter(audit_log::Column::ActorId.eq(actor_id));
    }
    if let Some(action) = action {
        select = select.filter(audit_log::Column::Action.eq(action));
    }
    if let Some(after) = after {
        select = select.filter(crate::store::history::before(
            audit_log::Column::CreatedAt,
            audit_log::Column::Id,
            after,
        ));
    }
    let rows = select
        .order_by_desc(audit_log::Column::CreatedAt)
        .order_by_desc(audit_log::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(crate::store::history::split_page(rows, limit))
}
