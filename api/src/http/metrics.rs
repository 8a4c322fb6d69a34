//! `GET /metrics`: Prometheus text exposition of the live parts (hub, relay,
//! WebSockets, outbox backlog, notifier queue and outcomes).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Renders the metrics.
pub async fn metrics(State(state): State<HttpState>) -> Response {
    let app = &state.app;
    let mut out = String::new();
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
