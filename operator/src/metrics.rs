//! Prometheus metrics and the operator's small HTTP server (`/metrics`,
//! `/healthz`, `/readyz`).
//!
//! Writes to the apiserver, Kafka and Cassandra are counted by target, so a
//! steady-state resync can be shown to write nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Where a write went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Kubernetes,
    Kafka,
    Cassandra,
}

impl Target {
    const ALL: [Target; 3] = [Target::Kubernetes, Target::Kafka, Target::Cassandra];

    fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::Kafka => "kafka",
            Self::Cassandra => "cassandra",
        }
    }
}

const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: Mutex<BTreeMap<&'static str, u64>>,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    writes: [AtomicU64; 3],
    leader: AtomicBool,
    ready: AtomicBool,
}

impl Metrics {
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, category: &'static str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *failures.entry(category).or_default() += 1;
    }

    pub fn write(&self, target: Target) {
        self.writes[target as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn writes(&self, target: Target) -> u64 {
        self.writes[target as usize].load(Ordering::Relaxed)
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    fn observe_duration(&self, seconds: f64) {
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP millrace_operator_reconciles_total Reconciles started.\n# TYPE millrace_operator_reconciles_total counter\nmillrace_operator_reconciles_total {}",
            load(&self.reconciles)
        );
        let _ = writeln!(
            out,
            "# HELP millrace_operator_reconcile_failures_total Failed reconciles by error category.\n# TYPE millrace_operator_reconcile_failures_total counter"
        );
        for (category, n) in self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "millrace_operator_reconcile_failures_total{{category=\"{category}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP millrace_operator_reconcile_duration_seconds Reconcile duration.\n# TYPE millrace_operator_reconcile_duration_seconds histogram"
        );
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "millrace_operator_reconcile_duration_seconds_bucket{{le=\"{le}\"}} {}",
                load(&self.duration_buckets[i])
            );
        }
        let count = load(&self.duration_count);
        let _ = writeln!(
            out,
            "millrace_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nmillrace_operator_reconcile_duration_seconds_sum {}\nmillrace_operator_reconcile_duration_seconds_count {count}",
            load(&self.duration_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP millrace_operator_writes_total Writes made while reconciling, by target.\n# TYPE millrace_operator_writes_total counter"
        );
        for target in Target::ALL {
            let _ = writeln!(
                out,
                "millrace_operator_writes_total{{target=\"{}\"}} {}",
                target.as_str(),
                self.writes(target)
            );
        }
        let _ = writeln!(
            out,
            "# HELP millrace_operator_leader Whether this process holds the leader Lease.\n# TYPE millrace_operator_leader gauge\nmillrace_operator_leader {}",
            u8::from(self.leader.load(Ordering::Relaxed))
        );
        out
    }
}

/// Records the reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .observe_duration(self.start.elapsed().as_secs_f64());
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(listener: TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            while len < buf.len() {
                match stream.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (code, body) = match path {
                "/metrics" => ("200 OK", metrics.render()),
                "/healthz" => ("200 OK", "ok\n".to_owned()),
                "/readyz" if metrics.ready.load(Ordering::Relaxed) => ("200 OK", "ok\n".to_owned()),
                "/readyz" => ("503 Service Unavailable", "not ready\n".to_owned()),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_label() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.failure("kafka_unavailable");
        m.write(Target::Cassandra);
        let text = m.render();
        assert!(
            text.contains("millrace_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(text.contains(
            "millrace_operator_reconcile_failures_total{category=\"kafka_unavailable\"} 1"
        ));
        assert!(text.contains("millrace_operator_writes_total{target=\"cassandra\"} 1"));
        assert!(text.contains("millrace_operator_writes_total{target=\"kafka\"} 0"));
        assert!(text.contains("millrace_operator_reconcile_duration_seconds_count 1"));
    }
}
