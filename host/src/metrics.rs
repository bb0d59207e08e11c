//! Prometheus metrics of the process (docs/webhooks.md, "Metrics"), served
//! at `GET /metrics`. Counters are per process; several workers are scraped
//! one by one.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    run_seconds: HistogramVec,
    records: IntCounterVec,
    provider_requests: IntCounter,
    retries: IntCounter,
    throttle_waits: IntCounter,
    token_refreshes: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    notifications: IntCounterVec,
    connections: IntGaugeVec,
    store_up: IntGauge,
    store_errors: IntCounterVec,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry.register(Box::new(counter.clone())).expect("registered once");
            counter
        };
        let plain = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("a valid metric");
            registry.register(Box::new(counter.clone())).expect("registered once");
            counter
        };
        let runs = counter("sync_runs_total", "Runs ended, by outcome (success, failure, interrupted).", &["outcome"]);
        let records = counter(
            "sync_records_total",
            "Records stored by runs, by action (unchanged: read again, found the same).",
            &["action"],
        );
        let provider_requests =
            plain("sync_provider_requests_total", "Requests sent to providers (retries not counted).");
        let retries = plain("sync_provider_retries_total", "Provider requests sent again.");
        let throttle_waits = plain("sync_throttle_waits_total", "Waits after a provider throttled a request (429).");
        let token_refreshes = counter(
            "sync_token_refreshes_total",
            "OAuth token refreshes, by outcome (success, refused, failed).",
            &["outcome"],
        );
        let webhook_deliveries = counter(
            "sync_webhook_deliveries_total",
            "Webhook delivery attempts, by outcome (delivered, retried, given_up).",
            &["outcome"],
        );
        let notifications = counter(
            "sync_provider_notifications_total",
            "Provider change notifications received, by result (accepted, ignored, rejected).",
            &["result"],
        );
        let run_seconds = HistogramVec::new(
            HistogramOpts::new("sync_run_duration_seconds", "Wall time of runs.")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0]),
            &["outcome"],
        )
        .expect("a valid metric");
        registry.register(Box::new(run_seconds.clone())).expect("registered once");
        let connections = IntGaugeVec::new(Opts::new("sync_connections", "Connections, by status."), &["status"])
            .expect("a valid metric");
        registry.register(Box::new(connections.clone())).expect("registered once");
        let store_up = IntGauge::new("sync_store_up", "1 if the store answered the last scrape, 0 if it did not.")
            .expect("a valid metric");
        registry.register(Box::new(store_up.clone())).expect("registered once");
        let store_errors = counter(
            "sync_store_errors_total",
            "Store calls refused by the database's state, by kind (unavailable, full, read_only).",
            &["kind"],
        );
        Metrics {
            registry,
            runs,
            run_seconds,
            records,
            provider_requests,
            retries,
            throttle_waits,
            token_refreshes,
            webhook_deliveries,
            notifications,
            connections,
            store_up,
            store_errors,
        }
    })
}

/// A run ended (whatever its outcome: the records it stored before failing
/// count too).
pub fn run_ended(outcome: &str, seconds: f64, records: &crate::store::BatchOutcome) {
    let m = metrics();
    m.runs.with_label_values(&[outcome]).inc();
    m.run_seconds.with_label_values(&[outcome]).observe(seconds);
    for (action, n) in [
        ("added", records.added),
        ("updated", records.updated),
        ("deleted", records.deleted),
        ("unchanged", records.unchanged),
    ] {
        m.records.with_label_values(&[action]).inc_by(u64::from(n));
    }
}

/// A component's request to its provider was answered or given up on,
/// after `retries` retries and `throttled` waits for a throttled answer.
/// Counted as it happens, so runs that fail or are still going count too.
pub fn provider_request(retries: u32, throttled: u32) {
    let m = metrics();
    m.provider_requests.inc();
    m.retries.inc_by(u64::from(retries));
    m.throttle_waits.inc_by(u64::from(throttled));
}

pub fn token_refresh(outcome: &str) {
    metrics().token_refreshes.with_label_values(&[outcome]).inc();
}

pub fn webhook_delivery(outcome: &str) {
    metrics().webhook_deliveries.with_label_values(&[outcome]).inc();
}

pub fn notification(result: &str) {
    metrics().notifications.with_label_values(&[result]).inc();
}

/// A store call failed because of the database's state (unreachable, busy,
/// full, read-only); other failures are not counted here.
pub fn store_error(error: &crate::store::StoreError) {
    use crate::store::StoreError;
    let kind = match error {
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Full(_) => "full",
        StoreError::ReadOnly(_) => "read_only",
        _ => return,
    };
    metrics().store_errors.with_label_values(&[kind]).inc();
}

/// The text exposition, with the connections gauge set from `by_status`,
/// or, when the store could not be read (`None`), `sync_store_up` 0 and the
/// connections gauge as last read: the process's own counters are served
/// while the store is away.
pub fn render(by_status: Option<&[(String, i64)]>) -> String {
    let m = metrics();
    m.store_up.set(i64::from(by_status.is_some()));
    for status in ["idle", "running", "paused", "needs_reauth", "failing"] {
        let Some(by_status) = by_status else { break };
        let n = by_status.iter().filter(|(s, _)| *s == status).map(|(_, n)| n).sum();
        m.connections.with_label_values(&[status]).set(n);
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&m.registry.gather(), &mut out).expect("text encoding never fails");
    String::from_utf8(out).expect("the text format is UTF-8")
}
