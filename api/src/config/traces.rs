//! OpenTelemetry traces over OTLP/HTTP, off unless an endpoint is set.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | unset: no traces | the collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318`; spans go to `<endpoint>/v1/traces` |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` | `http/protobuf` | `http/protobuf` or `http/json` |
//! | `OTEL_SERVICE_NAME` | `wallet-bff` | the `service.name` of every span |
//! | `OTEL_BSP_SCHEDULE_DELAY` | `5000` | milliseconds between exports of finished spans (read by the OpenTelemetry SDK, as are the other `OTEL_BSP_*` batch settings) |

use anyhow::{Context, bail};

use super::Env;

/// How spans are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `application/x-protobuf`, what collectors expect by default.
    Protobuf,
    /// `application/json`.
    Json,
}

/// Where and as whom the server exports its spans.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces`.
    pub traces_url: url::Url,
    /// The encoding.
    pub protocol: OtlpProtocol,
    /// `service.name`.
    pub service_name: String,
}

impl TraceSettings {
    pub(super) fn read(env: &Env<'_>) -> anyhow::Result<Option<TraceSettings>> {
        let Some(raw) = env.var("OTEL_EXPORTER_OTLP_ENDPOINT") else {
            return Ok(None);
        };
        let base = url::Url::parse(raw.trim())
            .with_context(|| format!("OTEL_EXPORTER_OTLP_ENDPOINT={raw:?} is not a URL"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("OTEL_EXPORTER_OTLP_ENDPOINT must be an http or https URL");
        }
        let traces_url = url::Url::parse(&format!(
            "{}/v1/traces",
            base.as_str().trim_end_matches('/')
        ))
        .context("building the OTLP traces URL")?;
        let protocol = match env
            .var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => OtlpProtocol::Protobuf,
            Some("http/json") => OtlpProtocol::Json,
            Some(other) => bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported (http/protobuf or http/json)"
            ),
        };
        Ok(Some(TraceSettings {
            traces_url,
            protocol,
            service_name: env
                .var("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| "wallet-bff".to_owned()),
        }))
    }
}
