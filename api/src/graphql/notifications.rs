//! In-app notifications: list, mark read, and the `Notification` type shared
//! with the `notificationCreated` subscription.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use domain::{DomainError, Role};
use entity::store::deliveries::{self, DeliveryRecord};
use entity::store::notifications::{self, NotificationRecord};

use super::{PageRequest, parse_id, parts};
use crate::error::{ApiError, Result};

/// An in-app notification.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(complex)]
pub struct Notification {
    /// The notification's id (give it to `markNotificationsRead`).
    pub id: ID,
    /// Sequence of its `notification.created` event (per user, increasing).
    pub sequence: i64,
    /// What it is about, e.g. `transfer.received`, `withdrawal.settled`, `kyc.status`.
    pub kind: String,
    /// Short title.
    pub title: String,
    /// Text shown to the user.
    pub body: String,
    /// Ids the app can link to (e.g. `transactionId`).
    pub data: Json<serde_json::Value>,
    /// Whether the user has read it.
    pub read: bool,
    /// When it was read.
    pub read_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub source_event_id: Option<uuid::Uuid>,
}

#[ComplexObject]
impl Notification {
    /// How the event it announces reached the user, per channel and target:
    /// pending, sending, sent, failed (will retry) or dead. Empty for
    /// notifications older than the notifier.
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<Delivery>> {
        let Some(event_id) = self.source_event_id else {
            return Ok(Vec::new());
        };
        let loader = ctx.data::<DataLoader<DeliveryLoader>>()?;
        let list = loader
            .load_one(event_id)
            .await
            .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("loading deliveries")))?;
        Ok(list
            .unwrap_or_default()
            .into_iter()
            .map(Delivery::from)
            .collect())
    }
}

/// Loads the deliveries of a page of notifications in one query.
pub struct DeliveryLoader(pub sea_orm::DatabaseConnection);

impl Loader<uuid::Uuid> for DeliveryLoader {
    type Value = Vec<DeliveryRecord>;
    type Error = std::sync::Arc<entity::StoreError>;

    async fn load(
        &self,
        keys: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, Self::Value>, Self::Error> {
        deliveries::for_events(&self.0, keys)
            .await
            .map_err(std::sync::Arc::new)
    }
}

/// How a notification reaches a person.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::notify::Channel")]
pub enum NotificationChannel {
    /// In the app: the notification list and `notificationCreated`.
    InApp,
    /// E-mail.
    Email,
    /// Push message to a registered device.
    Push,
}

/// Where a delivery is in its life.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::notify::DeliveryStatus")]
pub enum DeliveryStatus {
    /// Planned, not tried yet.
    Pending,
    /// Being sent now.
    Sending,
    /// The channel accepted it.
    Sent,
    /// The last attempt failed; it is tried again at `nextAttemptAt`.
    Failed,
    /// Every attempt failed: a dead letter, sent again only by `retryDelivery`.
    Dead,
    /// Its target is gone (the push device was removed or unregistered).
    Cancelled,
}

/// What notifications are about: what preferences are set for.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::notify::NotificationKind")]
pub enum NotificationKind {
    /// Money arrived from another user.
    TransferReceived,
    /// A transfer left the user's wallet.
    TransferSent,
    /// A withdrawal was paid out or failed.
    WithdrawalSettled,
    /// The KYC status changed.
    KycStatus,
    /// A sign-in, a new or removed security key, a password change. Always
    /// sent by e-mail.
    Security,
    /// A movement held for review, released, rejected, reversed or refunded.
    TransactionUpdate,
    /// A payment request made to the user, or an answer to one of theirs.
    PaymentRequest,
}

/// Where a push device runs.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::notify::PushPlatform")]
pub enum PushPlatform {
    /// iPhone or iPad.
    Ios,
    /// Android.
    Android,
    /// A web app (Web Push).
    Web,
}

/// Whether one kind of notification goes out on one channel.
#[derive(SimpleObject, Debug, Clone)]
pub struct NotificationPreference {
    /// What the notifications are about.
    pub kind: NotificationKind,
    /// The channel.
    pub channel: NotificationChannel,
    /// Whether they go out on it.
    pub enabled: bool,
    /// True where it cannot be switched off (security notices by e-mail).
    pub locked: bool,
}

/// One change of `updateNotificationPreferences`.
#[derive(async_graphql::InputObject, Debug, Clone)]
pub struct NotificationPreferenceInput {
    /// What the notifications are about.
    pub kind: NotificationKind,
    /// The channel.
    pub channel: NotificationChannel,
    /// On or off.
    pub enabled: bool,
}

/// A device push messages go to.
#[derive(SimpleObject, Debug, Clone)]
pub struct PushDevice {
    /// The device's id (give it to `removePushDevice`).
    pub id: ID,
    /// Where it runs.
    pub platform: PushPlatform,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

impl From<entity::store::preferences::PushDevice> for PushDevice {
    fn from(d: entity::store::preferences::PushDevice) -> Self {
        Self {
            id: ID(d.id.to_string()),
            platform: d.platform.into(),
            created_at: d.created_at,
        }
    }
}

/// Every (kind, channel) pair with the user's choice.
fn preference_matrix(prefs: &domain::notify::Preferences) -> Vec<NotificationPreference> {
    use domain::notify::{Channel, NotificationKind as Kind};
    Kind::ALL
        .iter()
        .flat_map(|kind| {
            Channel::ALL
                .iter()
                .map(move |channel| NotificationPreference {
                    kind: (*kind).into(),
                    channel: (*channel).into(),
                    enabled: prefs.allows(*kind, *channel),
                    locked: kind.is_locked_on(*channel),
                })
        })
        .collect()
}

/// One message of one event on one channel.
#[derive(SimpleObject, Debug, Clone)]
pub struct Delivery {
    /// The delivery's id (an e-mail's `Message-ID` carries it).
    pub id: ID,
    /// The event it delivers.
    pub event_id: ID,
    /// How it travels.
    pub channel: NotificationChannel,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it is tried (again), while pending or failed.
    pub next_attempt_at: DateTime<Utc>,
    /// When the channel accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRecord> for Delivery {
    fn from(d: DeliveryRecord) -> Self {
        Self {
            id: ID(d.id.to_string()),
            event_id: ID(d.event_id.to_string()),
            channel: d.channel.into(),
            status: d.status.into(),
            attempts: i32::try_from(d.attempts).unwrap_or(i32::MAX),
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            sent_at: d.sent_at,
            created_at: d.created_at,
        }
    }
}

impl From<NotificationRecord> for Notification {
    fn from(n: NotificationRecord) -> Self {
        Self {
            id: ID(n.id.to_string()),
            sequence: n.sequence,
            kind: n.kind,
            title: n.title,
            body: n.body,
            data: Json(n.data),
            read: n.read_at.is_some(),
            read_at: n.read_at,
            created_at: n.created_at,
            source_event_id: n.source_event_id,
        }
    }
}

/// Notification queries.
#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// The caller's notifications, newest first (Relay connection).
    #[graphql(complexity = "super::page_complexity(first, child_complexity)")]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        unread_only: Option<bool>,
    ) -> Result<Connection<String, Notification, EmptyFields, EmptyFields>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let (items, has_next) = notifications::list(
            &state.db,
            user.id,
            unread_only.unwrap_or(false),
            page.after,
            page.limit,
        )
        .await?;
        Ok(page.connection(
            items,
            has_next,
            |n| (n.created_at, n.id),
            Notification::from,
        ))
    }

    /// Which notifications the caller gets on which channel: every kind and
    /// channel, on unless switched off.
    async fn notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<NotificationPreference>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let prefs = entity::store::preferences::load(&state.db, user.id).await?;
        Ok(preference_matrix(&prefs))
    }

    /// The caller's push devices, oldest first.
    async fn push_devices(&self, ctx: &Context<'_>) -> Result<Vec<PushDevice>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let list = entity::store::preferences::devices(&state.db, user.id).await?;
        Ok(list.into_iter().map(PushDevice::from).collect())
    }

    /// Deliveries that failed every attempt, newest first (admin role).
    /// `retryDelivery` sends one again.
    #[graphql(complexity = "super::page_complexity(first, child_complexity)")]
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Delivery, EmptyFields, EmptyFields>> {
        let (state, viewer) = parts(ctx)?;
        viewer.require_role(Role::Admin)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let (items, has_next) = deliveries::dead_letters(&state.db, page.after, page.limit).await?;
        Ok(page.connection(items, has_next, |d| (d.created_at, d.id), Delivery::from))
    }
}

/// Notification mutations.
#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Marks the caller's notifications read; returns how many changed.
    async fn mark_notifications_read(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<i32> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        if ids.len() > 500 {
            return Err(ApiError::from(DomainError::bad_input(
                "at most 500 ids at once",
            )));
        }
        let ids = ids
            .iter()
            .map(|id| parse_id(id, "ids"))
            .collect::<Result<Vec<_>, _>>()?;
        let changed = notifications::mark_read(&state.db, user.id, &ids).await?;
        Ok(i32::try_from(changed).unwrap_or(i32::MAX))
    }

    /// Switches kinds of notifications on or off per channel (at most one
    /// change per pair, 15 at once); returns every preference after. Security
    /// notices by e-mail cannot be switched off (`BAD_USER_INPUT`).
    async fn update_notification_preferences(
        &self,
        ctx: &Context<'_>,
        input: Vec<NotificationPreferenceInput>,
    ) -> Result<Vec<NotificationPreference>> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let max = domain::notify::NotificationKind::ALL.len() * domain::notify::Channel::ALL.len();
        if input.is_empty() || input.len() > max {
            return Err(ApiError::from(DomainError::bad_input(format!(
                "give between 1 and {max} preferences"
            ))));
        }
        let mut changes: Vec<(
            domain::notify::NotificationKind,
            domain::notify::Channel,
            bool,
        )> = Vec::with_capacity(input.len());
        for p in input {
            let (kind, channel) = (p.kind.into(), p.channel.into());
            if changes.iter().any(|(k, c, _)| (*k, *c) == (kind, channel)) {
                return Err(ApiError::from(DomainError::bad_input(format!(
                    "{} on {} is given twice",
                    kind.as_str(),
                    channel.as_str()
                ))));
            }
            changes.push((kind, channel, p.enabled));
        }
        let prefs = entity::store::preferences::update(&state.db, user.id, &changes).await?;
        Ok(preference_matrix(&prefs))
    }

    /// Registers the app installation's FCM registration token for push
    /// messages (at most `PUSH_MAX_DEVICES` per account, `LIMIT_EXCEEDED`
    /// beyond). Registering a known token again returns its device.
    async fn register_push_device(
        &self,
        ctx: &Context<'_>,
        token: String,
        platform: PushPlatform,
    ) -> Result<PushDevice> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let token = domain::notify::PushToken::parse(&token)?;
        let device = entity::store::preferences::register_device(
            &state.db,
            user.id,
            &token,
            platform.into(),
            state.settings.notify.max_push_devices,
        )
        .await?;
        Ok(device.into())
    }

    /// Removes one of the caller's push devices (`NOT_FOUND` for others').
    async fn remove_push_device(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let (state, viewer) = parts(ctx)?;
        let user = viewer.require_user()?;
        let id = parse_id(&id, "id")?;
        let removed = entity::store::preferences::remove_device(&state.db, user.id, id).await?;
        if !removed {
            return Err(ApiError::from(DomainError::not_found("push device")));
        }
        Ok(true)
    }

    /// Sends a dead letter again, with a fresh set of attempts (admin role).
    /// Only a delivery that is `DEAD` can be retried (`NOT_FOUND` otherwise).
    async fn retry_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        let (state, viewer) = parts(ctx)?;
        let admin = viewer.require_role(Role::Admin)?;
        let id = parse_id(&id, "id")?;
        let delivery = deliveries::retry_dead(&state.db, admin.id, id)
            .await?
            .ok_or_else(|| ApiError::from(DomainError::not_found("dead letter")))?;
        Ok(delivery.into())
    }
}
