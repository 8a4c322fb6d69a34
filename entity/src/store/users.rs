//! Users and their roles.

use domain::{DisplayName, DomainError, Email, Role};
use sea_orm::sea_query::{Alias, Asterisk, Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    EntityTrait, ExprTrait, FromQueryResult, IdenStatic, Iterable, QueryFilter, QueryOrder,
    QuerySelect, SqlErr, Statement, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{sessions, transactions, user_roles, users, wallets};
use crate::store::audit::{self, AuditRecord};
use crate::store::history::{self, HistoryPage, HistoryQuery};
use crate::store::records::{TransactionRecord, UserRecord, WalletRecord};
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

/// What a query operation's session check reads along: the account's
/// wallets, and the first page of its transaction history when the
/// operation asks for one.
#[derive(Debug, Clone)]
pub struct SessionReads {
    /// The account with its roles.
    pub user: UserRecord,
    /// Its wallets, oldest first.
    pub wallets: Vec<WalletRecord>,
    /// The newest `limit` transactions of all its wallets, when asked for:
    /// the page [`history::list`] gives for those wallets without filters.
    pub history: Option<HistoryPage>,
}

/// The account of a live session with its wallets (oldest first) and, with
/// `history_limit`, the first page of its history, for a query operation
/// (the home screen shows balances and the latest transactions): `None`
/// when the session is unknown, revoked or not the user's. On PostgreSQL
/// one statement reads the session, the account, its roles, its wallets
/// and the page.
pub async fn load_for_session_with_wallets(
    db: &impl ConnectionTrait,
    id: Uuid,
    session_id: Uuid,
    history_limit: Option<u64>,
) -> StoreResult<Option<SessionReads>> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        let Some(user) = with_roles(db, id, Some(session_id)).await? else {
            return Ok(None);
        };
        let wallets = super::wallets::list_for_user(db, id).await?;
        let history = match history_limit {
            Some(limit) => {
                let ids = wallets.iter().map(|w| w.id).collect();
                Some(history::list(db, &HistoryQuery::newest(ids, limit)).await?)
            }
            None => None,
        };
        return Ok(Some(SessionReads {
            user,
            wallets,
            history,
        }));
    }
    static WALLETS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static WITH_HISTORY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = match history_limit {
        None => WALLETS.get_or_init(|| session_reads_sql(false)),
        Some(_) => WITH_HISTORY.get_or_init(|| session_reads_sql(true)),
    };
    let mut values: Vec<sea_orm::Value> = vec![id.into(), session_id.into()];
    if let Some(limit) = history_limit {
        // One more than the page: whether another follows.
        values.push(i64::try_from(limit + 1).unwrap_or(i64::MAX).into());
    }
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql.as_str(),
            values,
        ))
        .await?;
    let mut rows = rows.iter().peekable();
    let Some(first) = rows.next_if(|r| matches!(r.try_get::<i32>("", "part"), Ok(0))) else {
        return Ok(None);
    };
    let roles: Option<String> = first.try_get("", "granted_roles")?;
    let roles: Vec<String> = roles
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::to_owned)
        .collect();
    let user = UserRecord::from_row(users::Model::from_query_result(first, "")?, &roles)?;
    let mut wallets = Vec::new();
    let mut movements = Vec::new();
    for row in std::iter::once(first).chain(rows) {
        if row.try_get::<i32>("", "part")? == 0 {
            if let Some(wallet) = Option::<wallets::Model>::from_query_result(row, "w_")? {
                wallets.push(WalletRecord::try_from(wallet)?);
            }
        } else {
            movements.push(transactions::Model::from_query_result(row, "t_")?);
        }
    }
    let history = match history_limit {
        Some(limit) => {
            let (items, has_next) = history::split_page(movements, limit);
            Some(HistoryPage {
                items: items
                    .into_iter()
                    .map(TransactionRecord::try_from)
                    .collect::<Result<_, _>>()?,
                has_next,
            })
        }
        None => None,
    };
    Ok(Some(SessionReads {
        user,
        wallets,
        history,
    }))
}

/// [`load_for_session_with_wallets`]'s statement: rows of `part` 0 are the
/// account (roles folded in) once per wallet (`w_` columns; one row with
/// none when it has no wallet), rows of `part` 1 the history page (`t_`
/// columns), newest first; nothing at all unless the session is live.
/// The page is [`history::list`]'s for all the wallets: each wallet's
/// newest sent and received movements through their indexes, a movement
/// between two of them in its sender's branch only, merged and cut.
fn session_reads_sql(history: bool) -> String {
    let user_columns = users::Column::iter()
        .map(|c| format!("u.{0} AS {0}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let wallet_columns = wallets::Column::iter()
        .map(|c| format!("w.{0} AS w_{0}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let live = "WITH live AS MATERIALIZED (SELECT EXISTS (SELECT 1 FROM sessions s \
                 WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL) AS ok), \
               mine AS MATERIALIZED (SELECT * FROM wallets WHERE user_id = $1 AND (SELECT ok FROM live))";
    let account = |movement_nulls: &str| {
        format!(
            "SELECT 0 AS part, {user_columns}, \
               (SELECT string_agg(r.role, ',') FROM user_roles r WHERE r.user_id = u.id) AS granted_roles, \
               {wallet_columns}{movement_nulls} \
             FROM users u LEFT JOIN mine w ON true \
             WHERE u.id = $1 AND (SELECT ok FROM live)"
        )
    };
    if !history {
        return format!("{live} {} ORDER BY w_created_at, w_id", account(""));
    }
    let nulls = |n: usize| vec!["NULL"; n].join(", ");
    let movement_nulls = transactions::Column::iter()
        .map(|c| format!(", NULL AS t_{}", c.as_str()))
        .collect::<String>();
    let movement_columns = transactions::Column::iter()
        .map(|c| format!("t.{0}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let order = "ORDER BY created_at DESC, id DESC LIMIT $3";
    format!(
        "{live}, \
         page AS (SELECT * FROM (\
             SELECT t.* FROM mine w CROSS JOIN LATERAL (\
               SELECT * FROM transactions WHERE from_wallet_id = w.id {order}) t \
             UNION ALL \
             SELECT t.* FROM mine w CROSS JOIN LATERAL (\
               SELECT * FROM transactions WHERE to_wallet_id = w.id \
               AND (from_wallet_id IS NULL OR from_wallet_id NOT IN (SELECT id FROM mine)) {order}) t\
           ) p {order}) \
         {account} \
         UNION ALL \
         SELECT 1, {user_nulls}, NULL, {wallet_nulls}, {movement_columns} FROM page t \
         ORDER BY part, w_created_at, w_id, t_created_at DESC, t_id DESC",
        account = account(&movement_nulls),
        user_nulls = nulls(users::Column::iter().count()),
        wallet_nulls = nulls(wallets::Column::iter().count()),
    )
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
