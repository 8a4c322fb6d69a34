//! A local OpenTelemetry collector for the tests: it accepts OTLP/HTTP
//! exports in JSON (`POST /v1/traces`, `application/json`, answered with an
//! empty `ExportTraceServiceResponse`) and keeps every span it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One exported span, flattened out of its resource and scope.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client, 4 producer.
    pub kind: i64,
    /// `service.name` of its resource.
    pub service: String,
    pub span: Value,
}

impl Span {
    /// A string attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)?["value"]["stringValue"]
            .as_str()
    }
}

/// A running collector.
pub struct Collector {
    pub addr: SocketAddr,
    /// Every request body, as received.
    pub bodies: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = bodies.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: String| async move {
                let json = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if !json || serde_json::from_str::<Value>(&body).is_err() {
                    return (StatusCode::BAD_REQUEST, Json(json!({})));
                }
                kept.lock().expect("bodies").push(body);
                (StatusCode::OK, Json(json!({})))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("collector address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Collector { addr, bodies }
    }

    /// The base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let bodies = self.bodies.lock().expect("bodies").clone();
        let mut out = Vec::new();
        for body in bodies {
            let v: Value = serde_json::from_str(&body).expect("json export");
            for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                        out.push(Span {
                            trace_id: text("traceId"),
                            span_id: text("spanId"),
                            parent_span_id: text("parentSpanId"),
                            name: text("name"),
                            kind: s["kind"].as_i64().unwrap_or_default(),
                            service: service.clone(),
                            span: s.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Waits until a span satisfies `pred`, up to `within`.
    pub async fn wait_for(&self, within: Duration, pred: impl Fn(&Span) -> bool) -> Span {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.spans().into_iter().find(|s| pred(s)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no such span within {within:?}; got: {:#?}",
                self.spans()
                    .iter()
                    .map(|s| (&s.name, &s.trace_id, &s.parent_span_id))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
