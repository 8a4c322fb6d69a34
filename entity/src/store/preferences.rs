//! What a user wants to be told on which channel, and the devices push
//! messages go to.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::notify::{Channel, NotificationKind, Preferences, PushPlatform, PushToken};
use domain::{DomainError, ErrorCode};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::entities::{notification_preferences, push_devices, users};
use crate::store::{StoreResult, inconsistent, now};

/// The user's choices (pairs without a row are on).
pub async fn load(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<Preferences> {
    Ok(load_many(db, &[user_id])
        .await?
        .remove(&user_id)
        .unwrap_or_default())
}

/// The choices of several users, in one query; users who switched nothing
/// off are absent.
pub async fn load_many(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Preferences>> {
    let rows = notification_preferences::Entity::find()
        .filter(notification_preferences::Column::UserId.is_in(user_ids.to_vec()))
        .filter(notification_preferences::Column::Enabled.eq(false))
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Preferences> = HashMap::new();
    for row in rows {
        let kind = NotificationKind::parse(&row.kind)
            .map_err(|_| inconsistent(format!("preference kind {}", row.kind)))?;
        let channel = Channel::parse(&row.channel)
            .map_err(|_| inconsistent(format!("preference channel {}", row.channel)))?;
        out.entry(row.user_id)
            .or_default()
            .off
            .push((kind, channel));
    }
    Ok(out)
}

/// Sets some (kind, channel) pairs on or off in one transaction; returns
/// the choices after. Pairs that cannot be switched off are refused.
pub async fn update(
    db: &DatabaseConnection,
    user_id: Uuid,
    changes: &[(NotificationKind, Channel, bool)],
) -> StoreResult<Preferences> {
    if let Some((kind, channel, _)) = changes
        .iter()
        .find(|(kind, channel, enabled)| !enabled && kind.is_locked_on(*channel))
    {
        return Err(DomainError::bad_input(format!(
            "{} notices always go by {}: they cannot be switched off",
            kind.as_str(),
            channel.as_str()
        ))
        .into());
    }
    let txn = db.begin().await?;
    let at = now();
    for (kind, channel, enabled) in changes {
        notification_preferences::Entity::insert(notification_preferences::ActiveModel {
            user_id: Set(user_id),
            kind: Set(kind.as_str().to_owned()),
            channel: Set(channel.as_str().to_owned()),
            enabled: Set(*enabled),
            updated_at: Set(at),
        })
        .on_conflict(
            OnConflict::columns([
                notification_preferences::Column::UserId,
                notification_preferences::Column::Kind,
                notification_preferences::Column::Channel,
            ])
            .update_columns([
                notification_preferences::Column::Enabled,
                notification_preferences::Column::UpdatedAt,
            ])
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    let prefs = load(&txn, user_id).await?;
    txn.commit().await?;
    Ok(prefs)
}

/// A registered push device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    /// Its id.
    pub id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The FCM registration token.
    pub token: String,
    /// Where it runs.
    pub platform: PushPlatform,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl TryFrom<push_devices::Model> for PushDevice {
    type Error = crate::StoreError;

    fn try_from(row: push_devices::Model) -> Result<Self, Self::Error> {
        Ok(Self {
            platform: PushPlatform::parse(&row.platform)
                .map_err(|_| inconsistent(format!("device {} platform", row.id)))?,
            id: row.id,
            user_id: row.user_id,
            token: row.token,
            created_at: row.created_at,
        })
    }
}

/// Registers a device for the user, at most `max_devices` each. A token
/// registered before stays one device: for the same user it is returned
/// (with the platform updated), from another user it moves (the app was
/// signed in to another account on that installation).
pub async fn register_device(
    db: &DatabaseConnection,
    user_id: Uuid,
    token: &PushToken,
    platform: PushPlatform,
    max_devices: u64,
) -> StoreResult<PushDevice> {
    let txn = db.begin().await?;
    // One registration at a time per user, so the cap holds under races.
    users::Entity::find_by_id(user_id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| DomainError::not_found("user"))?;
    let existing = push_devices::Entity::find()
        .filter(push_devices::Column::Token.eq(token.as_str()))
        .one(&txn)
        .await?;
    if let Some(row) = existing {
        if row.user_id == user_id {
            push_devices::Entity::update_many()
                .col_expr(
                    push_devices::Column::Platform,
                    Expr::value(platform.as_str()),
                )
                .filter(push_devices::Column::Id.eq(row.id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            return PushDevice::try_from(push_devices::Model {
                platform: platform.as_str().to_owned(),
                ..row
            });
        }
        push_devices::Entity::delete_by_id(row.id)
            .exec(&txn)
            .await?;
    }
    let count = push_devices::Entity::find()
        .filter(push_devices::Column::UserId.eq(user_id))
        .count(&txn)
        .await?;
    if count >= max_devices {
        return Err(DomainError::new(
            ErrorCode::LimitExceeded,
            format!("at most {max_devices} push devices per account: remove one first"),
        )
        .into());
    }
    let row = push_devices::Model {
        id: Uuid::now_v7(),
        user_id,
        token: token.as_str().to_owned(),
        platform: platform.as_str().to_owned(),
        created_at: now(),
    };
    push_devices::Entity::insert(push_devices::ActiveModel::from(row.clone()))
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    PushDevice::try_from(row)
}

/// Removes one of the user's devices; false when the user has no such one.
pub async fn remove_device(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> StoreResult<bool> {
    let res = push_devices::Entity::delete_many()
        .filter(push_devices::Column::Id.eq(id))
        .filter(push_devices::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Removes a device FCM no longer knows (`UNREGISTERED`).
pub async fn forget_device(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<()> {
    push_devices::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// The devices of several users, in one query, oldest first.
pub async fn devices_of(
    db: &impl ConnectionTrait,
    user_ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Vec<PushDevice>>> {
    let rows = push_devices::Entity::find()
        .filter(push_devices::Column::UserId.is_in(user_ids.to_vec()))
        .order_by_asc(push_devices::Column::CreatedAt)
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<PushDevice>> = HashMap::new();
    for row in rows {
        let device = PushDevice::try_from(row)?;
        out.entry(device.user_id).or_default().push(device);
    }
    Ok(out)
}

/// The user's devices, oldest first.
pub async fn devices(db: &impl ConnectionTrait, user_id: Uuid) -> StoreResult<Vec<PushDevice>> {
    push_devices::Entity::find()
        .filter(push_devices::Column::UserId.eq(user_id))
        .order_by_asc(push_devices::Column::CreatedAt)
        .limit(1_000)
        .all(db)
        .await?
        .into_iter()
        .map(PushDevice::try_from)
        .collect()
}

/// One device by id.
pub async fn device(db: &impl ConnectionTrait, id: Uuid) -> StoreResult<Option<PushDevice>> {
    push_devices::Entity::find_by_id(id)
        .one(db)
        .await?
        .map(PushDevice::try_from)
        .transpose()
}
