//! Users and their roles.

use domain::{DisplayName, DomainError, Email, Role};
use sea_orm::sea_query::{Alias, Asterisk, Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, ExprTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{sessions, user_roles, users};
use crate::store::audit::{self, AuditRecord};
use crate::store::records::UserRecord;
use crate::store::{StoreError, StoreResult, now};

/// Creates an account with the `user` role; refuses a taken e-mail.
pub async fn create(
    db: &impl TransactionTrait<Transaction = sea_orm::DatabaseTransaction>,
    email: &Email,
    display_name: &DisplayName,
    password_hash: Option<String>,
) -> StoreResult<UserRecord> {
    let txn = db.begin().await?;
    let at = now();
    let id = Uuid::now_v7();
    let row = users::ActiveModel {
        id: Set(id),
        email: Set(email.as_str().to_owned()),
        display_name: Set(display_name.as_str().to_owned()),
        password_hash: Set(password_hash),
        kyc_status: Set(domain::KycStatus::NotStarted.as_str().to_owned()),
        kyc_level: Set(0),
        two_factor_enabled: Set(false),
        email_verified_at: Set(None),
        event_seq: Set(0),
        phone: Set(None),
        address: Set(None),
        locale: Set(None),
        closed_at: Set(None),
        erased_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    };
    if let Err(err) = users::Entity::insert(row)
        .exec_without_returning(&txn)
        .await
    {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return Err(DomainError::bad_input("an account with this email already exists").into());
        }
        return Err(err.into());
    }
    user_roles::Entity::insert(user_roles::ActiveModel {
        user_id: Set(id),
        role: Set(Role::User.as_str().to_owned()),
        granted_at: Set(at),
    })
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(id),
            action: "user.register",
            subject_type: "user",
            subject_id: Some(id),
            details: json!({ "email": email.masked() }),
        },
    )
    .await?;
    let user = load(&txn, id)
        .await?
        .ok_or_else(|| super::inconsistent("user vanished"))?;
    txn.commit().await?;
    Ok(user)
}

/// The row of the account with this e-mail, with its password hash.
pub async fn find_row_by_email(
    db: &impl ConnectionTrait,
    email: &Email,
) -> StoreResult<Option<users::Model>> {
    Ok(users::Entity::find()
        .filter(users::Column::Email.eq(email.as_str()))
        .one(db)
        .await?)
}

/// The display names of these users, in one query (absent: no such user).
pub async fn display_names(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> StoreResult<std::collections::HashMap<Uuid, String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, String)> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::DisplayName)
        .filter(users::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// A user with its roles; `None` when there is none.
pub async fn load(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<Option<UserRecord>> {
    with_roles(db, id, None).await
}

/// The account of a live session, in the one round trip that checks the
/// session: `None` when the session is unknown, revoked or not the user's.
/// Every authenticated request asks this, so it is one statement (the user
/// row joined to its roles, under an `EXISTS` on the session) rather than
/// a session read, a user read and a roles read.
pub async fn load_for_session(
    db: &impl ConnectionTrait,
    id: Uuid,
    session_id: Uuid,
) -> StoreResult<Option<UserRecord>> {
    with_roles(db, id, Some(session_id)).await
}

/// The user joined to its role rows (one row per role, one without),
/// optionally only while `session` is live.
async fn with_roles(
    db: &impl ConnectionTrait,
    id: Uuid,
    session: Option<Uuid>,
) -> StoreResult<Option<UserRecord>> {
    let mut select = Query::select();
    select
        .column((users::Entity, Asterisk))
        .expr_as(
            Expr::col((user_roles::Entity, user_roles::Column::Role)),
            Alias::new("granted_role"),
        )
        .from(users::Entity)
        .left_join(
            user_roles::Entity,
            Expr::col((user_roles::Entity, user_roles::Column::UserId))
                .equals((users::Entity, users::Column::Id)),
        )
        .and_where(Expr::col((users::Entity, users::Column::Id)).eq(id));
    if let Some(session) = session {
        select.and_where(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(sessions::Entity)
                .and_where(Expr::col((sessions::Entity, sessions::Column::Id)).eq(session))
                .and_where(Expr::col((sessions::Entity, sessions::Column::UserId)).eq(id))
                .and_where(Expr::col((sessions::Entity, sessions::Column::RevokedAt)).is_null())
                .to_owned(),
        ));
    }
    let rows = db.query_all(&select).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let row = users::Model::from_query_result(first, "")?;
    let mut roles = Vec::new();
    for r in &rows {
        if let Some(role) = r.try_get::<Option<String>>("", "granted_role")? {
            roles.push(role);
        }
    }
    UserRecord::from_row(row, &roles).map(Some)
}

/// Grants a role to the account with this e-mail (idempotent) and audits it.
pub async fn grant_role(
    db: &DatabaseConnection,
    actor_id: Option<Uuid>,
    email: &Email,
    role: Role,
) -> StoreResult<UserRecord> {
    let row = find_row_by_email(db, email)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    grant_role_to(db, actor_id, row.id, role).await
}

/// Grants a role to a user (idempotent) and audits it.
pub async fn grant_role_to(
    db: &DatabaseConnection,
    actor_id: Option<Uuid>,
    user_id: Uuid,
    role: Role,
) -> StoreResult<UserRecord> {
    let txn = db.begin().await?;
    users::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    user_roles::Entity::insert(user_roles::ActiveModel {
        user_id: Set(user_id),
        role: Set(role.as_str().to_owned()),
        granted_at: Set(now()),
    })
    .on_conflict(
        OnConflict::columns([user_roles::Column::UserId, user_roles::Column::Role])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id,
            action: "user.role_granted",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "role": role.as_str() }),
        },
    )
    .await?;
    let user = load(&txn, user_id)
        .await?
        .ok_or_else(|| super::inconsistent("user vanished"))?;
    txn.commit().await?;
    Ok(user)
}

/// Applies a compliance decision to a user's KYC status, with its audit
/// record and `kyc.status` event, in one transaction.
pub async fn review_kyc(
    db: &DatabaseConnection,
    actor_id: Uuid,
    user_id: Uuid,
    decision: domain::KycDecision,
    reason: Option<&str>,
) -> StoreResult<UserRecord> {
    if actor_id == user_id {
        return Err(DomainError::forbidden("nobody may review their own KYC case").into());
    }
    let txn = db.begin().await?;
    let row = users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    let current = domain::KycStatus::parse(&row.kyc_status)
        .map_err(|_| super::inconsistent(format!("user {user_id} kyc status")))?;
    let (status, level, reason) = domain::kyc::review(current, row.kyc_level, decision, reason)?;
    super::kyc::change_status(
        &txn,
        user_id,
        super::kyc::Change {
            from: current,
            to: domain::kyc::Transition {
                status,
                level,
                reason,
            },
            source: domain::kyc::KycSource::Compliance,
            actor_id: Some(actor_id),
            action: "kyc.review",
        },
    )
    .await?;
    let user = load(&txn, user_id)
        .await?
        .ok_or_else(|| super::inconsistent("user vanished"))?;
    txn.commit().await?;
    Ok(user)
}

/// Replaces the user's password hash, signs out every other session (their
/// refresh tokens stop working) and audits it.
pub async fn set_password(
    db: &DatabaseConnection,
    user_id: Uuid,
    hash: String,
    keep_session: Uuid,
) -> StoreResult<()> {
    let txn = db.begin().await?;
    let updated = users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(Some(hash)))
        .col_expr(users::Column::UpdatedAt, Expr::value(now()))
        .filter(users::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    if updated.rows_affected == 0 {
        return Err(DomainError::not_found("user").into());
    }
    let signed_out = super::sessions::revoke_others(&txn, user_id, keep_session).await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id: Some(user_id),
            action: "user.password_changed",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "other_sessions_revoked": signed_out }),
        },
    )
    .await?;
    let notice = domain::events::SecurityNotice::PasswordChanged;
    super::events::append(&txn, user_id, domain::EventBody::SecurityNotice(notice)).await?;
    txn.commit().await?;
    Ok(())
}

/// The e-mail addresses of several users, in one query.
pub async fn emails(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> StoreResult<std::collections::HashMap<Uuid, String>> {
    let rows: Vec<(Uuid, String)> = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Email)
        .filter(users::Column::Id.is_in(ids.to_vec()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The row of a user, with its password hash.
pub async fn find_row(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<Option<users::Model>> {
    Ok(users::Entity::find_by_id(id).one(db).await?)
}

/// Users whose KYC case has this status, oldest change first (at most 100).
pub async fn with_kyc_status(
    db: &impl ConnectionTrait,
    status: domain::KycStatus,
) -> StoreResult<Vec<UserRecord>> {
    let rows = users::Entity::find()
        .filter(users::Column::KycStatus.eq(status.as_str()))
        .order_by_asc(users::Column::UpdatedAt)
        .limit(100)
        .all(db)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(user) = load(db, row.id).await? {
            out.push(user);
        }
    }
    Ok(out)
}

/// Withdraws a role (idempotent) and audits it. The last admin cannot lose
/// the admin role.
pub async fn revoke_role(
    db: &DatabaseConnection,
    actor_id: Option<Uuid>,
    user_id: Uuid,
    role: Role,
) -> StoreResult<UserRecord> {
    let txn = db.begin().await?;
    users::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or_else(|| StoreError::from(DomainError::not_found("user")))?;
    if role == Role::User {
        return Err(DomainError::bad_input("every account keeps the user role").into());
    }
    if role == Role::Admin {
        let admins = user_roles::Entity::find()
            .filter(user_roles::Column::Role.eq(Role::Admin.as_str()))
            .lock_exclusive()
            .all(&txn)
            .await?;
        if admins.len() <= 1 && admins.iter().any(|r| r.user_id == user_id) {
            return Err(DomainError::bad_input("the last admin cannot lose the admin role").into());
        }
    }
    user_roles::Entity::delete_many()
        .filter(user_roles::Column::UserId.eq(user_id))
        .filter(user_roles::Column::Role.eq(role.as_str()))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        AuditRecord {
            actor_id,
            action: "user.role_revoked",
            subject_type: "user",
            subject_id: Some(user_id),
            details: json!({ "role": role.as_str() }),
        },
    )
    .await?;
    let user = load(&txn, user_id)
        .await?
        .ok_or_else(|| super::inconsistent("user vanished"))?;
    txn.commit().await?;
    Ok(user)
}
