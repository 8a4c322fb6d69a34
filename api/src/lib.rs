//! The wallet-bff server: GraphQL over HTTP on axum, authentication and the
//! command line. The only crate that knows axum and async-graphql.
//!
//! # Layout
//! - [`config`]: [`config::Settings::from_env`], every variable with its default.
//! - [`state`]: the [`state::AppState`] shared by requests.
//! - [`auth`]: passwords, access and refresh tokens, the request's viewer.
//! - [`graphql`]: the schema, one module per area; GraphQL types are not rows.
//! - [`http`]: GraphQL over HTTP, GraphiQL, health and readiness.
//! - [`error`]: the error policy (codes for refusals, masking for the rest).
//! - [`limits`]: rate limits (Redis, or in process on the embedded default).
//! - [`observe`] and [`telemetry`]: metrics, logs and OpenTelemetry traces.
//!
//! The caller owns the listener and the shutdown signal: [`serve`] runs until
//! the signal resolves, then finishes in-flight requests.

pub mod auth;
pub mod config;
pub mod error;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod observe;
pub mod providers;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::state::AppState;

/// Opens the database named by the settings (creating the embedded data
/// directory) and applies pending migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    if settings.embedded {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    }
    let db =
        entity::store::connect::connect(&settings.database_url, settings.database_max_connections)
            .await
            .context("connecting to the database")?;
    migrate(&db, settings).await?;
    Ok(db)
}

/// The PostgreSQL advisory lock instances take to migrate one at a time.
const MIGRATION_LOCK: i64 = 0x7761_6c6c_6574; // "wallet"

/// Applies pending migrations. On PostgreSQL, under a session advisory lock
/// held on a connection of its own: when several instances start at once,
/// one migrates and the others wait, then find nothing left to do.
async fn migrate(db: &DatabaseConnection, settings: &Settings) -> anyhow::Result<()> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return migration::Migrator::up(db, None)
            .await
            .context("applying database migrations");
    }
    let lock = entity::store::connect::connect(&settings.database_url, 1)
        .await
        .context("connecting to take the migration lock")?;
    lock.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await
        .context("taking the migration lock")?;
    let migrated = migration::Migrator::up(db, None)
        .await
        .context("applying database migrations");
    // Closing the lock's connection releases it even if the unlock fails.
    if let Err(err) = lock
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await
    {
        tracing::warn!(error = %err, "releasing the migration lock failed; closing its connection releases it");
    }
    let _ = lock.close().await;
    migrated
}

/// Opens the event bus: Redis when `REDIS_URL` is set, else in-process.
pub async fn open_bus(settings: &Settings) -> anyhow::Result<subscriptions::Bus> {
    let hub = subscriptions::Hub::new(settings.subscription_buffer);
    match &settings.redis_url {
        Some(url) => {
            let bus =
                subscriptions::redis_bus::RedisBus::connect(url, hub, Duration::from_secs(10))
                    .await
                    .context("connecting the event bus to Redis")?;
            Ok(subscriptions::Bus::Redis(bus))
        }
        None => {
            tracing::info!(
                "no REDIS_URL: events go through the in-process bus (one instance only)"
            );
            Ok(subscriptions::Bus::InProcess(hub))
        }
    }
}

/// Builds the application state: database (migrated), event bus and keys.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    let db = open_database(&settings).await?;
    let bus = open_bus(&settings).await?;
    let secret = settings.resolve_jwt_secret()?;
    let pii = settings.resolve_pii_keys()?;
    let redis = match &settings.redis_url {
        Some(url) => Some(limits::connect_redis(url).await?),
        None => None,
    };
    auth::passwords::warm_up();
    AppState::new(settings, db, bus, &secret, pii, redis)
}

/// The full router with limits and tracing.
pub fn build_router(state: AppState) -> Router {
    let schema = graphql::build_schema(state.clone());
    let body_limit = state.settings.body_limit_bytes;
    // Queries and mutations answer their own time limit with a coded
    // GraphQL error (`graphql::time_limit`); this layer is the backstop for
    // whatever else a request waits on.
    let timeout = Duration::from_secs(state.settings.request_timeout_secs + 2);
    let pipeline = std::sync::Arc::new(graphql::pipeline::Pipeline::new(&state));
    http::routes(http::HttpState {
        schema,
        pipeline,
        app: state,
    })
    .layer(DefaultBodyLimit::max(body_limit))
    .layer(TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        timeout,
    ))
    .layer(TraceLayer::new_for_http())
}

/// Serves on `listener` until `shutdown` resolves, then completes the
/// subscription streams, drains requests, stops the relay after its batch
/// and the delivery workers after the delivery in hand. Also runs the outbox
/// relay (unless disabled), the delivery workers (unless `NOTIFY_WORKERS=0`)
/// and the purge of expired idempotency keys and authentication flows.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(purge_expired(state.db.clone(), cancel.clone()));
    if let Some(client) = state.payments.clone() {
        tasks.spawn(submit_payouts(state.db.clone(), client, cancel.clone()));
    }
    tasks.spawn(prune_outbox(
        state.db.clone(),
        Duration::from_secs(state.settings.outbox_retention_secs),
        Duration::from_secs(state.settings.outbox_prune_interval_secs),
        cancel.clone(),
    ));
    tasks.spawn(http::session_watch::run(
        state.live.sessions.clone(),
        state.db.clone(),
        Duration::from_secs(state.settings.ws_keepalive_secs.max(1)),
        cancel.clone(),
    ));
    tasks.close();
    let notify = &state.settings.notify;
    let (channels, planner) = notification_channels(&state)?;
    let deliverer = (notify.workers > 0).then(|| {
        notifier::Deliverer::start(
            state.db.clone(),
            channels,
            notifier::DeliveryConfig {
                workers: notify.workers,
                batch: notify.batch,
                lease: notify.lease,
                poll_interval: notify.poll_interval,
                retry: notify.retry,
            },
            cancel.child_token(),
        )
    });
    if let Some(d) = &deliverer {
        let _ = state.live.deliveries.set(d.stats.clone());
    }
    let relay = state.settings.outbox_relay_enabled.then(|| {
        let listen_url = (state.db.get_database_backend() == sea_orm::DatabaseBackend::Postgres)
            .then(|| state.settings.database_url.clone());
        let relay = notifier::Relay::start(
            state.db.clone(),
            state.bus.clone(),
            notifier::RelayConfig {
                poll_interval: Duration::from_millis(state.settings.outbox_poll_interval_ms),
                gather: Duration::from_millis(state.settings.outbox_gather_ms),
                batch_size: 500,
                listen_url,
                planner,
                wake_deliveries: deliverer.as_ref().map(|d| d.wake.clone()),
                hand_off: deliverer.as_ref().and_then(|d| d.hand_off.clone()),
            },
            cancel.child_token(),
        );
        let _ = state.live.relay.set(relay.stats.clone());
        relay
    });
    if let Some(addr) = state.settings.metrics_bind_addr {
        let metrics_listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding METRICS_BIND_ADDR {addr}"))?;
        tracing::info!(%addr, "serving /metrics on its own address");
        let routes = http::metrics_routes(state.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics_listener, routes)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "the metrics listener failed");
            }
        });
    } else if state.settings.app_env == config::AppEnv::Production
        && state.settings.metrics_token.is_none()
    {
        tracing::info!("no METRICS_BIND_ADDR or METRICS_TOKEN: /metrics is not served");
    }
    let live = state.live.clone();
    let live_for_signal = state.live.clone();
    let bus = state.bus.clone();
    let router = build_router(state);
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Subscription streams complete and WebSockets close before the
        // HTTP connections drain. `send_replace` keeps the value even
        // when nothing listens yet, so late sockets see it too.
        live_for_signal.shutdown.send_replace(true);
    })
    .await
    .context("serving HTTP");
    // Upgraded WebSockets are not tracked by axum: wait for them to finish
    // their `complete` messages and close frames.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let closed = live.ws_closed.notified();
        if live
            .ws_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 0
        {
            break;
        }
        if tokio::time::timeout_at(deadline, closed).await.is_err() {
            tracing::warn!("WebSocket connections still open at shutdown deadline");
            break;
        }
    }
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    if let Some(deliverer) = deliverer {
        deliverer.shutdown().await;
    }
    cancel.cancel();
    tasks.wait().await;
    if let subscriptions::Bus::Redis(redis) = &bus {
        redis.shutdown();
    }
    result
}

/// The channels this instance delivers on, and the planner for them: in-app
/// always, e-mail when `SMTP_URL` is set, push when
/// `FCM_SERVICE_ACCOUNT_FILE` is (each said once in the log otherwise).
fn notification_channels(
    state: &AppState,
) -> anyhow::Result<(Vec<Arc<dyn notifier::channels::Channel>>, notifier::Planner)> {
    use domain::notify::Channel;
    let mut channels: Vec<Arc<dyn notifier::channels::Channel>> = vec![Arc::new(
        notifier::channels::in_app::InApp::new(state.db.clone()),
    )];
    let mut enabled = vec![Channel::InApp];
    match &state.settings.notify.smtp {
        Some(smtp) => {
            channels.push(Arc::new(
                notifier::channels::email::Email::new(smtp).context("SMTP_URL")?,
            ));
            enabled.push(Channel::Email);
        }
        None => tracing::info!("no SMTP_URL: e-mail notifications are off"),
    }
    match &state.settings.notify.fcm {
        Some(fcm) => {
            channels.push(Arc::new(
                notifier::channels::push::Push::new(state.db.clone(), fcm)
                    .context("FCM_SERVICE_ACCOUNT_FILE")?,
            ));
            enabled.push(Channel::Push);
        }
        None => tracing::info!("no FCM_SERVICE_ACCOUNT_FILE: push notifications are off"),
    }
    Ok((channels, notifier::Planner::new(enabled)))
}

/// Deletes published events older than the retention, in batches of 1000,
/// every `every`; their deliveries must all have gone out.
async fn prune_outbox(
    db: DatabaseConnection,
    retention: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let cutoff = entity::store::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        loop {
            if stop.is_cancelled() {
                return;
            }
            match entity::store::events::prune(&db, cutoff, 1_000).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(pruned = n, "pruned published outbox events"),
                Err(err) => {
                    tracing::warn!(error = %err, "pruning outbox events failed");
                    break;
                }
            }
        }
    }
}

/// Submits pending refunds and the payouts of pending card-currency
/// withdrawals, every second.
/// The provider's idempotency key is the withdrawal, so instances racing on
/// one withdrawal make one payout; a failed submission is tried again on the
/// next round. The hold stays until the provider's webhook settles it.
async fn submit_payouts(
    db: DatabaseConnection,
    client: std::sync::Arc<providers::payments::PaymentsClient>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        submit_refunds(&db, &client).await;
        let due = match entity::store::payouts::due(&db, 20).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "listing withdrawals to pay out failed");
                continue;
            }
        };
        for w in due {
            let Ok(minor) = domain::payments::to_minor_units(w.amount, w.currency) else {
                continue;
            };
            match client
                .create_payout(w.transaction_id, minor, w.currency, &w.destination)
                .await
            {
                Ok(payout) => {
                    if let Err(err) =
                        entity::store::payouts::record(&db, w.transaction_id, &payout.id).await
                    {
                        tracing::warn!(error = %err, tx.id = %w.transaction_id, "recording a payout failed; it is submitted again (same payout)");
                    } else {
                        tracing::info!(tx.id = %w.transaction_id, "payout submitted");
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, tx.id = %w.transaction_id, "payout submission failed; retrying");
                }
            }
        }
    }
}

/// Sends pending refunds to the provider: its idempotency key is the
/// refund's id, so a refund sent again after a lost answer is the same one.
async fn submit_refunds(db: &DatabaseConnection, client: &providers::payments::PaymentsClient) {
    let due = match entity::store::reversals::due(db, 20).await {
        Ok(due) => due,
        Err(err) => {
            tracing::warn!(error = %err, "listing refunds to submit failed");
            return;
        }
    };
    for r in due {
        let Ok(minor) = domain::payments::to_minor_units(r.amount, r.currency) else {
            continue;
        };
        match client
            .create_refund(r.transaction_id, &r.intent_provider_id, minor)
            .await
        {
            Ok(refund) => {
                match entity::store::reversals::record_submitted(db, r.transaction_id, &refund.id)
                    .await
                {
                    Ok(()) => tracing::info!(tx.id = %r.transaction_id, "refund submitted"),
                    Err(err) => {
                        tracing::warn!(error = %err, tx.id = %r.transaction_id, "recording a refund failed; it is submitted again (same refund)");
                    }
                }
            }
            // A definite no (the intent cannot be refunded so): the hold returns.
            Err(err @ providers::ProviderError::Refused { .. }) => {
                tracing::warn!(error = %err, tx.id = %r.transaction_id, "the provider refused a refund; it fails and its hold is released");
                if let Err(e) = entity::store::reversals::refused(db, r.transaction_id).await {
                    tracing::error!(error = %e, tx.id = %r.transaction_id, "failing a refused refund failed; it is submitted again");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, tx.id = %r.transaction_id, "refund submission failed; retrying");
            }
        }
    }
}

async fn purge_expired(db: DatabaseConnection, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        loop {
            match entity::store::idempotency::purge_expired(&db, 1_000).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(purged = n, "purged expired idempotency keys"),
                Err(err) => {
                    tracing::warn!(error = %err, "purging idempotency keys failed");
                    break;
                }
            }
        }
        if let Err(err) = entity::store::security::purge_expired_flows(&db, 10_000).await {
            tracing::warn!(error = %err, "purging expired authentication flows failed");
        }
        if let Err(err) = entity::store::limits::prune_usage(&db).await {
            tracing::warn!(error = %err, "pruning tier-limit usage buckets failed");
        }
    }
}
