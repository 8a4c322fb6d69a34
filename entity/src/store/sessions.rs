//! Login sessions and their refresh tokens: rotation within a session, and
//! revocation of the whole session when a used token is presented again.
//!
//! Rotation and revocation both lock the session row first, so a token
//! issued by a rotation that races a logout is either revoked with the rest
//! or never issued.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::{refresh_tokens, sessions};
use crate::store::audit::{self, AuditRecord};
use crate::store::{StoreResult, now};

/// The result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used and the new one is stored.
    Rotated {
        /// Owner.
        user_id: Uuid,
        /// The session, unchanged.
        family_id: Uuid,
    },
    /// Unknown or expired token.
    Invalid,
    /// A token that was already used, or of a revoked session: the session
    /// is (now) revoked.
    Reused {
        /// Owner of the session.
        user_id: Uuid,
    },
}

async fn insert_token(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    family_id: Uuid,
    token_hash: String,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    refresh_tokens::Entity::insert(refresh_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        family_id: Set(family_id),
        token_hash: Set(token_hash),
        created_at: Set(now()),
        expires_at: Set(expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Starts a session with its first refresh token (stored by hash); returns
/// the session id. A sign-in (`Some(method)`, not a registration) also
/// writes the security notice that tells the user of it.
pub async fn start(
    db: &DatabaseConnection,
    user_id: Uuid,
    token_hash: String,
    expires_at: DateTime<Utc>,
    sign_in: Option<&str>,
    device: Option<&str>,
) -> StoreResult<Uuid> {
    let txn = db.begin().await?;
    let id = Uuid::now_v7();
    // New: the user signed in before, from devices that are all different.
    let new_device = match device {
        Some(device) => {
            let signed_in_from = |same: bool| {
                let mut q = sessions::Entity::find()
                    .select_only()
                    .column(sessions::Column::Id)
                    .filter(sessions::Column::UserId.eq(user_id))
                    .filter(sessions::Column::Device.is_not_null());
                if same {
                    q = q.filter(sessions::Column::Device.eq(device));
                }
                q.into_tuple::<Uuid>().one(&txn)
            };
            signed_in_from(false).await?.is_some() && signed_in_from(true).await?.is_none()
        }
        None => false,
    };
    sessions::Entity::insert(sessions::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        created_at: Set(now()),
        revoked_at: Set(None),
        device: Set(device.map(str::to_owned)),
        new_device: Set(new_device),
    })
    .exec_without_returning(&txn)
    .await?;
    insert_token(&txn, user_id, id, token_hash, expires_at).await?;
    if let Some(method) = sign_in {
        let notice = domain::events::SecurityNotice::SignedIn {
            method: method.to_owned(),
        };
        super::events::append(&txn, user_id, domain::EventBody::SecurityNotice(notice)).await?;
    }
    txn.commit().await?;
    Ok(id)
}

/// Exchanges the token with `presented_hash` for the one with `next_hash`.
pub async fn rotate(
    db: &DatabaseConnection,
    presented_hash: &str,
    next_hash: String,
    next_expires_at: DateTime<Utc>,
) -> StoreResult<Rotation> {
    let txn = db.begin().await?;
    let Some(token) = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(presented_hash))
        .one(&txn)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    let Some(session) = sessions::Entity::find_by_id(token.family_id)
        .lock_exclusive()
        .one(&txn)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    // Re-read under the session lock: a racing rotation may have used it.
    let Some(token) = refresh_tokens::Entity::find_by_id(token.id)
        .one(&txn)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    let at = now();
    if session.revoked_at.is_some() {
        return Ok(Rotation::Reused {
            user_id: session.user_id,
        });
    }
    if token.used_at.is_some() || token.revoked_at.is_some() {
        revoke_in(&txn, session.id).await?;
        audit::record(
            &txn,
            AuditRecord {
                actor_id: Some(session.user_id),
                action: "auth.refresh_token_reused",
                subject_type: "session",
                subject_id: Some(session.id),
                details: json!({}),
            },
        )
        .await?;
        txn.commit().await?;
        return Ok(Rotation::Reused {
            user_id: session.user_id,
        });
    }
    if token.expires_at <= at {
        return Ok(Rotation::Invalid);
    }
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(Some(at)))
        .filter(refresh_tokens::Column::Id.eq(token.id))
        .exec(&txn)
        .await?;
    insert_token(
        &txn,
        session.user_id,
        session.id,
        next_hash,
        next_expires_at,
    )
    .await?;
    txn.commit().await?;
    Ok(Rotation::Rotated {
        user_id: session.user_id,
        family_id: session.id,
    })
}

pub(crate) async fn revoke_in(db: &impl ConnectionTrait, session_id: Uuid) -> StoreResult<()> {
    let at = now();
    // The session row first: it waits for a rotation in flight to commit,
    // so the token update below sees the token that rotation issued.
    sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(Some(at)))
        .filter(sessions::Column::Id.eq(session_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(Some(at)))
        .filter(refresh_tokens::Column::FamilyId.eq(session_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Revokes a session and every refresh token of it (logout).
pub async fn revoke(db: &DatabaseConnection, session_id: Uuid) -> StoreResult<()> {
    let txn = db.begin().await?;
    revoke_in(&txn, session_id).await?;
    txn.commit().await?;
    Ok(())
}

/// Revokes every live session of the user except `keep`; returns how many.
pub(crate) async fn revoke_others(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    keep: Uuid,
) -> StoreResult<usize> {
    let others = sessions::Entity::find()
        .filter(sessions::Column::UserId.eq(user_id))
        .filter(sessions::Column::RevokedAt.is_null())
        .filter(sessions::Column::Id.ne(keep))
        .all(db)
        .await?;
    for session in &others {
        revoke_in(db, session.id).await?;
    }
    Ok(others.len())
}

/// When a live session signed in, if it did so from a device the user had
/// never signed in from before (a risk signal).
pub async fn new_device_since(
    db: &impl ConnectionTrait,
    session_id: Uuid,
) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(sessions::Entity::find_by_id(session_id)
        .one(db)
        .await?
        .filter(|s| s.new_device)
        .map(|s| s.created_at))
}

/// When a live session started (its sign-in); `None` when revoked or unknown.
pub async fn started_at(
    db: &impl ConnectionTrait,
    session_id: Uuid,
) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(sessions::Entity::find_by_id(session_id)
        .one(db)
        .await?
        .filter(|s| s.revoked_at.is_none())
        .map(|s| s.created_at))
}

/// Which of `ids` are live sessions (not revoked, known), in one statement.
pub async fn live_among(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> StoreResult<std::collections::HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    let live: Vec<Uuid> = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .filter(sessions::Column::Id.is_in(ids.iter().copied()))
        .filter(sessions::Column::RevokedAt.is_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(live.into_iter().collect())
}
