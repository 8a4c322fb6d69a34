//! Delivery records of the notifier: one per (event, channel, target),
//! planned by the relay in the transaction that publishes the event, taken
//! by workers under a lease (or planned already taken, for a worker of the
//! relay's instance: [`Planned::taken_until`]), and marked when the channel
//! accepted it.
//!
//! A worker takes due deliveries with `FOR UPDATE SKIP LOCKED` (PostgreSQL),
//! so several instances share the work without taking one twice; on SQLite
//! the single connection serializes them. Taking a delivery counts an
//! attempt, and the attempt number is the claim's token: only the worker
//! holding the latest claim can mark it.

use chrono::{DateTime, Utc};
use domain::Envelope;
use domain::events::Stored;
use domain::notify::{Channel, DeliveryStatus};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait,
    FromQueryResult, IdenStatic, Iterable, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use crate::entities::{deliveries, outbox_events};
use crate::store::audit::{self, AuditRecord};
use crate::store::notifications::{self, NewNotification};
use crate::store::writes::{Write, Writes};
use crate::store::{StoreResult, bind, events, inconsistent, now, numbered};

/// A delivery as the notifier and the API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Its id (the e-mail's `Message-ID`).
    pub id: Uuid,
    /// The event it delivers.
    pub event_id: Uuid,
    /// The user it is for.
    pub user_id: Uuid,
    /// How it travels.
    pub channel: Channel,
    /// The address, the device's id, or empty for in-app.
    pub target: String,
    /// Where it is in its life.
    pub status: DeliveryStatus,
    /// Attempts started so far.
    pub attempts: i64,
    /// When it is (next) due.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the channel accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<deliveries::Model> for DeliveryRecord {
    type Error = crate::StoreError;

    fn try_from(row: deliveries::Model) -> Result<Self, Self::Error> {
        let bad = |what: &str| inconsistent(format!("delivery {} {what}", row.id));
        Ok(Self {
            id: row.id,
            event_id: row.event_id,
            user_id: row.user_id,
            channel: Channel::parse(&row.channel).map_err(|_| bad("channel"))?,
            target: row.target,
            status: DeliveryStatus::parse(&row.status).map_err(|_| bad("status"))?,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            sent_at: row.sent_at,
            created_at: row.created_at,
        })
    }
}

/// A delivery a worker took, with the event it delivers.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The delivery, `SENDING`, its attempt counted.
    pub delivery: DeliveryRecord,
    /// The event.
    pub event: Envelope,
    /// The `traceparent` of the transaction that wrote the event, when traced.
    pub trace_parent: Option<String>,
}

/// One delivery to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The delivery's id.
    pub id: Uuid,
    /// The event.
    pub event_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// The channel.
    pub channel: Channel,
    /// The address, the device's id, or empty for in-app.
    pub target: String,
    /// Taken at once by a worker of the planning instance, under a lease
    /// ending then: written `SENDING` with its first attempt counted, as a
    /// claim would leave it, so no claim has to take it. Should that worker
    /// never mark it, it is taken again once the lease ran out, as any
    /// claimed delivery is.
    pub taken_until: Option<DateTime<Utc>>,
}

impl Planned {
    /// The delivery as written by [`plan_with_published`] at `at`, once
    /// [taken](Planned::taken_until): what its worker holds.
    pub fn taken(&self, at: DateTime<Utc>) -> DeliveryRecord {
        DeliveryRecord {
            id: self.id,
            event_id: self.event_id,
            user_id: self.user_id,
            channel: self.channel,
            target: self.target.clone(),
            status: DeliveryStatus::Sending,
            attempts: 1,
            next_attempt_at: at,
            last_error: None,
            sent_at: None,
            created_at: at,
        }
    }
}

/// The relay's writes of a round, in one statement on PostgreSQL: the
/// planned deliveries (ones planned before, as the relay publishes at least
/// once, stay as they are; a taken one of those is then not written, and
/// its worker finds nothing to mark) and the events marked published
/// ([`events::mark_published`]), all at `at`.
pub async fn plan_with_published(
    db: &impl ConnectionTrait,
    planned: &[Planned],
    published: &[Uuid],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let mut writes = Writes::new(db);
    for chunk in planned.chunks(500) {
        let rows = chunk.iter().map(|p| deliveries::ActiveModel {
            id: sea_orm::Set(p.id),
            event_id: sea_orm::Set(p.event_id),
            user_id: sea_orm::Set(p.user_id),
            channel: sea_orm::Set(p.channel.as_str().to_owned()),
            target: sea_orm::Set(p.target.clone()),
            status: sea_orm::Set(
                match p.taken_until {
                    Some(_) => DeliveryStatus::Sending,
                    None => DeliveryStatus::Pending,
                }
                .as_str()
                .to_owned(),
            ),
            attempts: sea_orm::Set(i64::from(p.taken_until.is_some())),
            next_attempt_at: sea_orm::Set(at),
            lease_until: sea_orm::Set(p.taken_until),
            last_error: sea_orm::Set(None),
            sent_at: sea_orm::Set(None),
            created_at: sea_orm::Set(at),
            updated_at: sea_orm::Set(at),
        });
        let insert = deliveries::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    deliveries::Column::EventId,
                    deliveries::Column::Channel,
                    deliveries::Column::Target,
                ])
                .do_nothing()
                .to_owned(),
            )
            .build(writes.backend());
        writes.push(Write::new(insert));
    }
    events::stage_published(&mut writes, published);
    writes.flush(db).await
}

/// Takes up to `limit` due deliveries on `channels` (pending, failed and
/// due, or sending under an expired lease) for `lease`, oldest due first,
/// with their events. An instance takes only what it can send.
pub async fn claim_due(
    db: &DatabaseConnection,
    limit: u64,
    lease: chrono::Duration,
    channels: &[Channel],
) -> StoreResult<Vec<Claimed>> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let at = now();
    let backend = db.get_database_backend();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = claim_sql(channels.len());
    let mut values: Vec<sea_orm::Value> = vec![(at + lease).into(), at.into()];
    for _ in 0..2 {
        values.push(at.into());
        values.extend(channels.iter().map(|c| sea_orm::Value::from(c.as_str())));
        values.push(limit.into());
    }
    values.push(limit.into());
    // A claim is one statement, atomic without a transaction around it. On
    // PostgreSQL the same statement reads the claimed deliveries' events: a
    // second read that failed would leave them claimed, untried, until
    // their lease ran out.
    let found: Vec<(deliveries::Model, Option<outbox_events::Model>)> = match backend {
        DatabaseBackend::Postgres => {
            let events = outbox_events::Column::iter()
                .map(|c| format!("e.{0} AS e_{0}", c.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            let claim = numbered(&sql.replace("{lock}", " FOR UPDATE SKIP LOCKED"));
            let sql = format!(
                "WITH claimed AS ({claim}) \
                 SELECT c.*, {events} FROM claimed c LEFT JOIN outbox_events e ON e.id = c.event_id \
                 ORDER BY c.next_attempt_at, c.id"
            );
            let rows = db
                .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        deliveries::Model::from_query_result(row, "")?,
                        Option::<outbox_events::Model>::from_query_result(row, "e_")?,
                    ))
                })
                .collect::<Result<_, sea_orm::DbErr>>()?
        }
        _ => {
            let rows = deliveries::Model::find_by_statement(Statement::from_sql_and_values(
                backend,
                sql.replace("{lock}", ""),
                values,
            ))
            .all(db)
            .await?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let event_ids: Vec<Uuid> = rows.iter().map(|r| r.event_id).collect();
            let mut events: std::collections::HashMap<Uuid, outbox_events::Model> =
                outbox_events::Entity::find()
                    .filter(outbox_events::Column::Id.is_in(event_ids))
                    .all(db)
                    .await?
                    .into_iter()
                    .map(|e| (e.id, e))
                    .collect();
            rows.into_iter()
                .map(|row| {
                    let event = events.remove(&row.event_id);
                    (row, event)
                })
                .collect()
        }
    };
    let mut claimed = Vec::with_capacity(found.len());
    for (row, stored) in found {
        let delivery = DeliveryRecord::try_from(row)?;
        let Some(stored) = stored else {
            // Not to be retried; the rest of the batch goes on.
            tracing::error!(delivery.id = %delivery.id, event.id = %delivery.event_id, "delivery of a missing event");
            mark_failed(db, &delivery, "its event is missing", None).await?;
            continue;
        };
        let event = Envelope::from_stored(
            Stored {
                id: stored.id,
                user_id: stored.user_id,
                sequence: stored.sequence,
                topic: &stored.topic,
                occurred_at: Some(stored.created_at),
            },
            &stored.payload,
        );
        match event {
            Ok(event) => claimed.push(Claimed {
                delivery,
                event,
                trace_parent: stored.trace_parent,
            }),
            Err(err) if err.is_from_newer_release() => {
                // A newer instance planned it; give it back for one of them.
                unclaim(db, &delivery, chrono::Duration::seconds(30)).await?;
            }
            Err(err) => {
                tracing::error!(delivery.id = %delivery.id, error = %err, "delivery of an unreadable event");
                mark_failed(db, &delivery, "its event is unreadable", None).await?;
            }
        }
    }
    Ok(claimed)
}

/// The claim of [`claim_due`] over `channels` channels, with `{lock}`
/// where each branch locks what it takes: the oldest due of the waiting
/// deliveries (pending, failed) and of those whose lease ran out, each read
/// in order through its own partial index (which is why the statuses are
/// written out rather than bound), the oldest of both claimed. Its values:
/// the lease's end and the time; then for each branch the time, the
/// channels and the limit; then the limit.
fn claim_sql(channels: usize) -> String {
    use DeliveryStatus::{Failed, Pending, Sending};
    let channels = vec!["?"; channels].join(", ");
    format!(
        "UPDATE deliveries SET status = '{sending}', attempts = attempts + 1, \
           lease_until = ?, updated_at = ? \
         WHERE id IN (SELECT id FROM (\
             SELECT id, next_attempt_at FROM (SELECT id, next_attempt_at FROM deliveries \
               WHERE status IN ('{pending}', '{failed}') AND next_attempt_at <= ? \
               AND channel IN ({channels}) ORDER BY next_attempt_at LIMIT ?{{lock}}) waiting \
             UNION ALL \
             SELECT id, next_attempt_at FROM (SELECT id, next_attempt_at FROM deliveries \
               WHERE status = '{sending}' AND lease_until < ? \
               AND channel IN ({channels}) ORDER BY lease_until LIMIT ?{{lock}}) expired\
           ) due ORDER BY next_attempt_at LIMIT ?) \
         RETURNING *",
        sending = Sending.as_str(),
        pending = Pending.as_str(),
        failed = Failed.as_str(),
    )
}

/// Gives a claimed delivery back untried (the worker is stopping, or cannot
/// read its event): due again after `after`, the attempt not counted.
pub async fn unclaim(
    db: &impl ConnectionTrait,
    d: &DeliveryRecord,
    after: chrono::Duration,
) -> StoreResult<()> {
    deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::Status,
            Expr::value(DeliveryStatus::Pending.as_str()),
        )
        .col_expr(
            deliveries::Column::Attempts,
            Expr::value(d.attempts.saturating_sub(1)),
        )
        .col_expr(
            deliveries::Column::NextAttemptAt,
            Expr::value(now() + after),
        )
        .col_expr(
            deliveries::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(mine(d))
        .exec(db)
        .await?;
    Ok(())
}

/// The condition that a delivery is still under this worker's claim.
fn mine(d: &DeliveryRecord) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(deliveries::Column::Id.eq(d.id))
        .add(deliveries::Column::Status.eq(DeliveryStatus::Sending.as_str()))
        .add(deliveries::Column::Attempts.eq(d.attempts))
}

/// Renews the lease of a claimed delivery right before it is sent, so the
/// send always happens under a valid claim. False when the claim was lost
/// (another worker took it and counted an attempt: it must not be sent
/// here); a lease that ran out with nobody taking the delivery is renewed.
pub async fn extend_lease(
    db: &impl ConnectionTrait,
    d: &DeliveryRecord,
    lease: chrono::Duration,
) -> StoreResult<bool> {
    let at = now();
    let res = deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::LeaseUntil,
            Expr::value(Some(at + lease)),
        )
        .filter(mine(d))
        .filter(deliveries::Column::LeaseUntil.gt(at))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Records that the channel accepted a claimed delivery. False when the
/// claim was lost (its lease ran out and another worker took it).
pub async fn mark_sent(db: &impl ConnectionTrait, d: &DeliveryRecord) -> StoreResult<bool> {
    Ok(mark_all_sent(db, std::iter::once(d)).await?.contains(&d.id))
}

/// Records a failed attempt: due again at `retry_at`, or a dead letter when
/// `None`. `error` must hold no personal data.
pub async fn mark_failed(
    db: &impl ConnectionTrait,
    d: &DeliveryRecord,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let at = now();
    let (status, due) = match retry_at {
        Some(due) => (DeliveryStatus::Failed, due),
        None => (DeliveryStatus::Dead, at),
    };
    let error: String = error.chars().take(500).collect();
    let res = deliveries::Entity::update_many()
        .col_expr(deliveries::Column::Status, Expr::value(status.as_str()))
        .col_expr(deliveries::Column::NextAttemptAt, Expr::value(due))
        .col_expr(
            deliveries::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(deliveries::Column::LastError, Expr::value(Some(error)))
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(at))
        .filter(mine(d))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Ends a claimed delivery whose target is gone (a removed device):
/// `CANCELLED`, not a dead letter. False when the claim was lost.
pub async fn mark_cancelled(
    db: &impl ConnectionTrait,
    d: &DeliveryRecord,
    reason: &str,
) -> StoreResult<bool> {
    let at = now();
    let res = deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::Status,
            Expr::value(DeliveryStatus::Cancelled.as_str()),
        )
        .col_expr(
            deliveries::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            deliveries::Column::LastError,
            Expr::value(Some(reason.chars().take(500).collect::<String>())),
        )
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(at))
        .filter(mine(d))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Delivers in-app notifications for claimed deliveries of one user (`None`
/// for one with nothing to tell): the marks, the notification rows and their
/// `notification.created` events commit together, so each exists exactly
/// once, in one statement on PostgreSQL and one transaction of four
/// statements elsewhere, however many there are.
/// Answers, in order, whether each claim was still ours (a lost one wrote
/// nothing).
///
/// One user's: the transaction locks the users' rows to take their event
/// sequences, and money movements lock the same rows. Over many users it
/// would hold the rows it has while it waits for the rest: measured with
/// 64-delivery batches over 40 busy users, transfers ran at half the rate.
/// On PostgreSQL the whole of it is one statement
/// ([`deliver_in_app_at_once`]), so the user's row is locked for that
/// statement only.
pub async fn deliver_in_app(
    db: &DatabaseConnection,
    batch: Vec<(&DeliveryRecord, Option<NewNotification<'_>>)>,
) -> StoreResult<Vec<bool>> {
    let Some((first, _)) = batch.first() else {
        return Ok(Vec::new());
    };
    let user_id = first.user_id;
    if batch.iter().any(|(d, _)| d.user_id != user_id) {
        return Err(inconsistent("an in-app batch of several users"));
    }
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let ours = deliver_in_app_at_once(db, user_id, &batch).await?;
        return Ok(batch.iter().map(|(d, _)| ours.contains(&d.id)).collect());
    }
    let txn = db.begin().await?;
    let ours = mark_all_sent(&txn, batch.iter().map(|(d, _)| *d)).await?;
    let news = batch
        .iter()
        .filter(|(d, _)| ours.contains(&d.id))
        .filter_map(|(_, new)| new.clone())
        .collect();
    notifications::create_all(&txn, news).await?;
    txn.commit().await?;
    Ok(batch.iter().map(|(d, _)| ours.contains(&d.id)).collect())
}

/// [`deliver_in_app`] on PostgreSQL, in one statement: the deliveries still
/// under this worker's claim are marked sent, and for each of them that has
/// something to tell, numbered in the order given, a notification and its
/// `notification.created` event are written under the user's next
/// sequences. The sequences are only known inside the statement, so the
/// event's payload is written with 0 where the notification's and the
/// event's sequence go and the statement fills them in. Returns the ids of
/// the deliveries that were still ours.
async fn deliver_in_app_at_once(
    db: &DatabaseConnection,
    user_id: Uuid,
    batch: &[(&DeliveryRecord, Option<NewNotification<'_>>)],
) -> StoreResult<std::collections::HashSet<Uuid>> {
    use domain::events::NotificationCreated;
    use domain::{EventBody, NotificationRecord};

    let at = now();
    let mut values: Vec<sea_orm::Value> = vec![
        DeliveryStatus::Sent.as_str().into(),
        at.into(),
        DeliveryStatus::Sending.as_str().into(),
        user_id.into(),
        domain::Topic::NotificationCreated.as_str().into(),
    ];
    let claims = batch
        .iter()
        .map(|(d, _)| {
            format!(
                "(id = {}::uuid AND attempts = {}::bigint)",
                bind(&mut values, d.id),
                bind(&mut values, d.attempts)
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut notices = Vec::new();
    for (ord, (delivery, new)) in batch.iter().enumerate() {
        let Some(new) = new else { continue };
        let notification = NotificationRecord {
            id: Uuid::now_v7(),
            sequence: 0,
            kind: new.kind.to_owned(),
            title: new.title.clone(),
            body: new.body.clone(),
            data: new.data.clone(),
            read_at: None,
            created_at: at,
            source_event_id: new.source_event_id,
        };
        let event = Envelope {
            id: Uuid::now_v7(),
            user_id,
            sequence: 0,
            occurred_at: at,
            body: EventBody::NotificationCreated(NotificationCreated {
                notification: notification.clone(),
            }),
        };
        notices.push(format!(
            "({}::int, {}::uuid, {}::uuid, {}::uuid, {}::text, {}::text, {}::text, {}::json, {}::uuid, {}::text, {}::jsonb)",
            bind(&mut values, i32::try_from(ord).unwrap_or(i32::MAX)),
            bind(&mut values, delivery.id),
            bind(&mut values, notification.id),
            bind(&mut values, event.id),
            bind(&mut values, notification.kind),
            bind(&mut values, notification.title),
            bind(&mut values, notification.body),
            bind(&mut values, notification.data),
            bind(&mut values, notification.source_event_id),
            bind(&mut values, new.trace_parent.clone()),
            bind(&mut values, event.payload()),
        ));
    }
    let marked = format!(
        "UPDATE deliveries SET status = $1, sent_at = $2, lease_until = NULL, \
         last_error = NULL, updated_at = $2 WHERE status = $3 AND ({claims}) RETURNING id"
    );
    let sql = if notices.is_empty() {
        format!(
            "WITH marked AS ({marked}) SELECT id, 0::bigint AS stored, 0::bigint AS announced, 0::bigint AS told FROM marked"
        )
    } else {
        format!(
            "WITH marked AS ({marked}), \
             notice AS (SELECT v.*, row_number() OVER (ORDER BY v.ord) AS k \
               FROM (VALUES {rows}) AS v(ord, delivery_id, id, event_id, kind, title, body, data, source_event_id, trace_parent, payload) \
               JOIN marked ON marked.id = v.delivery_id), \
             seq AS (UPDATE users SET event_seq = event_seq + (SELECT count(*) FROM notice) \
               WHERE id = $4 AND EXISTS (SELECT 1 FROM notice) \
               RETURNING event_seq - (SELECT count(*) FROM notice) AS base), \
             stored AS (INSERT INTO notifications (id, user_id, sequence, kind, title, body, data, read_at, created_at, source_event_id) \
               SELECT n.id, $4, seq.base + n.k, n.kind, n.title, n.body, n.data, NULL, $2, n.source_event_id \
               FROM notice n CROSS JOIN seq RETURNING 1), \
             announced AS (INSERT INTO outbox_events (id, user_id, sequence, topic, payload, created_at, trace_parent) \
               SELECT n.event_id, $4, seq.base + n.k, $5, \
                 jsonb_set(jsonb_set(n.payload, '{{notification,sequence}}', to_jsonb(seq.base + n.k)), '{{sequence}}', to_jsonb(seq.base + n.k))::json, \
                 $2, n.trace_parent FROM notice n CROSS JOIN seq RETURNING 1) \
             SELECT id, (SELECT count(*) FROM stored) AS stored, (SELECT count(*) FROM announced) AS announced, \
               (SELECT count(*) FROM notice) AS told FROM marked",
            rows = notices.join(", ")
        )
    };
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut ours = std::collections::HashSet::with_capacity(rows.len());
    for row in &rows {
        let (stored, announced, told): (i64, i64, i64) = (
            row.try_get("", "stored")?,
            row.try_get("", "announced")?,
            row.try_get("", "told")?,
        );
        if stored != told || announced != told {
            // Only a user row that vanished under its deliveries leaves the
            // sequence unreserved (deliveries go with their user).
            return Err(inconsistent(format!(
                "{stored} notifications and {announced} events written for {told} notices: the user is missing"
            )));
        }
        ours.insert(row.try_get::<Uuid>("", "id")?);
    }
    Ok(ours)
}

/// Marks claimed deliveries sent in one statement; the ids of those whose
/// claim was still ours.
async fn mark_all_sent(
    db: &impl ConnectionTrait,
    claimed: impl Iterator<Item = &DeliveryRecord>,
) -> StoreResult<std::collections::HashSet<Uuid>> {
    let at = now();
    let mut ours = sea_orm::Condition::any();
    for d in claimed {
        ours = ours.add(mine(d));
    }
    let rows = deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::Status,
            Expr::value(DeliveryStatus::Sent.as_str()),
        )
        .col_expr(deliveries::Column::SentAt, Expr::value(Some(at)))
        .col_expr(
            deliveries::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(deliveries::Column::LastError, Expr::value(None::<String>))
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(at))
        .filter(ours)
        .exec_with_returning(db)
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The deliveries of several events, by event, each by channel and target.
pub async fn for_events(
    db: &impl ConnectionTrait,
    event_ids: &[Uuid],
) -> StoreResult<std::collections::HashMap<Uuid, Vec<DeliveryRecord>>> {
    let rows = deliveries::Entity::find()
        .filter(deliveries::Column::EventId.is_in(event_ids.to_vec()))
        .order_by_asc(deliveries::Column::Channel)
        .order_by_asc(deliveries::Column::Target)
        .all(db)
        .await?;
    let mut out: std::collections::HashMap<Uuid, Vec<DeliveryRecord>> = Default::default();
    for row in rows {
        let d = DeliveryRecord::try_from(row)?;
        out.entry(d.event_id).or_default().push(d);
    }
    Ok(out)
}

/// `status` is one of `statuses`, the values written out rather than
/// bound: a partial index serves only a query whose condition names its
/// predicate's values, and a prepared statement's generic plan does not
/// know bound ones. The deliveries' partial indexes are by status: those
/// waiting, those leased, the dead letters.
fn status_in(statuses: &[DeliveryStatus]) -> Expr {
    Expr::col(deliveries::Column::Status).is_in(
        statuses
            .iter()
            .map(|s| Expr::cust(format!("'{}'", s.as_str()))),
    )
}

/// How many deliveries wait to be sent (pending, failed or sending), and
/// how many are dead letters.
pub async fn backlog(db: &impl ConnectionTrait) -> StoreResult<(u64, u64)> {
    use DeliveryStatus::{Dead, Failed, Pending, Sending};
    use sea_orm::PaginatorTrait;
    let queued = deliveries::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(status_in(&[Pending, Failed]))
                .add(status_in(&[Sending])),
        )
        .count(db)
        .await?;
    let dead = deliveries::Entity::find()
        .filter(status_in(&[Dead]))
        .count(db)
        .await?;
    Ok((queued, dead))
}

/// Dead letters, newest first, after a (created, id) position.
pub async fn dead_letters(
    db: &impl ConnectionTrait,
    after: Option<crate::store::history::Position>,
    limit: u64,
) -> StoreResult<(Vec<DeliveryRecord>, bool)> {
    let mut select = deliveries::Entity::find().filter(status_in(&[DeliveryStatus::Dead]));
    if let Some(after) = after {
        select = select.filter(crate::store::history::before(
            deliveries::Column::CreatedAt,
            deliveries::Column::Id,
            after,
        ));
    }
    let rows = select
        .order_by_desc(deliveries::Column::CreatedAt)
        .order_by_desc(deliveries::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let (rows, has_next) = crate::store::history::split_page(rows, limit);
    Ok((
        rows.into_iter()
            .map(DeliveryRecord::try_from)
            .collect::<StoreResult<_>>()?,
        has_next,
    ))
}

/// Makes a dead letter due again now, with a fresh set of attempts, and
/// audits who did it. Returns the delivery, or `None` when there is no such
/// dead letter.
pub async fn retry_dead(
    db: &DatabaseConnection,
    actor: Uuid,
    id: Uuid,
) -> StoreResult<Option<DeliveryRecord>> {
    let at = now();
    let txn = db.begin().await?;
    let res = deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::Status,
            Expr::value(DeliveryStatus::Pending.as_str()),
        )
        .col_expr(deliveries::Column::Attempts, Expr::value(0i64))
        .col_expr(deliveries::Column::NextAttemptAt, Expr::value(at))
        .col_expr(deliveries::Column::UpdatedAt, Expr::value(at))
        .filter(deliveries::Column::Id.eq(id))
        .filter(deliveries::Column::Status.eq(DeliveryStatus::Dead.as_str()))
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Ok(None);
    }
    let delivery = deliveries::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .map(DeliveryRecord::try_from)
        .transpose()?
        .ok_or_else(|| inconsistent("retried delivery vanished"))?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(actor),
            action: "notification.delivery_retried",
            subject_type: "delivery",
            subject_id: Some(id),
            details: serde_json::json!({
                "channel": delivery.channel.as_str(),
                "eventId": delivery.event_id,
                "userId": delivery.user_id,
            }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(Some(delivery))
}
