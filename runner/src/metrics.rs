//! Prometheus metrics, named as in `docs/runner-contract.md`.
//!
//! Labels take a small fixed set of values (source names, partitions and the
//! reasons below), never error text.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Why a record was rejected or dead-lettered (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not JSON, or not a JSON object.
    NotJson,
    /// JSON that does not fit the table's columns.
    Unmappable,
    /// Not an Avro record in the Confluent wire format, or not decodable
    /// with its writer schema.
    NotAvro,
    /// The Schema Registry has no schema with the record's id.
    UnknownSchema,
    /// Cassandra refused the row, or kept failing after retries.
    WriteFailed,
    /// A push body, or one of its records, was over a limit.
    TooLarge,
    /// A Kafka tombstone, where the table does not take tombstones as
    /// deletes.
    Tombstone,
    /// A push request without a bearer token (401); counted per request.
    Unauthenticated,
    /// A push request with a token the source does not accept (403);
    /// counted per request.
    Forbidden,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::Unmappable => "unmappable",
            Self::NotAvro => "not_avro",
            Self::UnknownSchema => "unknown_schema",
            Self::WriteFailed => "write_failed",
            Self::TooLarge => "too_large",
            Self::Tombstone => "tombstone",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    records_ingested: Family<Labels, Counter>,
    records_rejected: Family<Labels, Counter>,
    pub rows_written: Counter,
    pub rows_deleted: Counter,
    pub batches_written: Counter,
    pub batched_rows: Counter,
    pub rows_failed: Counter,
    pub records_skipped: Counter,
    dead_lettered: Family<Labels, Counter>,
    pub write_latency: Histogram,
    write_retries: Family<Labels, Counter>,
    writes_waiting: Family<Labels, Gauge>,
    consumer_lag: Family<Labels, Gauge>,
    pull_runs: Family<Labels, Counter>,
    pull_last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    produce_retries: Family<Labels, Counter>,
    dead_letters_replayed: Family<Labels, Counter>,
    replay_partitions: Family<Labels, Gauge>,
}

/// Counts a waiting write until dropped (written, or the task ended).
pub struct WaitingWrite(Gauge);

impl Drop for WaitingWrite {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("millrace");
        let records_ingested = Family::<Labels, Counter>::default();
        registry.register(
            "records_ingested",
            "Records a source produced to Kafka",
            records_ingested.clone(),
        );
        let records_rejected = Family::<Labels, Counter>::default();
        registry.register(
            "records_rejected",
            "Records a source refused or dead-lettered",
            records_rejected.clone(),
        );
        let rows_written = Counter::default();
        registry.register(
            "rows_written",
            "Rows written to Cassandra",
            rows_written.clone(),
        );
        let rows_deleted = Counter::default();
        registry.register(
            "rows_deleted",
            "Rows deleted in Cassandra by records that are deletes (tombstones, key-only or marked records)",
            rows_deleted.clone(),
        );
        let batches_written = Counter::default();
        registry.register(
            "batches_written",
            "Unlogged batches of one partition's rows written to Cassandra (spec.runner.batch)",
            batches_written.clone(),
        );
        let batched_rows = Counter::default();
        registry.register(
            "batched_rows",
            "Rows written or deleted in Cassandra as part of a batch (also counted in rows_written or rows_deleted)",
            batched_rows.clone(),
        );
        let rows_failed = Counter::default();
        registry.register(
            "rows_failed",
            "Records the sink could not write (dead-lettered)",
            rows_failed.clone(),
        );
        let records_skipped = Counter::default();
        registry.register(
            "records_skipped",
            "Records of the topic that retention deleted before the sink read them: lost to the table",
            records_skipped.clone(),
        );
        let dead_lettered = Family::<Labels, Counter>::default();
        registry.register(
            "records_dead_lettered",
            "Records sent to the dead-letter topic",
            dead_lettered.clone(),
        );
        let write_latency = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "write_latency_seconds",
            "Time to write one row, retries included",
            write_latency.clone(),
        );
        let write_retries = Family::<Labels, Counter>::default();
        registry.register(
            "write_retries",
            "Tries of a write that the cluster could not take, by reason",
            write_retries.clone(),
        );
        let writes_waiting = Family::<Labels, Gauge>::default();
        registry.register(
            "writes_waiting",
            "Writes waiting for the cluster to take them, by reason of their first failure",
            writes_waiting.clone(),
        );
        let consumer_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Records of an assigned partition the sink has not written yet",
            consumer_lag.clone(),
        );
        let pull_runs = Family::<Labels, Counter>::default();
        registry.register(
            "pull_runs",
            "Runs of an httpPull source by outcome",
            pull_runs.clone(),
        );
        let pull_last_success = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "pull_last_success_timestamp_seconds",
            "When an httpPull source last succeeded (Unix seconds)",
            pull_last_success.clone(),
        );
        let produce_retries = Family::<Labels, Counter>::default();
        registry.register(
            "produce_retries",
            "Records an ingest source sent to Kafka again because a send was not acknowledged",
            produce_retries.clone(),
        );
        let dead_letters_replayed = Family::<Labels, Counter>::default();
        registry.register(
            "dead_letters_replayed",
            "Dead letters a replay tried again, by outcome (written, failed_again)",
            dead_letters_replayed.clone(),
        );
        let replay_partitions = Family::<Labels, Gauge>::default();
        registry.register(
            "dead_letter_replay_partitions",
            "Partitions of the dead-letter topic this sink holds for the replay, by state (active, done)",
            replay_partitions.clone(),
        );
        Self {
            registry,
            records_ingested,
            records_rejected,
            rows_written,
            rows_deleted,
            batches_written,
            batched_rows,
            rows_failed,
            records_skipped,
            dead_lettered,
            write_latency,
            write_retries,
            writes_waiting,
            consumer_lag,
            pull_runs,
            pull_last_success,
            produce_retries,
            dead_letters_replayed,
            replay_partitions,
        }
    }

    /// Partitions of the dead-letter topic held for the replay.
    pub fn replay_partitions(&self, active: i64, done: i64) {
        for (state, n) in [("active", active), ("done", done)] {
            self.replay_partitions
                .get_or_create(&vec![("state", state.to_owned())])
                .set(n);
        }
    }

    /// A dead letter a replay tried again: `written` or `failed_again`.
    pub fn replayed(&self, outcome: &'static str) {
        self.dead_letters_replayed
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn ingested(&self, source: &str, n: u64) {
        self.records_ingested
            .get_or_create(&vec![("source", source.to_owned())])
            .inc_by(n);
    }

    pub fn rejected(&self, source: &str, reason: Reason, n: u64) {
        self.records_rejected
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("reason", reason.as_str().to_owned()),
            ])
            .inc_by(n);
    }

    pub fn dead_lettered(&self, reason: Reason) {
        self.dead_lettered
            .get_or_create(&vec![("reason", reason.as_str().to_owned())])
            .inc();
    }

    /// One more try of a write the cluster could not take.
    pub fn write_retried(&self, reason: &'static str) {
        self.write_retries
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// A write starts waiting for the cluster; it counts in
    /// `writes_waiting` until the guard is dropped.
    pub fn waiting_write(&self, reason: &'static str) -> WaitingWrite {
        let gauge = self
            .writes_waiting
            .get_or_create(&vec![("reason", reason.to_owned())])
            .clone();
        gauge.inc();
        WaitingWrite(gauge)
    }

    pub fn set_lag(&self, partition: i32, lag: i64) {
        self.consumer_lag
            .get_or_create(&vec![("partition", partition.to_string())])
            .set(lag);
    }

    /// Forgets a partition's lag when it is no longer this consumer's.
    pub fn clear_lag(&self, partition: i32) {
        self.consumer_lag
            .remove(&vec![("partition", partition.to_string())]);
    }

    /// `n` records of `source` are about to be sent to Kafka again.
    pub fn produce_retried(&self, source: &str, n: u64) {
        self.produce_retries
            .get_or_create(&vec![("source", source.to_owned())])
            .inc_by(n);
    }

    pub fn pull_run(&self, source: &str, succeeded: bool, at_unix_seconds: f64) {
        let outcome = if succeeded { "Succeeded" } else { "Failed" };
        self.pull_runs
            .get_or_create(&vec![
                ("source", source.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
        if succeeded {
            self.pull_last_success
                .get_or_create(&vec![("source", source.to_owned())])
                .set(at_unix_seconds);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = millrace_api::process_metrics::ProcessSample::read()
            .map(|p| p.render())
            .unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_the_contract_names() {
        let m = Metrics::new();
        m.ingested("events", 2);
        m.rejected("events", Reason::Unmappable, 1);
        m.rows_written.inc();
        m.rows_failed.inc();
        m.records_skipped.inc_by(3);
        m.replayed("written");
        m.replay_partitions(1, 2);
        m.dead_lettered(Reason::WriteFailed);
        m.write_latency.observe(0.01);
        m.set_lag(0, 5);
        m.pull_run("api", true, 1.0);
        let text = m.render();
        for name in [
            "millrace_records_ingested_total{source=\"events\"} 2",
            "millrace_records_rejected_total{source=\"events\",reason=\"unmappable\"} 1",
            "millrace_rows_written_total 1",
            "millrace_rows_failed_total 1",
            "millrace_records_skipped_total 3",
            "millrace_dead_letters_replayed_total{outcome=\"written\"} 1",
            "millrace_dead_letter_replay_partitions{state=\"done\"} 2",
            "millrace_records_dead_lettered_total{reason=\"write_failed\"} 1",
            "millrace_write_latency_seconds_bucket",
            "millrace_consumer_lag{partition=\"0\"} 5",
            "millrace_pull_runs_total{source=\"api\",outcome=\"Succeeded\"} 1",
            "millrace_pull_last_success_timestamp_seconds{source=\"api\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
