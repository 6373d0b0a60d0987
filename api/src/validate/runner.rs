//! Checks of `spec.runner`: the bounds of replica counts, autoscaling and
//! writes in flight and batches.

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
    if let Some(b) = &runner.batch {
        let at = format!("{at}.batch");
        v.range(
            format!("{at}.maxRecords"),
            b.max_records.into(),
            limits::BATCH_MAX_RECORDS,
        );
        v.range(
            format!("{at}.maxDelayMs"),
            b.max_delay_ms.into(),
            limits::BATCH_MAX_DELAY_MS,
        );
        if b.max_records > runner.max_in_flight {
            v.push(
                format!("{at}.maxRecords"),
                Problem::BatchAboveInFlight {
                    max_records: b.max_records,
                    max_in_flight: runner.max_in_flight,
                },
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::spec::BatchSpec;
    use crate::validate::fixture::{problems, spec};
    use crate::validate::problem::Problem;

    fn batch_problems(max_records: i32, max_delay_ms: i32, max_in_flight: i32) -> Vec<String> {
        let mut s = spec();
        s.runner.max_in_flight = max_in_flight;
        s.runner.batch = Some(BatchSpec {
            max_records,
            max_delay_ms,
        });
        problems(&s).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_batch_fits_the_writes_in_flight_and_its_bounds() {
        assert_eq!(batch_problems(64, 0, 256), Vec::<String>::new());
        assert_eq!(batch_problems(256, 1_000, 256), Vec::<String>::new());
        assert_eq!(
            batch_problems(1, 0, 256),
            ["spec.runner.batch.maxRecords"],
            "one record is no batch"
        );
        assert_eq!(
            batch_problems(64, 1_001, 256),
            ["spec.runner.batch.maxDelayMs"]
        );
        assert_eq!(
            batch_problems(64, -1, 256),
            ["spec.runner.batch.maxDelayMs"]
        );
        let mut s = spec();
        s.runner.max_in_flight = 32;
        s.runner.batch = Some(BatchSpec::default());
        let found = problems(&s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "spec.runner.batch.maxRecords");
        assert_eq!(
            found[0].problem,
            Problem::BatchAboveInFlight {
                max_records: 64,
                max_in_flight: 32
            }
        );
        assert!(
            found[0].problem.to_string().contains("maxInFlight (32)"),
            "{}",
            found[0].problem
        );
    }
}
