//! KYC: submissions with their personal data sealed, the provider's review
//! events, the manual compliance path, and the status history all of them
//! write. Every change of status writes the user's row, a history entry, an
//! audit record and a `kyc.status` event in one transaction, so subscribers
//! and the notifier see each real change exactly once.

use chrono::{DateTime, Utc};
use domain::kyc::{
    Applicant, DocumentType, KycSource, ProviderReview, RejectType, Transition, ensure_can_submit,
    provider_transition,
};
use domain::{DomainError, KycStatus};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{kyc_applications, kyc_status_history, kyc_webhooks, user_keys, users};
use crate::pii::{Field, Keyring, UserKey};
use crate::store::audit::{self, AuditRecord};
use crate::store::{StoreError, StoreResult, inconsistent, now};

/// The user's data key, made on first use; refused (`FORBIDDEN`) once it was
/// destroyed by an erasure, so nothing new is sealed for an erased user.
pub async fn user_key(txn: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<UserKey> {
    if let Some(row) = user_keys::Entity::find_by_id(user_id).one(txn).await? {
        let secret = row
            .secret
            .ok_or_else(|| DomainError::forbidden("this account's personal data was erased"))?;
        return UserKey::decode(&secret).map_err(|_| inconsistent("user key is malformed"));
    }
    let key = UserKey::generate();
    user_keys::Entity::insert(user_keys::ActiveModel {
        user_id: Set(user_id),
        secret: Set(Some(key.encode())),
        created_at: Set(now()),
        shredded_at: Set(None),
    })
    .on_conflict(
        OnConflict::column(user_keys::Column::UserId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    // Another transaction may have made it first: read what won.
    let row = user_keys::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .ok_or_else(|| inconsistent("user key vanished"))?;
    UserKey::decode(row.secret.as_deref().unwrap_or_default())
        .map_err(|_| inconsistent("user key is malformed"))
}

/// The user's data key if it exists and was not destroyed.
pub async fn existing_user_key(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<Option<UserKey>> {
    let Some(row) = user_keys::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    row.secret
        .map(|s| UserKey::decode(&s).map_err(|_| inconsistent("user key is malformed")))
        .transpose()
}

/// A status change and who made it.
pub(crate) struct Change<'a> {
    pub from: KycStatus,
    pub to: Transition,
    pub source: KycSource,
    pub actor_id: Option<Uuid>,
    pub action: &'a str,
}

/// Writes a status change: the user's row, history, audit, `kyc.status`.
pub(crate) async fn change_status(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    change: Change<'_>,
) -> StoreResult<()> {
    let at = now();
    let Change {
        from,
        to,
        source,
        actor_id,
        action,
    } = change;
    users::Entity::update_many()
        .col_expr(users::Column::KycStatus, Expr::value(to.status.as_str()))
        .col_expr(users::Column::KycLevel, Expr::value(to.level))
        .col_expr(users::Column::UpdatedAt, Expr::value(at))
        .filter(users::Column::Id.eq(user_id))
        .exec(txn)
        .await?;
    kyc_status_history::Entity::insert(kyc_status_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        from_status: Set(from.as_str().to_owned()),
        to_status: Set(to.status.as_str().to_owned()),
        level: Set(to.level),
        reason: Set(to.reason.clone()),
        source: Set(source.as_str().to_owned()),
        actor_id: Set(actor_id),
        occurred_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::record(
        txn,
        AuditRecord {
            actor_id,
            action,
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({
                "from": from.as_str(),
                "to": to.status.as_str(),
                "level": to.level,
                "source": source.as_str(),
            }),
        },
    )
    .await?;
    let changed = domain::events::KycStatusChanged {
        status: to.status,
        level: to.level,
        reason: to.reason,
    };
    super::events::append(txn, user_id, domain::EventBody::KycStatusChanged(changed)).await?;
    Ok(())
}

/// A submitted application as the API shows it.
#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    /// Our id.
    pub id: Uuid,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The provider's level.
    pub level_name: String,
    /// The user's KYC status after the submission.
    pub status: KycStatus,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
}

/// What the provider said when the application was made.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The provider's applicant id.
    pub applicant_id: &'a str,
    /// The level the applicant was made at.
    pub level_name: &'a str,
    /// The validated personal data.
    pub applicant: &'a Applicant,
}

/// The user's current status, level and application; with `lock`, under a
/// lock on the user's row (inside a transaction).
async fn standing(
    txn: &impl ConnectionTrait,
    user_id: Uuid,
    lock: bool,
) -> StoreResult<(KycStatus, i32, Option<kyc_applications::Model>)> {
    let mut find = users::Entity::find_by_id(user_id);
    if lock {
        find = find.lock_exclusive();
    }
    let user = find
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    if user.closed_at.is_some() {
        return Err(DomainError::account_closed().into());
    }
    let status = KycStatus::parse(&user.kyc_status)
        .map_err(|_| inconsistent(format!("user {user_id} kyc status")))?;
    let application = kyc_applications::Entity::find()
        .filter(kyc_applications::Column::UserId.eq(user_id))
        .one(txn)
        .await?;
    Ok((status, user.kyc_level, application))
}

fn reject_type(app: Option<&kyc_applications::Model>) -> Option<RejectType> {
    app.and_then(|a| a.reject_type.as_deref())
        .and_then(|t| RejectType::parse(t).ok())
}

/// Whether the user may submit now (checked again, under a lock, by [`submit`]).
pub async fn can_submit(db: &DatabaseConnection, user_id: Uuid) -> StoreResult<Option<String>> {
    let (status, _, application) = standing(db, user_id, false).await?;
    ensure_can_submit(status, reject_type(application.as_ref()))?;
    Ok(application.map(|a| a.applicant_id))
}

/// The provider level of the user's application while its verification is
/// under way (`PENDING` or `IN_REVIEW`); `None` otherwise.
pub async fn level_under_way(
    db: &impl ConnectionTrait,
    user_id: Uuid,
) -> StoreResult<Option<String>> {
    let Some(user) = users::Entity::find_by_id(user_id).one(db).await? else {
        return Ok(None);
    };
    let under_way = matches!(
        KycStatus::parse(&user.kyc_status),
        Ok(KycStatus::Pending | KycStatus::InReview)
    );
    if !under_way || user.closed_at.is_some() {
        return Ok(None);
    }
    Ok(kyc_applications::Entity::find()
        .filter(kyc_applications::Column::UserId.eq(user_id))
        .one(db)
        .await?
        .map(|a| a.level_name))
}

/// Records a submission made at the provider: the application with its
/// personal data sealed, the user `PENDING`, history, audit and event.
pub async fn submit(
    db: &DatabaseConnection,
    keys: &Keyring,
    user_id: Uuid,
    submission: Submission<'_>,
) -> StoreResult<ApplicationRecord> {
    let txn = db.begin().await?;
    let (status, level, existing) = standing(&txn, user_id, true).await?;
    ensure_can_submit(status, reject_type(existing.as_ref()))?;
    let key = user_key(&txn, user_id).await?;
    let at = now();
    let id = existing.as_ref().map_or_else(Uuid::now_v7, |a| a.id);
    let a = submission.applicant;
    let seal = |column: &'static str, value: &str| {
        Some(keys.seal(&key, Field::new("kyc_applications", column, id), value))
    };
    let address =
        serde_json::to_string(&a.address).map_err(|e| inconsistent(format!("address: {e}")))?;
    let row = kyc_applications::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        applicant_id: Set(submission.applicant_id.to_owned()),
        level_name: Set(submission.level_name.to_owned()),
        first_name: Set(seal("first_name", &a.first_name)),
        last_name: Set(seal("last_name", &a.last_name)),
        date_of_birth: Set(seal(
            "date_of_birth",
            &a.date_of_birth.format("%Y-%m-%d").to_string(),
        )),
        address: Set(seal("address", &address)),
        country: Set(seal("country", &a.country)),
        document_type: Set(a.document_type.as_str().to_owned()),
        document_number: Set(seal("document_number", &a.document_number)),
        review_answer: Set(None),
        reject_type: Set(None),
        last_event_at: Set(existing.as_ref().and_then(|e| e.last_event_at)),
        submitted_at: Set(at),
        updated_at: Set(at),
    };
    if existing.is_some() {
        kyc_applications::Entity::update(row).exec(&txn).await?;
    } else {
        kyc_applications::Entity::insert(row)
            .exec_without_returning(&txn)
            .await?;
    }
    change_status(
        &txn,
        user_id,
        Change {
            from: status,
            to: Transition {
                status: KycStatus::Pending,
                level,
                reason: None,
            },
            source: KycSource::User,
            actor_id: Some(user_id),
            action: "kyc.submitted",
        },
    )
    .await?;
    txn.commit().await?;
    Ok(ApplicationRecord {
        id,
        applicant_id: submission.applicant_id.to_owned(),
        level_name: submission.level_name.to_owned(),
        status: KycStatus::Pending,
        submitted_at: at,
    })
}

/// A provider event, authenticated and parsed.
#[derive(Debug, Clone)]
pub struct ProviderEvent {
    /// SHA-256 of the raw body: a repeated delivery has the same.
    pub digest: String,
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The provider's event type.
    pub event_type: String,
    /// When the provider created the event.
    pub created_at: DateTime<Utc>,
    /// What it says.
    pub review: ProviderReview,
    /// The tier a GREEN at its level grants.
    pub tier: i32,
}

/// What became of a provider event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// It changed the user's status.
    Applied,
    /// Authentic and in order, but it changes nothing.
    Unchanged,
    /// Older than an event already applied: ignored.
    Stale,
    /// Delivered before: ignored.
    Duplicate,
    /// No such applicant here: recorded and audited.
    UnknownApplicant,
}

impl WebhookOutcome {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "APPLIED",
            WebhookOutcome::Unchanged => "UNCHANGED",
            WebhookOutcome::Stale => "STALE",
            WebhookOutcome::Duplicate => "DUPLICATE",
            WebhookOutcome::UnknownApplicant => "UNKNOWN_APPLICANT",
        }
    }
}

/// Applies a provider event once, in order, in one transaction.
pub async fn apply_provider_event(
    db: &DatabaseConnection,
    event: ProviderEvent,
) -> StoreResult<WebhookOutcome> {
    let txn = db.begin().await?;
    let receipt = Uuid::now_v7();
    let inserted = kyc_webhooks::Entity::insert(kyc_webhooks::ActiveModel {
        id: Set(receipt),
        digest: Set(event.digest.clone()),
        applicant_id: Set(event.applicant_id.clone()),
        event_type: Set(event.event_type.clone()),
        event_created_at: Set(event.created_at),
        outcome: Set(WebhookOutcome::Unchanged.as_str().to_owned()),
        received_at: Set(now()),
    })
    .on_conflict(
        OnConflict::column(kyc_webhooks::Column::Digest)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 0 {
        txn.commit().await?;
        return Ok(WebhookOutcome::Duplicate);
    }
    let outcome = apply_in(&txn, &event).await?;
    kyc_webhooks::Entity::update_many()
        .col_expr(kyc_webhooks::Column::Outcome, Expr::value(outcome.as_str()))
        .filter(kyc_webhooks::Column::Id.eq(receipt))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(outcome)
}

async fn apply_in(
    txn: &impl ConnectionTrait,
    event: &ProviderEvent,
) -> StoreResult<WebhookOutcome> {
    let found = kyc_applications::Entity::find()
        .filter(kyc_applications::Column::ApplicantId.eq(&event.applicant_id))
        .one(txn)
        .await?;
    let Some(application) = found else {
        audit::record(
            txn,
            AuditRecord {
                actor_id: None,
                action: "kyc.webhook_unknown_applicant",
                subject_type: "kyc_applicant",
                subject_id: None,
                details: json!({ "applicantId": event.applicant_id, "type": event.event_type }),
            },
        )
        .await?;
        return Ok(WebhookOutcome::UnknownApplicant);
    };
    let user_id = application.user_id;
    // Lock the user, then read the application again under the lock.
    let user = users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| inconsistent("applicant without a user"))?;
    let application = kyc_applications::Entity::find_by_id(application.id)
        .one(txn)
        .await?
        .ok_or_else(|| inconsistent("application vanished"))?;
    if application
        .last_event_at
        .is_some_and(|last| event.created_at <= last)
    {
        return Ok(WebhookOutcome::Stale);
    }
    let mut update = kyc_applications::ActiveModel {
        id: Set(application.id),
        last_event_at: Set(Some(event.created_at)),
        updated_at: Set(now()),
        ..Default::default()
    };
    match &event.review {
        ProviderReview::Green => {
            update.review_answer = Set(Some("GREEN".to_owned()));
            update.reject_type = Set(None);
        }
        ProviderReview::Red { reject, .. } => {
            update.review_answer = Set(Some("RED".to_owned()));
            update.reject_type = Set(Some(reject.as_str().to_owned()));
        }
        ProviderReview::Reset => {
            update.review_answer = Set(None);
            update.reject_type = Set(None);
        }
        _ => {}
    }
    kyc_applications::Entity::update(update).exec(txn).await?;
    if user.erased_at.is_some() || user.closed_at.is_some() {
        return Ok(WebhookOutcome::Unchanged);
    }
    let status = KycStatus::parse(&user.kyc_status)
        .map_err(|_| inconsistent(format!("user {user_id} kyc status")))?;
    let Some(to) = provider_transition(status, user.kyc_level, &event.review, event.tier) else {
        return Ok(WebhookOutcome::Unchanged);
    };
    change_status(
        txn,
        user_id,
        Change {
            from: status,
            to,
            source: KycSource::Provider,
            actor_id: None,
            action: "kyc.provider_review",
        },
    )
    .await?;
    Ok(WebhookOutcome::Applied)
}

/// One entry of a user's KYC history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// Status before.
    pub from: KycStatus,
    /// Status after.
    pub to: KycStatus,
    /// Level after.
    pub level: i32,
    /// Why.
    pub reason: Option<String>,
    /// Who.
    pub source: KycSource,
    /// When.
    pub occurred_at: DateTime<Utc>,
}

/// The user's KYC history, oldest first.
pub async fn history(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<Vec<HistoryEntry>> {
    let rows = kyc_status_history::Entity::find()
        .filter(kyc_status_history::Column::UserId.eq(user_id))
        .order_by_asc(kyc_status_history::Column::OccurredAt)
        .order_by_asc(kyc_status_history::Column::Id)
        .limit(1000)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|r| {
            let status = |s: &str| {
                KycStatus::parse(s).map_err(|_| inconsistent(format!("history status {s}")))
            };
            Ok(HistoryEntry {
                from: status(&r.from_status)?,
                to: status(&r.to_status)?,
                level: r.level,
                reason: r.reason,
                source: KycSource::parse(&r.source)
                    .map_err(|_| inconsistent(format!("history source {}", r.source)))?,
                occurred_at: r.occurred_at,
            })
        })
        .collect()
}

/// The personal data of a user's application, opened.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationData {
    /// The provider's applicant id.
    pub applicant_id: String,
    /// The provider's level.
    pub level_name: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// `YYYY-MM-DD`.
    pub date_of_birth: String,
    /// Address.
    pub address: domain::kyc::Address,
    /// Country of residence.
    pub country: String,
    /// Document kind.
    pub document_type: DocumentType,
    /// Document number.
    pub document_number: String,
    /// Last review answer.
    pub review_answer: Option<String>,
    /// Last rejection type.
    pub reject_type: Option<String>,
    /// When submitted.
    pub submitted_at: DateTime<Utc>,
}

/// The user's application with its personal data opened, if any.
pub async fn application_data(
    db: &impl ConnectionTrait,
    keys: &Keyring,
    user_id: Uuid,
) -> StoreResult<Option<ApplicationData>> {
    let Some(row) = kyc_applications::Entity::find()
        .filter(kyc_applications::Column::UserId.eq(user_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let Some(key) = existing_user_key(db, user_id).await? else {
        return Ok(None);
    };
    let open = |column: &'static str, value: &Option<String>| -> StoreResult<String> {
        let sealed = value.as_deref().unwrap_or_default();
        keys.open(&key, Field::new("kyc_applications", column, row.id), sealed)
            .map_err(|e| inconsistent(format!("kyc_applications.{column}: {e}")))
    };
    let address = open("address", &row.address)?;
    Ok(Some(ApplicationData {
        applicant_id: row.applicant_id.clone(),
        level_name: row.level_name.clone(),
        first_name: open("first_name", &row.first_name)?,
        last_name: open("last_name", &row.last_name)?,
        date_of_birth: open("date_of_birth", &row.date_of_birth)?,
        address: serde_json::from_str(&address)
            .map_err(|e| inconsistent(format!("kyc address: {e}")))?,
        country: open("country", &row.country)?,
        document_type: DocumentType::parse(&row.document_type)
            .map_err(|_| inconsistent("document type"))?,
        document_number: open("document_number", &row.document_number)?,
        review_answer: row.review_answer.clone(),
        reject_type: row.reject_type.clone(),
        submitted_at: row.submitted_at,
    }))
}
