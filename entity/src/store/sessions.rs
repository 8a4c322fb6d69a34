//! Refresh tokens: rotation within a family, and revocation of the whole
//! family when a used token is presented again.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use crate::entities::refresh_tokens;
use crate::store::audit::{self, AuditRecord};
use crate::store::{StoreResult, now};

/// The result of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now used and the new one is stored.
    Rotated {
        /// Owner.
        user_id: Uuid,
        /// The session family, unchanged.
        family_id: Uuid,
    },
    /// Unknown or expired token.
    Invalid,
    /// A token that was already used or revoked: the family is now revoked.
    Reused {
        /// Owner of the family.
        user_id: Uuid,
    },
}

/// Stores a new refresh token (by hash) for a family.
pub async fn issue(
    db: &impl sea_orm::ConnectionTrait,
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

/// Exchanges the token with `presented_hash` for the one with `next_hash`.
pub async fn rotate(
    db: &DatabaseConnection,
    presented_hash: &str,
    next_hash: String,
    next_expires_at: DateTime<Utc>,
) -> StoreResult<Rotation> {
    let txn = db.begin().await?;
    let Some(row) = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(presented_hash))
        .one(&txn)
        .await?
    else {
        return Ok(Rotation::Invalid);
    };
    let at = now();
    if row.used_at.is_some() || row.revoked_at.is_some() {
        revoke_family_in(&txn, row.family_id).await?;
        audit::record(
            &txn,
            AuditRecord {
                actor_id: Some(row.user_id),
                action: "auth.refresh_token_reused",
                subject_type: "session",
                subject_id: Some(row.family_id),
                details: json!({}),
            },
        )
        .await?;
        txn.commit().await?;
        return Ok(Rotation::Reused {
            user_id: row.user_id,
        });
    }
    if row.expires_at <= at {
        return Ok(Rotation::Invalid);
    }
    // Only one of two concurrent rotations of the same token can win.
    let claimed = refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::UsedAt,
            sea_orm::sea_query::Expr::value(Some(at)),
        )
        .filter(refresh_tokens::Column::Id.eq(row.id))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        revoke_family(db, row.family_id).await?;
        return Ok(Rotation::Reused {
            user_id: row.user_id,
        });
    }
    issue(&txn, row.user_id, row.family_id, next_hash, next_expires_at).await?;
    txn.commit().await?;
    Ok(Rotation::Rotated {
        user_id: row.user_id,
        family_id: row.family_id,
    })
}

async fn revoke_family_in(db: &impl sea_orm::ConnectionTrait, family_id: Uuid) -> StoreResult<()> {
    refresh_tokens::Entity::update_many()
        .col_expr(
            refresh_tokens::Column::RevokedAt,
            sea_orm::sea_query::Expr::value(Some(now())),
        )
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// Revokes every token of a session family (logout, reuse detection).
pub async fn revoke_family(db: &DatabaseConnection, family_id: Uuid) -> StoreResult<()> {
    revoke_family_in(db, family_id).await
}
