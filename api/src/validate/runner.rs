//! Checks of `spec.runner`: the bounds of replica counts, autoscaling and
//! writes in flight.

use super::accumulator::Problems;
use super::problem::Problem;
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
    if let Some(a) = &runner.autoscale {
        let at = format!("{at}.autoscale");
        v.range(
            format!("{at}.minReplicas"),
            a.min_replicas.into(),
            limits::AUTOSCALE_REPLICAS,
        );
        v.range(
            format!("{at}.maxReplicas"),
            a.max_replicas.into(),
            limits::AUTOSCALE_REPLICAS,
        );
        if a.min_replicas > a.max_replicas {
            v.push(
                format!("{at}.minReplicas"),
                Problem::MinAboveMax {
                    min: a.min_replicas,
                    max: a.max_replicas,
                },
            );
        }
        v.range(
            format!("{at}.targetLagPerReplica"),
            a.target_lag_per_replica,
            limits::TARGET_LAG,
        );
        v.range(
            format!("{at}.cooldownSeconds"),
            a.cooldown_seconds.into(),
            limits::COOLDOWN_SECONDS,
        );
    }
    v.range(
        format!("{at}.maxInFlight"),
        runner.max_in_flight.into(),
        limits::MAX_IN_FLIGHT,
    );
}
