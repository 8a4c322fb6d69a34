//! Logs and traces. Logs go to stdout as text or JSON, filtered by
//! `RUST_LOG`. Traces, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, go to an
//! OpenTelemetry collector over OTLP/HTTP: one server span per GraphQL
//! operation (`graphql.operation.type`, `graphql.operation.name`, never its
//! variables: they hold personal data), continuing the caller's
//! `traceparent`, with child spans for the database transaction of a money
//! command and for Redis; the outbox carries the trace on to the relay's
//! publication and the notifier's deliveries (see `entity::trace`).

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::config::LogFormat;
use crate::config::traces::{OtlpProtocol, TraceSettings};

/// The crates whose spans are exported (not those of sqlx, hyper, ...).
const TRACED_CRATES: [&str; 5] = ["api", "entity", "notifier", "subscriptions", "wallet_bff"];

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] sends what is
/// left.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The batch exporter's thread waits on sends run by this runtime.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "flushing traces at shutdown failed"),
            Err(err) => tracing::warn!(error = %err, "the trace exporter's shutdown panicked"),
        }
    }
}

/// Installs the log output and, when configured, the trace exporter; call
/// it once, inside the Tokio runtime.
pub fn init(format: LogFormat, traces: Option<&TraceSettings>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let logs = match format {
        LogFormat::Json => fmt::layer().json().boxed(),
        LogFormat::Text => fmt::layer().boxed(),
    }
    .with_filter(filter);
    let provider = traces.map(exporter).transpose()?;
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("wallet-bff"))
            .with_filter(filter_fn(|meta| {
                meta.is_span()
                    && TRACED_CRATES
                        .iter()
                        .any(|c| meta.target().split("::").next() == Some(c))
            }))
    });
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    Ok(Telemetry { provider })
}

fn exporter(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the OTLP HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(settings.traces_url.as_str())
        .with_protocol(match settings.protocol {
            OtlpProtocol::Protobuf => Protocol::HttpBinary,
            OtlpProtocol::Json => Protocol::HttpJson,
        })
        .with_http_client(OnRuntime {
            client,
            runtime: tokio::runtime::Handle::current(),
        })
        .build()
        .context("building the OTLP span exporter")?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: the batch exporter runs on a thread of its
/// own, so each send runs on the server's Tokio runtime with its reqwest
/// client (and TLS stack) and the thread waits for the answer.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let answer = client.execute(request).await?;
                let status = answer.status();
                let headers = answer.headers().clone();
                let body = answer.bytes().await?;
                let mut response = opentelemetry_http::Response::builder()
                    .status(status)
                    .body(body)?;
                *response.headers_mut() = headers;
                Ok(response)
            })
            .await?
    }
}

/// The server span of one GraphQL operation, or of a batch of them, named
/// `name` until the document is parsed: then it is renamed after the
/// operation and gets the `graphql.operation.*` attributes (see
/// `graphql::measure`).
pub fn operation_span(name: &'static str) -> tracing::Span {
    tracing::info_span!(
        "graphql.operation",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
    )
}
