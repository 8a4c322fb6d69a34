//! The transactional outbox: [`Envelope`]s written in the transaction of the
//! change they describe, each with a per-user, strictly increasing sequence,
//! stored in their versioned wire form (see [`domain::events`]).

use domain::events::{BalanceUpdated, Stored, WireError};
use domain::{Envelope, EventBody, Topic};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
};
use uuid::Uuid;

use crate::entities::{outbox_events, outbox_pruned, users};
use crate::store::records::WalletRecord;
use crate::store::writes::{self, Write, Writes};
use crate::store::{StoreError, StoreResult, bind, inconsistent, now};

/// Takes the user's next event sequence. The row lock this update takes is
/// held until commit, so a user's sequences commit in order.
pub async fn next_sequence(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<i64> {
    reserve(db, &[(user_id, 1)])
        .await?
        .first()
        .map(|(_, sequence)| *sequence)
        .ok_or_else(|| inconsistent(format!("no user {user_id} for event sequence")))
}

/// Writes one event to the outbox, with the user's next sequence. On
/// PostgreSQL the sequence is taken and the event written in one statement.
pub async fn append(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    body: EventBody,
) -> StoreResult<Envelope> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        let sequence = next_sequence(db, user_id).await?;
        return append_with_sequence(db, user_id, sequence, body).await;
    }
    let mut envelope = Envelope {
        id: Uuid::now_v7(),
        user_id,
        sequence: 0,
        occurred_at: now(),
        body,
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "WITH seq AS (UPDATE users SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq) \
             INSERT INTO outbox_events (id, user_id, sequence, topic, payload, created_at, trace_parent) \
             SELECT $2, $1, seq.event_seq, $3, $4, $5, $6 FROM seq RETURNING sequence",
            [
                user_id.into(),
                envelope.id.into(),
                envelope.topic().as_str().into(),
                envelope.payload().into(),
                envelope.occurred_at.into(),
                crate::trace::current().into(),
            ],
        ))
        .await?
        .ok_or_else(|| inconsistent(format!("no user {user_id} for event sequence")))?;
    envelope.sequence = row.try_get("", "sequence")?;
    Ok(envelope)
}

/// Locks several users' rows in id order, so that writers of several users'
/// sequences cannot deadlock with each other; one user's row is locked by
/// the update of its sequence alone.
///
/// The lock is `FOR NO KEY UPDATE`, what the sequence's `UPDATE` takes
/// anyway: `FOR UPDATE` would also conflict with the `FOR KEY SHARE` that
/// every insert referencing a user takes (deliveries, notifications), and
/// the relay, planning a batch's deliveries for many users in no
/// particular order, then deadlocked with transfers.
///
/// It is a statement of its own, never a `WITH` query of the update: in one
/// statement, a row that another transaction had updated since the
/// statement began is locked at its new version, the update then asks for
/// that row again and queues behind whoever waits for it, which waits for
/// this transaction. PostgreSQL broke such deadlocks between two
/// single-user reservations of the notifier, and between a transfer's
/// events and one, under `api_load`.
///
/// A read-only statement may take the same lock first ([`lock_users_sql`]),
/// saving this round trip: the [`Writes`] that then stage the events know.
async fn lock_users(db: &impl ConnectionTrait, mut ids: Vec<Uuid>) -> StoreResult<()> {
    ids.sort_unstable();
    ids.dedup();
    if ids.len() < 2 || db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::Id.is_in(ids))
        .order_by_asc(users::Column::Id)
        .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    Ok(())
}

/// The lock of [`lock_users`] as a query (PostgreSQL) to read in a
/// statement that does not update the users, whose `values` come before its
/// own (they are appended). `ids` sorted, distinct.
pub(crate) fn lock_users_sql(ids: &[Uuid], values: &mut Vec<sea_orm::Value>) -> String {
    let ids = ids
        .iter()
        .map(|id| format!("{}::uuid", bind(values, *id)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT id FROM users WHERE id IN ({ids}) ORDER BY id FOR NO KEY UPDATE")
}

/// Writes several events, for one or more users, each with its user's next
/// sequence in the order given: on PostgreSQL, once the users are locked
/// ([`lock_users`]), in one statement that takes every sequence and writes
/// every event.
pub async fn append_all(
    db: &impl ConnectionTrait,
    events: Vec<(Uuid, EventBody)>,
) -> StoreResult<Vec<Envelope>> {
    if db.get_database_backend() != DatabaseBackend::Postgres || events.len() < 2 {
        let mut out = Vec::with_capacity(events.len());
        for (user_id, body) in events {
            out.push(append(db, user_id, body).await?);
        }
        return Ok(out);
    }
    lock_users(db, events.iter().map(|(u, _)| *u).collect()).await?;
    let SequencedInsert {
        with,
        insert,
        values,
        mut envelopes,
    } = sequenced_insert(events);
    let sql = writes::with_queries(&with, &format!("{insert} RETURNING id, sequence"));
    let written = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    if written.len() != envelopes.len() {
        return Err(missing_user(written.len(), envelopes.len()));
    }
    for row in written {
        let id: Uuid = row.try_get("", "id")?;
        let sequence: i64 = row.try_get("", "sequence")?;
        if let Some(e) = envelopes.iter_mut().find(|e| e.id == id) {
            e.sequence = sequence;
        }
    }
    Ok(envelopes)
}

/// [`append_all`] staged with the other writes of its transaction (on
/// PostgreSQL, the users locked at once; elsewhere, and for a single event,
/// the events are written at once, as they need their sequences read
/// first).
pub(crate) async fn stage_all(
    db: &impl ConnectionTrait,
    writes: &mut Writes,
    events: Vec<(Uuid, EventBody)>,
) -> StoreResult<()> {
    if writes.backend() != DatabaseBackend::Postgres || events.len() < 2 {
        append_all(db, events).await?;
        return Ok(());
    }
    let users: Vec<Uuid> = events.iter().map(|(u, _)| *u).collect();
    if !writes.holds_users(&users) {
        lock_users(db, users).await?;
    }
    let SequencedInsert {
        with,
        insert,
        values,
        envelopes,
    } = sequenced_insert(events);
    let n = envelopes.len();
    writes.push(
        Write::with_queries(with, insert, values)
            .expecting(n as u64, move |written| missing_user(written as usize, n)),
    );
    Ok(())
}

fn missing_user(written: usize, asked: usize) -> StoreError {
    inconsistent(format!(
        "{written} of {asked} events written: a user is missing"
    ))
}

/// The statement of [`append_all`] on PostgreSQL, in parts.
struct SequencedInsert {
    /// The users' sequences advanced by their number of events.
    with: Vec<(&'static str, String)>,
    /// The events, numbered from there in the order given.
    insert: String,
    values: Vec<sea_orm::Value>,
    /// The events with their sequences still to be learnt.
    envelopes: Vec<Envelope>,
}

fn sequenced_insert(events: Vec<(Uuid, EventBody)>) -> SequencedInsert {
    let at = now();
    let mut users: Vec<(Uuid, i64)> = Vec::new();
    let mut envelopes = Vec::with_capacity(events.len());
    let mut ords = Vec::with_capacity(events.len());
    for (user_id, body) in events {
        let ord = match users.iter_mut().find(|(u, _)| *u == user_id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                users.push((user_id, 1));
                1
            }
        };
        ords.push(ord);
        envelopes.push(Envelope {
            id: Uuid::now_v7(),
            user_id,
            sequence: 0,
            occurred_at: at,
            body,
        });
    }
    users.sort_by_key(|(u, _)| *u);
    let mut values: Vec<sea_orm::Value> = vec![at.into(), crate::trace::current().into()];
    let counts = users
        .iter()
        .map(|(u, n)| {
            format!(
                "({}::uuid, {}::bigint)",
                bind(&mut values, *u),
                bind(&mut values, *n)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let rows = envelopes
        .iter()
        .zip(&ords)
        .map(|(e, ord)| {
            format!(
                "({}::uuid, {}::uuid, {}::bigint, {}::text, {}::json)",
                bind(&mut values, e.id),
                bind(&mut values, e.user_id),
                bind(&mut values, *ord),
                bind(&mut values, e.topic().as_str()),
                bind(&mut values, e.payload()),
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let with = vec![(
        "event_seq",
        format!(
            "UPDATE users u SET event_seq = u.event_seq + c.n FROM (VALUES {counts}) AS c(id, n) \
             WHERE u.id = c.id RETURNING u.id, u.event_seq - c.n AS base"
        ),
    )];
    let insert = format!(
        "INSERT INTO outbox_events (id, user_id, sequence, topic, payload, created_at, trace_parent) \
         SELECT e.id, e.user_id, event_seq.base + e.ord, e.topic, e.payload, $1, $2 \
         FROM (VALUES {rows}) AS e(id, user_id, ord, topic, payload) JOIN event_seq ON event_seq.id = e.user_id"
    );
    SequencedInsert {
        with,
        insert,
        values,
        envelopes,
    }
}

/// Takes `n` sequences for each user at once, the users' rows locked in id
/// order first ([`lock_users`], as [`append_all`] does); returns each
/// user's first.
pub(crate) async fn reserve(
    db: &impl ConnectionTrait,
    counts: &[(Uuid, i64)],
) -> StoreResult<Vec<(Uuid, i64)>> {
    let mut counts = counts.to_vec();
    counts.sort_by_key(|(u, _)| *u);
    if db.get_database_backend() != DatabaseBackend::Postgres {
        let mut firsts = Vec::with_capacity(counts.len());
        for (user_id, n) in counts {
            let rows = users::Entity::update_many()
                .col_expr(
                    users::Column::EventSeq,
                    Expr::col(users::Column::EventSeq).add(n),
                )
                .filter(users::Column::Id.eq(user_id))
                .exec_with_returning(db)
                .await?;
            let last = rows
                .first()
                .map(|u| u.event_seq)
                .ok_or_else(|| inconsistent(format!("no user {user_id} for event sequence")))?;
            firsts.push((user_id, last - n + 1));
        }
        return Ok(firsts);
    }
    lock_users(db, counts.iter().map(|(u, _)| *u).collect()).await?;
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(counts.len() * 2);
    let rows = counts
        .iter()
        .map(|(u, n)| {
            format!(
                "({}::uuid, {}::bigint)",
                bind(&mut values, *u),
                bind(&mut values, *n)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH c(id, n) AS (VALUES {rows}) \
         UPDATE users u SET event_seq = u.event_seq + c.n FROM c \
         WHERE u.id = c.id \
         RETURNING u.id, u.event_seq - c.n + 1 AS first"
    );
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    if rows.len() != counts.len() {
        return Err(inconsistent(format!(
            "sequences of {} of {} users taken: a user is missing",
            rows.len(),
            counts.len()
        )));
    }
    rows.iter()
        .map(|r| Ok((r.try_get("", "id")?, r.try_get("", "first")?)))
        .collect()
}

/// An event whose sequence [`reserve`] took.
pub(crate) struct Sequenced {
    pub user_id: Uuid,
    pub sequence: i64,
    pub body: EventBody,
    /// The trace it joins.
    pub trace_parent: Option<String>,
}

/// Stages events with sequences already taken by [`reserve`] in this
/// transaction (one insert).
pub(crate) fn stage_sequenced(writes: &mut Writes, events: Vec<Sequenced>) {
    if events.is_empty() {
        return;
    }
    let at = now();
    let rows = events.into_iter().map(|e| {
        let envelope = Envelope {
            id: Uuid::now_v7(),
            user_id: e.user_id,
            sequence: e.sequence,
            occurred_at: at,
            body: e.body,
        };
        outbox_events::ActiveModel {
            id: Set(envelope.id),
            user_id: Set(envelope.user_id),
            sequence: Set(envelope.sequence),
            topic: Set(envelope.topic().as_str().to_owned()),
            payload: Set(envelope.payload()),
            created_at: Set(at),
            published_at: Set(None),
            trace_parent: Set(e.trace_parent),
        }
    });
    writes.push(Write::new(
        outbox_events::Entity::insert_many(rows).build(writes.backend()),
    ));
}

/// Writes one event with a sequence already taken by [`next_sequence`] in
/// this transaction.
pub async fn append_with_sequence(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    sequence: i64,
    body: EventBody,
) -> StoreResult<Envelope> {
    let envelope = Envelope {
        id: Uuid::now_v7(),
        user_id,
        sequence,
        occurred_at: now(),
        body,
    };
    outbox_events::Entity::insert(outbox_events::ActiveModel {
        id: Set(envelope.id),
        user_id: Set(user_id),
        sequence: Set(sequence),
        topic: Set(envelope.topic().as_str().to_owned()),
        payload: Set(envelope.payload()),
        created_at: Set(envelope.occurred_at),
        published_at: Set(None),
        trace_parent: Set(crate::trace::current()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(envelope)
}

/// `balance.updated` for the owner of a wallet.
pub async fn balance_updated(
    db: &impl ConnectionTrait,
    wallet: &WalletRecord,
    delta: rust_decimal::Decimal,
    transaction_id: Uuid,
) -> StoreResult<()> {
    let body = BalanceUpdated::of(wallet, delta, transaction_id);
    append(db, wallet.user_id, EventBody::BalanceUpdated(body)).await?;
    Ok(())
}

/// The channel PostgreSQL relays `LISTEN` on: a trigger on `outbox_events`
/// notifies it once per inserting statement, delivered at commit.
pub const OUTBOX_CHANNEL: &str = "wallet_bff_outbox";

/// An outbox row as the relay reads it: the envelope when this release
/// can read it, the stored JSON in any case (to pass on what a newer
/// release wrote).
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// Event id.
    pub id: Uuid,
    /// Topic name as stored.
    pub topic: String,
    /// The event, or why this release cannot read it.
    pub envelope: Result<Envelope, WireError>,
    /// The stored payload.
    pub payload: serde_json::Value,
    /// Its wire version: 0 for rows of the release before the typed
    /// contract, which wrote its in-app notifications itself.
    pub version: u32,
    /// The wire message to publish: the envelope's own form, or one built
    /// around the stored payload when this release cannot read it.
    pub wire: String,
    /// The `traceparent` of the transaction that wrote it, when traced.
    pub trace_parent: Option<String>,
}

impl From<outbox_events::Model> for OutboxRow {
    fn from(row: outbox_events::Model) -> Self {
        let envelope = decode(&row);
        let wire = match &envelope {
            Ok(e) => e.to_wire(),
            Err(_) => serde_json::json!({
                "id": row.id,
                "userId": row.user_id,
                "sequence": row.sequence,
                "occurredAt": row.created_at,
                "topic": row.topic,
                "payload": row.payload,
            })
            .to_string(),
        };
        Self {
            id: row.id,
            topic: row.topic,
            envelope,
            version: domain::events::payload_version(&row.payload),
            payload: row.payload,
            wire,
            trace_parent: row.trace_parent,
        }
    }
}

fn decode(row: &outbox_events::Model) -> Result<Envelope, WireError> {
    Envelope::from_stored(
        Stored {
            id: row.id,
            user_id: row.user_id,
            sequence: row.sequence,
            topic: &row.topic,
            occurred_at: Some(row.created_at),
        },
        &row.payload,
    )
}

async fn load(
    db: &impl ConnectionTrait,
    select: sea_orm::Select<outbox_events::Entity>,
) -> StoreResult<Vec<Envelope>> {
    select
        .all(db)
        .await?
        .iter()
        .map(|row| decode(row).map_err(|e| inconsistent(format!("outbox event {}: {e}", row.id))))
        .collect()
}

/// Events of one user and topic after a sequence, in order (replay).
pub async fn after_sequence(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    topic: Topic,
    after: i64,
    limit: u64,
) -> StoreResult<Vec<Envelope>> {
    let select = outbox_events::Entity::find()
        .filter(outbox_events::Column::UserId.eq(user_id))
        .filter(outbox_events::Column::Topic.eq(topic.as_str()))
        .filter(outbox_events::Column::Sequence.gt(after))
        .order_by_asc(outbox_events::Column::Sequence)
        .limit(limit);
    load(db, select).await
}

/// The last sequence handed out to a user (0 before the first event).
pub async fn current_sequence(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<i64> {
    Ok(users::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map_or(0, |u| u.event_seq))
}

/// Unpublished events for the relay, a prefix of each user's in sequence
/// order, the users taken by how long their oldest unpublished event has
/// waited. So under a backlog every user's turn comes (ordered by user id
/// instead, each batch began again with the low ids that kept writing, and
/// later users waited until the backlog was gone). Within a user the order
/// is by sequence, not by time: commit times come from the clocks of
/// different instances, but a user's sequences always commit in order, so
/// when one is visible every earlier one is too.
///
/// The users are found among the `limit` oldest waiting events (an index
/// range), not by grouping the whole backlog: a user the batch reaches has
/// its oldest event among them, since every older event belongs to a user
/// ahead of it in the batch.
pub async fn unpublished(db: &impl ConnectionTrait, limit: u64) -> StoreResult<Vec<OutboxRow>> {
    read_unpublished(db, limit).await
}

/// [`unpublished`] for the relay holding the transaction-scoped advisory
/// lock `lock_key`, taken (when free) first on PostgreSQL: nothing when
/// another transaction holds it.
///
/// The lock is a statement of its own, before the read: a statement reads
/// from the snapshot taken when it starts, so a read in the statement that
/// waited for the lock could miss the marks of the relay that held it and
/// just committed, and publish and plan its events again.
pub async fn unpublished_as_leader(
    db: &impl ConnectionTrait,
    limit: u64,
    lock_key: i64,
) -> StoreResult<Vec<OutboxRow>> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let leader = db
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock($1) AS ok",
                [lock_key.into()],
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "ok"))
            .transpose()?;
        if leader != Some(true) {
            return Ok(Vec::new());
        }
    }
    read_unpublished(db, limit).await
}

async fn read_unpublished(db: &impl ConnectionTrait, limit: u64) -> StoreResult<Vec<OutboxRow>> {
    let backend = db.get_database_backend();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let values: Vec<sea_orm::Value> = vec![limit.into(), limit.into()];
    // PostgreSQL reads each user's prefix through the index of its waiting
    // events (a lateral join), not every waiting event of the backlog and
    // a join: 40 ms a round under a backlog of 20,000 on the bench.
    let sql = if backend == DatabaseBackend::Postgres {
        "WITH oldest AS (\
           SELECT user_id, created_at FROM outbox_events \
           WHERE published_at IS NULL ORDER BY created_at LIMIT $1), \
         waiting AS (SELECT user_id, MIN(created_at) AS since FROM oldest GROUP BY user_id) \
         SELECT e.* FROM waiting w CROSS JOIN LATERAL (\
           SELECT * FROM outbox_events o WHERE o.user_id = w.user_id AND o.published_at IS NULL \
           ORDER BY o.sequence LIMIT $2) e \
         ORDER BY w.since, e.user_id, e.sequence LIMIT $2"
            .to_owned()
    } else {
        "WITH oldest AS (\
           SELECT user_id, created_at FROM outbox_events \
           WHERE published_at IS NULL ORDER BY created_at LIMIT ?), \
         waiting AS (SELECT user_id, MIN(created_at) AS since FROM oldest GROUP BY user_id) \
         SELECT e.* FROM outbox_events e JOIN waiting w ON w.user_id = e.user_id \
         WHERE e.published_at IS NULL \
         ORDER BY w.since, e.user_id, e.sequence LIMIT ?"
            .to_owned()
    };
    let rows = outbox_events::Model::find_by_statement(Statement::from_sql_and_values(
        backend, sql, values,
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(OutboxRow::from).collect())
}

/// Marks events as published.
pub async fn mark_published(db: &impl ConnectionTrait, ids: &[Uuid]) -> StoreResult<()> {
    writes::at_once(db, |w| stage_published(w, ids)).await
}

/// [`mark_published`] staged with other writes.
pub(crate) fn stage_published(writes: &mut Writes, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    writes.push(Write::new(
        outbox_events::Entity::update_many()
            .col_expr(outbox_events::Column::PublishedAt, Expr::value(Some(now())))
            .filter(outbox_events::Column::Id.is_in(ids.to_vec()))
            .build(writes.backend()),
    ));
}

/// How far the relay is behind: unpublished events and the age in seconds of
/// the oldest one.
pub async fn backlog(db: &impl ConnectionTrait) -> StoreResult<(u64, f64)> {
    let pending = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .count(db)
        .await?;
    let oldest = outbox_events::Entity::find()
        .filter(outbox_events::Column::PublishedAt.is_null())
        .order_by_asc(outbox_events::Column::CreatedAt)
        .one(db)
        .await?;
    let age = oldest.map_or(0.0, |e| {
        Ord::max((now() - e.created_at).num_milliseconds(), 0i64) as f64 / 1000.0
    });
    Ok((pending, age))
}

const PRUNABLE_SQL: &str = "SELECT id, user_id, sequence FROM outbox_events o \
     WHERE o.published_at IS NOT NULL AND o.created_at < ? \
     AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = o.id AND d.status IN (?, ?, ?)) \
     ORDER BY o.created_at LIMIT ?{lock}";

#[derive(Debug, sea_orm::FromQueryResult)]
struct Prunable {
    id: Uuid,
    user_id: Uuid,
    sequence: i64,
}

/// Deletes up to `batch` published events older than `older_than` whose
/// deliveries all ended (sent, cancelled, or dead letters as old as the
/// retention), with those delivery records, and records per user how far
/// events are gone. Returns how many were deleted.
pub async fn prune(
    db: &sea_orm::DatabaseConnection,
    older_than: chrono::DateTime<chrono::Utc>,
    batch: u64,
) -> StoreResult<u64> {
    use sea_orm::{FromQueryResult, Statement, TransactionTrait};
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DatabaseBackend::Postgres => {
            crate::store::numbered(&PRUNABLE_SQL.replace("{lock}", " FOR UPDATE OF o SKIP LOCKED"))
        }
        _ => PRUNABLE_SQL.replace("{lock}", ""),
    };
    let txn = db.begin().await?;
    let rows = Prunable::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [
            older_than.into(),
            domain::notify::DeliveryStatus::Pending.as_str().into(),
            domain::notify::DeliveryStatus::Sending.as_str().into(),
            domain::notify::DeliveryStatus::Failed.as_str().into(),
            i64::try_from(batch).unwrap_or(i64::MAX).into(),
        ],
    ))
    .all(&txn)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    crate::entities::deliveries::Entity::delete_many()
        .filter(crate::entities::deliveries::Column::EventId.is_in(ids.clone()))
        .exec(&txn)
        .await?;
    outbox_events::Entity::delete_many()
        .filter(outbox_events::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    let mut through: std::collections::BTreeMap<Uuid, i64> = std::collections::BTreeMap::new();
    for r in &rows {
        let seq = through.entry(r.user_id).or_insert(r.sequence);
        *seq = Ord::max(*seq, r.sequence);
    }
    for (user_id, sequence) in through {
        // Only ever raised: another instance may prune the same user at once.
        outbox_pruned::Entity::insert(outbox_pruned::ActiveModel {
            user_id: Set(user_id),
            through_sequence: Set(0),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(outbox_pruned::Column::UserId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        outbox_pruned::Entity::update_many()
            .col_expr(
                outbox_pruned::Column::ThroughSequence,
                Expr::value(sequence),
            )
            .filter(outbox_pruned::Column::UserId.eq(user_id))
            .filter(outbox_pruned::Column::ThroughSequence.lt(sequence))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(rows.len() as u64)
}

/// Events of the user up to this sequence may have been pruned (0: none).
pub async fn pruned_through(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<i64> {
    Ok(outbox_pruned::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .map_or(0, |p| p.through_sequence))
}
