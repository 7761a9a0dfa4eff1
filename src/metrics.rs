//! What clientgate counts, and its Prometheus text exposition (`/metrics` on the admin
//! listener). A leaf: the engine, the store and the notifier count into it; the console
//! renders it. Every label has a bounded set of values — outcomes, registration types,
//! finding codes, and at most [`MAX_TENANT_LABELS`] tenant names (later ones count as
//! `other`) — never a client id or an IP address.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct tenant label values; an AS that sends many tenants cannot grow the exposition.
pub const MAX_TENANT_LABELS: usize = 100;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];
/// Upper bounds of the group-commit batch size buckets.
pub const BATCH_BUCKETS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// A histogram with fixed buckets, safe to observe from any thread.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64; 12],
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum: AtomicU64,
}

/// A histogram's counts at one moment (bucket counts are not cumulative here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64; 12],
    pub buckets: [u64; 12],
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    pub const fn new(bounds: &'static [u64; 12]) -> Histogram {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; 12],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        if let Some(bucket) = self.bounds.iter().position(|bound| value <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

impl HistogramSnapshot {
    pub fn empty(bounds: &'static [u64; 12]) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds,
            buckets: [0; 12],
            count: 0,
            sum: 0,
        }
    }
}

/// Counters keyed by a bounded set of label values.
#[derive(Debug, Default)]
pub struct Counters<K: Ord> {
    values: Mutex<BTreeMap<K, u64>>,
}

impl<K: Ord + Clone> Counters<K> {
    pub fn add(&self, key: K, by: u64) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *values.entry(key).or_default() += by;
    }

    pub fn get(&self, key: &K) -> u64 {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.get(key).copied().unwrap_or(0)
    }

    pub fn snapshot(&self) -> Vec<(K, u64)> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// What one clientgate process counts.
#[derive(Debug)]
pub struct Metrics {
    /// (decision, registration type, tenant label).
    pub decisions: Counters<(&'static str, &'static str, String)>,
    pub decision_latency: Histogram,
    pub policy_errors: AtomicU64,
    /// CIMD documents by how they were had: `hit`, `miss` (fetched), `revalidated`, `stale`,
    /// `pinned`, or the finding code of a failed fetch.
    pub cimd: Counters<&'static str>,
    pub step_ups_opened: AtomicU64,
    /// By the state a resolution left: `approved`, `denied`, `refused`.
    pub step_ups_resolved: Counters<&'static str>,
    /// By `loaded` or `refused`.
    pub reloads: Counters<&'static str>,
    /// By `delivered`, `failed` (after the last attempt), `retried`, `dropped` (queue full).
    pub webhooks: Counters<&'static str>,
    /// Decision lines not exported because the export queue was full.
    pub export_dropped: AtomicU64,
    tenants: Mutex<Vec<String>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            decisions: Counters::default(),
            decision_latency: Histogram::new(&LATENCY_BUCKETS_MICROS),
            policy_errors: AtomicU64::new(0),
            cimd: Counters::default(),
            step_ups_opened: AtomicU64::new(0),
            step_ups_resolved: Counters::default(),
            reloads: Counters::default(),
            webhooks: Counters::default(),
            export_dropped: AtomicU64::new(0),
            tenants: Mutex::new(Vec::new()),
        }
    }
}

impl Metrics {
    /// The label value of `tenant`: itself among the first [`MAX_TENANT_LABELS`] seen,
    /// `other` after.
    pub fn tenant_label(&self, tenant: &str) -> String {
        let mut tenants = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if tenants.iter().any(|known| known == tenant) {
            return tenant.to_owned();
        }
        if tenants.len() < MAX_TENANT_LABELS {
            tenants.push(tenant.to_owned());
            return tenant.to_owned();
        }
        "other".to_owned()
    }
}

/// Values read at scrape time from the parts that own them.
#[derive(Clone, Debug, Default)]
pub struct Gauges {
    pub pending_step_ups: u64,
    pub policy_version: String,
    pub policy_loaded_at_secs: u64,
    pub decisions_recorded: u64,
    pub decisions_shed: u64,
    pub store_commits: u64,
    pub store_commit_micros: Option<HistogramSnapshot>,
    pub store_batch_size: Option<HistogramSnapshot>,
    pub webhook_queue: u64,
}

/// The Prometheus text exposition (version 0.0.4) of `metrics` and `gauges`.
pub fn render(metrics: &Metrics, gauges: &Gauges) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        name.to_owned()
    };
    let mut lines = Vec::new();
    let name = family(
        "clientgate_decisions_total",
        "counter",
        "Decisions answered, by decision, registration type and tenant.",
    );
    for ((decision, kind, tenant), value) in metrics.decisions.snapshot() {
        lines.push(format!(
            "{name}{{decision=\"{decision}\",registration_type=\"{kind}\",tenant=\"{}\"}} {value}",
            escape(&tenant)
        ));
    }
    flush(&mut out, &mut lines);
    histogram(
        &mut out,
        "clientgate_decision_duration_seconds",
        "Time from an Evaluate call's arrival to its recorded answer.",
        &metrics.decision_latency.snapshot(),
        1e6,
    );
    counter(
        &mut out,
        "clientgate_policy_evaluation_errors_total",
        "Decisions that failed closed because a policy did not evaluate.",
        metrics.policy_errors.load(Ordering::Relaxed),
    );
    labelled(
        &mut out,
        "clientgate_cimd_documents_total",
        "CIMD documents by how they were had: cache hit, miss (fetched), revalidated, stale, pinned, or why the fetch failed.",
        "outcome",
        metrics.cimd.snapshot(),
    );
    counter(
        &mut out,
        "clientgate_step_ups_opened_total",
        "Step-up tickets opened.",
        metrics.step_ups_opened.load(Ordering::Relaxed),
    );
    labelled(
        &mut out,
        "clientgate_step_ups_resolved_total",
        "Step-up resolutions by result.",
        "result",
        metrics.step_ups_resolved.snapshot(),
    );
    gauge(
        &mut out,
        "clientgate_step_ups_pending",
        "Step-up tickets waiting for an operator.",
        gauges.pending_step_ups,
    );
    labelled(
        &mut out,
        "clientgate_policy_reloads_total",
        "Policy reloads by result.",
        "result",
        metrics.reloads.snapshot(),
    );
    let _ = writeln!(
        out,
        "# HELP clientgate_policy_info The policy version in force.\n# TYPE clientgate_policy_info gauge\nclientgate_policy_info{{version=\"{}\"}} 1",
        escape(&gauges.policy_version)
    );
    gauge(
        &mut out,
        "clientgate_policy_loaded_timestamp_seconds",
        "When the policy version in force was loaded.",
        gauges.policy_loaded_at_secs,
    );
    counter(
        &mut out,
        "clientgate_store_decisions_recorded_total",
        "Decisions the store made durable.",
        gauges.decisions_recorded,
    );
    counter(
        &mut out,
        "clientgate_store_decisions_shed_total",
        "Low-value decisions not kept because the store was over its size budget.",
        gauges.decisions_shed,
    );
    counter(
        &mut out,
        "clientgate_store_commits_total",
        "Group commits (each one fdatasync).",
        gauges.store_commits,
    );
    if let Some(commit) = &gauges.store_commit_micros {
        histogram(
            &mut out,
            "clientgate_store_commit_duration_seconds",
            "Time of one group commit (flush and fdatasync).",
            commit,
            1e6,
        );
    }
    if let Some(batch) = &gauges.store_batch_size {
        histogram(
            &mut out,
            "clientgate_store_commit_batch_size",
            "Writes made durable by one group commit.",
            batch,
            1.0,
        );
    }
    labelled(
        &mut out,
        "clientgate_webhook_deliveries_total",
        "Webhook deliveries by result (retried counts each retry).",
        "result",
        metrics.webhooks.snapshot(),
    );
    gauge(
        &mut out,
        "clientgate_webhook_queue",
        "Notifications waiting to be delivered.",
        gauges.webhook_queue,
    );
    counter(
        &mut out,
        "clientgate_decision_export_dropped_total",
        "Decision lines not exported because the export queue was full.",
        metrics.export_dropped.load(Ordering::Relaxed),
    );
    out
}

fn flush(out: &mut String, lines: &mut Vec<String>) {
    for line in lines.drain(..) {
        out.push_str(&line);
        out.push('\n');
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: Vec<(&str, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value_label, value) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {value}", escape(value_label));
    }
}

/// A histogram whose observed units are `divisor` times its exposed unit (µs for seconds).
fn histogram(out: &mut String, name: &str, help: &str, snapshot: &HistogramSnapshot, divisor: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in snapshot.bounds.iter().zip(snapshot.buckets) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / divisor
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", snapshot.count);
    let _ = writeln!(out, "{name}_sum {}", snapshot.sum as f64 / divisor);
    let _ = writeln!(out, "{name}_count {}", snapshot.count);
}

/// A label value as the exposition format quotes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_in_seconds() {
        let metrics = Metrics::default();
        metrics.decision_latency.observe(80);
        metrics.decision_latency.observe(700);
        metrics.decision_latency.observe(5_000_000);
        let text = render(&metrics, &Gauges::default());
        assert!(text.contains("clientgate_decision_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("clientgate_decision_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("clientgate_decision_duration_seconds_bucket{le=\"1\"} 2\n"));
        assert!(text.contains("clientgate_decision_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("clientgate_decision_duration_seconds_count 3\n"));
    }

    #[test]
    fn tenants_beyond_the_label_budget_count_as_other() {
        let metrics = Metrics::default();
        for n in 0..MAX_TENANT_LABELS {
            assert_eq!(metrics.tenant_label(&format!("t{n}")), format!("t{n}"));
        }
        assert_eq!(metrics.tenant_label("one-too-many"), "other");
        assert_eq!(metrics.tenant_label("t0"), "t0");
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics
            .decisions
            .add(("deny", "dcr", "a\"b\\c\nd".to_owned()), 2);
        let text = render(&metrics, &Gauges::default());
        assert!(
            text.contains(
                "clientgate_decisions_total{decision=\"deny\",registration_type=\"dcr\",tenant=\"a\\\"b\\\\c\\nd\"} 2\n"
            ),
            "{text}"
        );
    }
}
