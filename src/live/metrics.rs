//! The live path's metrics, in Prometheus's text format on `GET /metrics` (what operators
//! scrape with Prometheus and graph in Grafana), and `GET /healthz` (200 while this process
//! holds the lease and its capture loop turns; what compose's health check asks).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// Upper bounds of the latency histograms' buckets, in seconds (then +Inf).
const BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
];

/// A histogram of seconds: a count per bucket (not cumulative), the sum, the count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The sum, in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".into()])
            .enumerate()
        {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// What the live path counts; shared by its threads.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub source_errors: AtomicU64,
    pub captured: AtomicU64,
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
    pub batches: AtomicU64,
    pub batch_failures: AtomicU64,
    pub frauds: AtomicU64,
    pub emails: AtomicU64,
    pub alerts_sent: AtomicU64,
    /// 1 while this process holds the lease.
    pub lease_held: AtomicU64,
    /// When the capture loop last turned (epoch seconds).
    pub last_loop: AtomicU64,
    /// Payments captured and not processed yet.
    pub backlog: AtomicU64,
    /// Micro-batches handed to the processing thread and not done yet.
    pub queued_batches: AtomicU64,
    /// From a payment's capture to the SMTP server's acceptance of its alert.
    pub capture_to_email: Histogram,
    /// From a payment's own time (the API stamps it when it serves it) to the same.
    pub payment_to_email: Histogram,
    /// A micro-batch's processing, from transform to alert.
    pub batch_seconds: Histogram,
}

/// Epoch seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Whether the process is healthy: it holds the lease and its loop turned in the last 10 s.
    pub fn healthy(&self) -> bool {
        self.lease_held.load(Ordering::Relaxed) == 1
            && now_secs().saturating_sub(self.last_loop.load(Ordering::Relaxed)) <= 10
    }

    /// The counters: name, value, help.
    fn counters(&self) -> [(&str, &AtomicU64, &str); 10] {
        [
            (
                "api_requests",
                &self.requests,
                "Requests to the payments API.",
            ),
            (
                "api_errors",
                &self.source_errors,
                "Requests to the payments API that failed.",
            ),
            (
                "payments_captured",
                &self.captured,
                "Payments captured (journaled) by the live path.",
            ),
            (
                "payments_rejected",
                &self.rejected,
                "Rows the live path rejected, with their reason.",
            ),
            (
                "payments_duplicate",
                &self.duplicates,
                "Payments served again within their minute.",
            ),
            ("micro_batches", &self.batches, "Micro-batches processed."),
            (
                "micro_batch_failures",
                &self.batch_failures,
                "Micro-batch attempts that failed (retried).",
            ),
            (
                "frauds_predicted",
                &self.frauds,
                "Payments predicted fraudulent.",
            ),
            (
                "emails_sent",
                &self.emails,
                "Alert emails the SMTP server accepted.",
            ),
            (
                "alerts_sent",
                &self.alerts_sent,
                "Predicted frauds in those emails.",
            ),
        ]
    }

    /// The gauges: name, value, help.
    fn gauges(&self) -> [(&str, &AtomicU64, &str); 4] {
        [
            (
                "lease_held",
                &self.lease_held,
                "1 while this process holds the live path's lease.",
            ),
            (
                "last_loop_timestamp_seconds",
                &self.last_loop,
                "When the capture loop last turned.",
            ),
            (
                "backlog_payments",
                &self.backlog,
                "Payments captured and not processed yet.",
            ),
            (
                "queued_micro_batches",
                &self.queued_batches,
                "Micro-batches handed to processing and not done yet.",
            ),
        ]
    }

    /// The metrics in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kinds: [(&str, &str, &[_]); 2] = [
            ("_total", "counter", &self.counters()),
            ("", "gauge", &self.gauges()),
        ];
        for (suffix, kind, metrics) in kinds {
            for &(name, value, help) in metrics {
                let name = format!("fraudctl_live_{name}{suffix}");
                let value = value.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            }
        }
        self.capture_to_email.write(
            &mut out,
            "fraudctl_live_capture_to_email_seconds",
            "From a payment's capture to the SMTP server's acceptance of its alert.",
        );
        self.payment_to_email.write(
            &mut out,
            "fraudctl_live_payment_to_email_seconds",
            "From a payment's time to the SMTP server's acceptance of its alert.",
        );
        self.batch_seconds.write(
            &mut out,
            "fraudctl_live_micro_batch_seconds",
            "A micro-batch's processing, transform to alert.",
        );
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listen` from a thread of its own.
pub fn serve(listen: &str, metrics: Arc<Metrics>) -> Result<()> {
    let server = tiny_http::Server::http(listen)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot listen on {listen} for the metrics (--metrics-listen)"))?;
    tracing::info!(listen, "metrics on /metrics, health on /healthz");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, body) = match request.url() {
                    "/metrics" => (200, metrics.render()),
                    "/healthz" if metrics.healthy() => (200, "ok\n".into()),
                    "/healthz" => (503, "not capturing\n".into()),
                    _ => (404, "not found: /metrics, /healthz\n".into()),
                };
                let response = tiny_http::Response::from_string(body).with_status_code(status);
                let _ = request.respond(response);
            }
        })
        .context("cannot start the metrics thread")?;
    Ok(())
}
