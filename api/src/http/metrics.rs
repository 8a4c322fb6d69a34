//! `GET /metrics`: Prometheus text exposition of GraphQL operations (by type
//! and name, durations, errors by code), rate-limit refusals, the database
//! pool and the live parts (hub, relay, WebSockets, outbox backlog, notifier
//! queue and outcomes).
//!
//! On the main address it needs `METRICS_TOKEN` as a bearer token when one
//! is set, and in production it is not served there without one; a
//! `METRICS_BIND_ADDR` listener serves it to the scraper's network alone.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use sha2::Digest;

use super::HttpState;

/// Connections of the database pool: in use, idle and the most it opens.
/// (The pool does not report how many requests wait for a connection; in
/// use at the maximum is the sign of waiting.)
fn pool(out: &mut String, db: &sea_orm::DatabaseConnection) {
    let (size, idle, max) = match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let p = db.get_postgres_connection_pool();
            (p.size(), p.num_idle(), p.options().get_max_connections())
        }
        sea_orm::DatabaseBackend::Sqlite => {
            let p = db.get_sqlite_connection_pool();
            (p.size(), p.num_idle(), p.options().get_max_connections())
        }
        _ => return,
    };
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    let _ = writeln!(
        out,
        "# HELP wallet_bff_db_pool_connections Database connections by state.\n# TYPE wallet_bff_db_pool_connections gauge\nwallet_bff_db_pool_connections{{state=\"in_use\"}} {}\nwallet_bff_db_pool_connections{{state=\"idle\"}} {idle}",
        size.saturating_sub(idle)
    );
    metric(
        out,
        "wallet_bff_db_pool_max_connections",
        "gauge",
        "The most connections the pool opens (DATABASE_MAX_CONNECTIONS).",
        max,
    );
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// `/metrics` on the main address: checks the token, then renders.
pub async fn guarded(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let settings = &state.app.settings;
    match &settings.metrics_token {
        Some(token) => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            // Digests compare in time independent of where the two differ.
            let digest = |t: &str| sha2::Sha256::digest(t.as_bytes());
            if digest(presented) != digest(token) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    "metrics need the METRICS_TOKEN bearer token\n",
                )
                    .into_response();
            }
        }
        None if settings.app_env == crate::config::AppEnv::Production => {
            return (StatusCode::NOT_FOUND, "not found\n").into_response();
        }
        None => {}
    }
    render(&state.app).await
}

/// `/metrics` on the `METRICS_BIND_ADDR` listener: open to its network.
pub async fn open(State(app): State<crate::state::AppState>) -> Response {
    render(&app).await
}

/// Renders the metrics.
async fn render(app: &crate::state::AppState) -> Response {
    let mut out = String::new();
    app.metrics.render(&mut out);
    pool(&mut out, &app.db);
    let hub = app.bus.hub().stats();
    metric(
        &mut out,
        "wallet_bff_ws_connections",
        "gauge",
        "Open GraphQL WebSocket connections.",
        app.live.ws_connections.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "wallet_bff_subscriptions",
        "gauge",
        "Live event subscriptions on this instance.",
        hub.subscriptions,
    );
    metric(
        &mut out,
        "wallet_bff_subscriptions_dropped_for_lag_total",
        "counter",
        "Subscriptions ended because they fell behind their buffer.",
        hub.dropped_for_lag,
    );
    metric(
        &mut out,
        "wallet_bff_events_dispatched_total",
        "counter",
        "Events dispatched to local subscribers.",
        hub.dispatched,
    );
    let bus_up = match &app.bus {
        subscriptions::Bus::InProcess(_) => true,
        subscriptions::Bus::Redis(r) => r.is_connected(),
    };
    metric(
        &mut out,
        "wallet_bff_bus_connected",
        "gauge",
        "1 when the event bus subscriber is connected.",
        u8::from(bus_up),
    );
    if let Some(relay) = app.live.relay.get() {
        metric(
            &mut out,
            "wallet_bff_outbox_published_total",
            "counter",
            "Outbox events published by this instance's relay.",
            relay.published.load(Ordering::Relaxed),
        );
        metric(
            &mut out,
            "wallet_bff_outbox_relay_failures_total",
            "counter",
            "Failed relay rounds.",
            relay.failures.load(Ordering::Relaxed),
        );
        metric(
            &mut out,
            "wallet_bff_outbox_relay_healthy",
            "gauge",
            "1 when the last relay round succeeded.",
            u8::from(relay.healthy.load(Ordering::Relaxed)),
        );
    }
    match entity::store::events::backlog(&app.db).await {
        Ok((pending, age)) => {
            metric(
                &mut out,
                "wallet_bff_outbox_pending",
                "gauge",
                "Committed events not yet published.",
                pending,
            );
            metric(
                &mut out,
                "wallet_bff_outbox_oldest_pending_age_seconds",
                "gauge",
                "Age of the oldest unpublished event (outbox lag).",
                age,
            );
        }
        Err(err) => tracing::warn!(error = %err, "metrics: reading the outbox backlog failed"),
    }
    if let Some(d) = app.live.deliveries.get() {
        for (name, help, value) in [
            (
                "wallet_bff_notify_sent_total",
                "Deliveries the channels accepted (this instance).",
                &d.sent,
            ),
            (
                "wallet_bff_notify_retried_total",
                "Failed delivery attempts that will be retried (this instance).",
                &d.retried,
            ),
            (
                "wallet_bff_notify_dead_total",
                "Deliveries that became dead letters (this instance).",
                &d.dead,
            ),
            (
                "wallet_bff_notify_handed_over_total",
                "In-app deliveries the relay handed to this instance's workers as it planned them, without a claim.",
                &d.handed,
            ),
        ] {
            metric(
                &mut out,
                name,
                "counter",
                help,
                value.load(Ordering::Relaxed),
            );
        }
    }
    match entity::store::deliveries::backlog(&app.db).await {
        Ok((queued, dead)) => {
            metric(
                &mut out,
                "wallet_bff_notify_queue_depth",
                "gauge",
                "Deliveries waiting to be sent (pending, failed, sending), all instances.",
                queued,
            );
            metric(
                &mut out,
                "wallet_bff_notify_dead_letters",
                "gauge",
                "Dead letters waiting for an admin's retryDelivery.",
                dead,
            );
        }
        Err(err) => tracing::warn!(error = %err, "metrics: reading the delivery backlog failed"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}
