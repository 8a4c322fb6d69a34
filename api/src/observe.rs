//! Request metrics for `/metrics`: GraphQL operations by type and name (a
//! bounded set of names), their durations as a histogram per type, errors
//! by `extensions.code`, and rate-limit refusals by bucket. Counted in
//! process with atomics and a few small maps; rendered in the Prometheus
//! text format by `http::metrics`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::ErrorCode;

/// Distinct operation names counted; later ones are folded into `other`.
pub const MAX_OPERATION_NAMES: usize = 200;

/// Upper bounds of the duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The kind of a GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperationType {
    /// `query`.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl OperationType {
    const ALL: [OperationType; 3] = [Self::Query, Self::Mutation, Self::Subscription];

    /// `query`, `mutation` or `subscription`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Default)]
struct Histogram {
    /// Observations at or below each bound (cumulative when rendered).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// The counters, shared by every request of the instance.
#[derive(Default)]
pub struct RequestMetrics {
    operations: Mutex<HashMap<(OperationType, String), u64>>,
    durations: [Histogram; 3],
    errors: Mutex<HashMap<&'static str, u64>>,
    refusals: Mutex<HashMap<&'static str, u64>>,
}

impl std::fmt::Debug for RequestMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMetrics").finish_non_exhaustive()
    }
}

/// The label an operation name is counted under: itself when it is a
/// GraphQL name of at most 64 characters, `anonymous` without one.
pub(crate) fn name_label(name: Option<&str>) -> &str {
    match name {
        None => "anonymous",
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !n.as_bytes()[0].is_ascii_digit() =>
        {
            n
        }
        Some(_) => "invalid",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RequestMetrics {
    /// Counts one operation; `elapsed` for queries and mutations (a
    /// subscription runs as long as its client wants).
    pub fn operation(&self, kind: OperationType, name: Option<&str>, elapsed: Option<Duration>) {
        let label = name_label(name);
        {
            let mut ops = lock(&self.operations);
            let known = ops.contains_key(&(kind, label.to_owned()));
            let names = ops.len();
            let key = if known || names < MAX_OPERATION_NAMES {
                label.to_owned()
            } else {
                "other".to_owned()
            };
            *ops.entry((kind, key)).or_default() += 1;
        }
        if let Some(elapsed) = elapsed {
            self.durations[kind.index()].observe(elapsed);
        }
    }

    /// Counts an error by its code: an uncoded one is answered as
    /// `INTERNAL_SERVER_ERROR`; a code outside the contract counts as `OTHER`.
    pub fn error(&self, code: Option<&str>) {
        let label = match code {
            None => ErrorCode::InternalServerError.as_str(),
            Some(c) => ErrorCode::ALL
                .into_iter()
                .find(|k| k.as_str() == c)
                .map_or("OTHER", ErrorCode::as_str),
        };
        *lock(&self.errors).entry(label).or_default() += 1;
    }

    /// Counts a rate-limit refusal of a bucket kind.
    pub fn refused(&self, bucket: &'static str) {
        *lock(&self.refusals).entry(bucket).or_default() += 1;
    }

    /// Appends the Prometheus text of every counter.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP wallet_bff_graphql_operations_total GraphQL operations by type and name (at most {MAX_OPERATION_NAMES} names; later ones count as `other`).\n# TYPE wallet_bff_graphql_operations_total counter"
        );
        let mut ops: Vec<_> = lock(&self.operations)
            .iter()
            .map(|((k, n), v)| (k.as_str(), n.clone(), *v))
            .collect();
        ops.sort();
        for (kind, name, value) in ops {
            let _ = writeln!(
                out,
                "wallet_bff_graphql_operations_total{{type=\"{kind}\",name=\"{name}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP wallet_bff_graphql_operation_duration_seconds Time to execute queries and mutations.\n# TYPE wallet_bff_graphql_operation_duration_seconds histogram"
        );
        for kind in OperationType::ALL {
            if kind == OperationType::Subscription {
                continue;
            }
            let h = &self.durations[kind.index()];
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "wallet_bff_graphql_operation_duration_seconds_bucket{{type=\"{}\",le=\"{bound}\"}} {cumulative}",
                    kind.as_str()
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let t = kind.as_str();
            let _ = writeln!(
                out,
                "wallet_bff_graphql_operation_duration_seconds_bucket{{type=\"{t}\",le=\"+Inf\"}} {count}\nwallet_bff_graphql_operation_duration_seconds_sum{{type=\"{t}\"}} {sum}\nwallet_bff_graphql_operation_duration_seconds_count{{type=\"{t}\"}} {count}"
            );
        }
        for (metric, help, label, map) in [
            (
                "wallet_bff_graphql_errors_total",
                "GraphQL errors by extensions.code.",
                "code",
                &self.errors,
            ),
            (
                "wallet_bff_rate_limited_total",
                "Requests refused by a rate limit, by bucket.",
                "bucket",
                &self.refusals,
            ),
        ] {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
            let mut rows: Vec<_> = lock(map).iter().map(|(k, v)| (*k, *v)).collect();
            rows.sort();
            for (key, value) in rows {
                let _ = writeln!(out, "{metric}{{{label}=\"{key}\"}} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_checked() {
        let m = RequestMetrics::default();
        m.operation(
            OperationType::Query,
            Some("Me"),
            Some(Duration::from_millis(3)),
        );
        m.operation(
            OperationType::Query,
            Some("Me"),
            Some(Duration::from_millis(30)),
        );
        m.operation(OperationType::Mutation, None, Some(Duration::from_secs(20)));
        m.operation(OperationType::Query, Some("bad name\"}"), None);
        for i in 0..MAX_OPERATION_NAMES + 5 {
            m.operation(OperationType::Query, Some(&format!("Op{i}")), None);
        }
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("wallet_bff_graphql_operations_total{type=\"query\",name=\"Me\"} 2"),
            "{out}"
        );
        assert!(out.contains("{type=\"mutation\",name=\"anonymous\"} 1"));
        assert!(out.contains("{type=\"query\",name=\"invalid\"} 1"));
        assert!(out.contains("{type=\"query\",name=\"other\"}"), "folded");
        let distinct = out
            .lines()
            .filter(|l| l.starts_with("wallet_bff_graphql_operations_total{"))
            .count();
        assert!(distinct <= MAX_OPERATION_NAMES + 1, "{distinct}");
        assert!(
            out.contains("duration_seconds_bucket{type=\"query\",le=\"0.005\"} 1"),
            "{out}"
        );
        assert!(out.contains("duration_seconds_bucket{type=\"query\",le=\"0.05\"} 2"));
        assert!(out.contains("duration_seconds_count{type=\"mutation\"} 1"));
        assert!(
            out.contains("duration_seconds_bucket{type=\"mutation\",le=\"10\"} 0"),
            "above the last bound"
        );
        assert!(out.contains("duration_seconds_bucket{type=\"mutation\",le=\"+Inf\"} 1"));
    }

    #[test]
    fn errors_count_by_contract_code() {
        let m = RequestMetrics::default();
        m.error(Some("INSUFFICIENT_FUNDS"));
        m.error(Some("INSUFFICIENT_FUNDS"));
        m.error(Some("made up"));
        m.error(None);
        m.refused("user");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("wallet_bff_graphql_errors_total{code=\"INSUFFICIENT_FUNDS\"} 2"));
        assert!(out.contains("wallet_bff_graphql_errors_total{code=\"OTHER\"} 1"));
        assert!(out.contains("wallet_bff_graphql_errors_total{code=\"INTERNAL_SERVER_ERROR\"} 1"));
        assert!(out.contains("wallet_bff_rate_limited_total{bucket=\"user\"} 1"));
    }
}
