//! Prometheus metrics (served by [`crate::serve`]).
//!
//! Writes to the apiserver, Kafka and Cassandra are counted by target, so a
//! steady-state resync can be shown to write nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

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

    fn labels(self) -> Labels {
        vec![("target", self.as_str())]
    }
}

/// A step of a reconcile, timed on its own so a slow reconcile can be
/// traced to the backend it waited on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the Secrets the spec names.
    Secrets,
    /// The topic (Kafka admin calls).
    Topic,
    /// The keyspace and tables (CQL).
    Tables,
    /// Offsets and lag for `status.flow` and the dead-letter replay.
    Offsets,
    /// The runner's objects (apiserver).
    Runner,
    /// Events and the status write (apiserver).
    Report,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Self::Secrets => "secrets",
            Self::Topic => "topic",
            Self::Tables => "tables",
            Self::Offsets => "offsets",
            Self::Runner => "runner",
            Self::Report => "report",
        }
    }
}

const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    failures: Family<Labels, Counter>,
    duration: Histogram,
    steps: Family<Labels, Histogram, fn() -> Histogram>,
    writes: Family<Labels, Counter>,
    leader: Gauge,
    waiting: Gauge,
    /// For `/readyz`; not a metric.
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("millrace_operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciles by error category",
            failures.clone(),
        );
        let duration = Histogram::new(BUCKETS);
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        let steps = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "reconcile_step_duration_seconds",
            "Time spent in each step of a reconcile",
            steps.clone(),
        );
        let writes = Family::<Labels, Counter>::default();
        registry.register(
            "writes",
            "Writes made while reconciling, by target",
            writes.clone(),
        );
        // Every target is shown from the start, at 0 until it is written to.
        for target in Target::ALL {
            let _ = writes.get_or_create(&target.labels());
        }
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this process holds the leader Lease",
            leader.clone(),
        );
        let waiting = Gauge::default();
        registry.register(
            "reconciles_waiting",
            "Reconciles due but waiting for one of the --concurrency slots",
            waiting.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            steps,
            writes,
            leader,
            waiting,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.inc();
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Times `step` until the returned guard is dropped. A guard rather
    /// than a wrapper future: wrapping the reconcile's large futures
    /// copied them onto the stack once more, which a debug build's 2 MiB
    /// worker stack did not hold on the `deletionPolicy: Delete` path.
    pub fn step(&self, step: Step) -> StepTimer<'_> {
        StepTimer {
            metrics: self,
            step,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, category: &'static str) {
        self.failures
            .get_or_create(&vec![("category", category)])
            .inc();
    }

    pub fn write(&self, target: Target) {
        self.writes.get_or_create(&target.labels()).inc();
    }

    pub fn writes(&self, target: Target) -> u64 {
        self.writes.get_or_create(&target.labels()).get()
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The gauge [`crate::slots::Slots`] keeps.
    pub fn waiting(&self) -> Gauge {
        self.waiting.clone()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The exposition, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = millrace_api::process_metrics::ProcessSample::read()
            .map(|p| p.render())
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Records the reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

/// Records a step's duration when dropped.
pub struct StepTimer<'a> {
    metrics: &'a Metrics,
    step: Step,
    start: Instant,
}

impl Drop for StepTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .steps
            .get_or_create(&vec![("step", self.step.as_str())])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .observe(self.start.elapsed().as_secs_f64());
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

    #[test]
    fn times_each_step_and_shows_the_waiting() {
        let m = Metrics::default();
        drop(m.step(Step::Topic));
        drop(m.step(Step::Topic));
        drop(m.step(Step::Report));
        m.waiting().set(3);
        let text = m.render();
        assert!(
            text.contains(
                "millrace_operator_reconcile_step_duration_seconds_count{step=\"topic\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains(
            "millrace_operator_reconcile_step_duration_seconds_count{step=\"report\"} 1"
        ));
        assert!(
            text.contains("millrace_operator_reconciles_waiting 3"),
            "{text}"
        );
    }
}
