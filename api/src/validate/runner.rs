//! Checks of `spec.runner`: replica counts and batching bounds.

use super::accumulator::Problems;
use crate::spec::{RunnerSpec, limits};

pub(super) fn check_runner(v: &mut Problems, runner: &RunnerSpec) {
    let at = "spec.runner";
    v.range(
        format!("{at}.ingestReplicas"),
        runner.ingest_replicas.into(),
        limits::REPLICAS,
    );
    v.range(
        format!("{at}.sinkReplicas"),
        runner.sink_replicas.into(),
        limits::REPLICAS,
    );
    v.range(
        format!("{at}.maxInFlight"),
        runner.max_in_flight.into(),
        limits::MAX_IN_FLIGHT,
    );
    v.range(
        format!("{at}.batch.maxRecords"),
        runner.batch.max_records.into(),
        limits::BATCH_MAX_RECORDS,
    );
    v.range(
        format!("{at}.batch.maxDelayMs"),
        runner.batch.max_delay_ms.into(),
        limits::BATCH_MAX_DELAY_MS,
    );
}
