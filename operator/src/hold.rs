//! A status held back for a moment. The first reconcile of a new
//! generation usually ends with one piece of news: topic and table are
//! ready and the runner's rollout it just started is under way. The
//! controller-manager reports that rollout done a moment later, and the
//! reconcile that wakes then has `Ready=True` to say. Writing both costs
//! the apiserver a validation of the whole pipeline each (its CEL rules
//! included), which at 1,000 pipelines applied together is most of what a
//! new pipeline costs it. So that first status is kept in memory for at
//! most [`HOLD`]: the next reconcile starts from it as if it had been
//! written, and writes whatever it decides, once. Nothing is held twice in
//! a row, so a rollout that takes longer is reported as progressing after
//! [`HOLD`], as before.
//!
//! What is held is never the only record of anything: it is what the next
//! reconcile would find again from Kafka, Cassandra and the watch caches. A
//! restart, a new leader, a spec change or another writer of the status
//! makes it void, and the status is then reconciled afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use millrace_api::{StreamPipeline, StreamPipelineStatus, condition_reason};

/// How long a new generation's progress report may wait for the rollout
/// that ends it. With the controller-manager at a large cluster's rate,
/// 1,000 pipelines applied together had their rollouts reported 1-2 s
/// after the reconcile that started them (bench/OPERATOR-SCALE.md); a
/// person reading `kubectl get` right after an apply sees the status this
/// much later at most.
pub const HOLD: Duration = Duration::from_secs(3);

/// Held entries older than this belong to pipelines deleted while held
/// (no reconcile runs for those to release them).
const FORGOTTEN_AFTER: Duration = Duration::from_secs(60);

/// The parts of one reconcile's outcome that decide whether its status may
/// wait.
#[derive(Debug)]
pub struct Outcome<'a> {
    /// `observedGeneration` of the status the reconcile started from.
    pub observed_generation: Option<i64>,
    pub generation: i64,
    /// `TopicReady`, `TableReady` and `Flowing` are true.
    pub others_ready: bool,
    pub runner_ready: bool,
    pub runner_reason: &'a str,
    /// The reconcile created or changed a runner object.
    pub runner_changed: bool,
    /// A part failed, or a decision (such as scaling) waits to be recorded.
    pub anything_else: bool,
    pub suspended: bool,
}

/// Whether the reconcile's new status may be held: a new generation's first
/// reconcile, every part ready but the runner, whose rollout this reconcile
/// started.
pub fn may_hold(o: &Outcome<'_>) -> bool {
    o.observed_generation != Some(o.generation)
        && o.others_ready
        && !o.runner_ready
        && o.runner_reason == condition_reason::PROGRESSING
        && o.runner_changed
        && !o.anything_else
        && !o.suspended
}

struct Held {
    generation: i64,
    /// The status the object had when this was held: once it has another,
    /// someone else wrote it, and what is held is void.
    over: Option<StreamPipelineStatus>,
    status: StreamPipelineStatus,
    at: Instant,
}

/// Statuses held back, by pipeline uid.
#[derive(Default)]
pub struct HeldStatuses {
    map: Mutex<HashMap<String, Held>>,
}

impl HeldStatuses {
    /// `sp` with the status held for it in place of its own, while that
    /// still applies: same generation, and the object's status is the one
    /// it was held over. A held status that no longer applies is dropped.
    /// `sp` already carrying it is returned as it is.
    pub fn overlay(&self, sp: Arc<StreamPipeline>) -> Arc<StreamPipeline> {
        let uid = sp.uid().unwrap_or_default();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = map.get(&uid) else {
            return sp;
        };
        if sp.status.as_ref() == Some(&held.status) {
            return sp;
        }
        if Some(held.generation) != sp.metadata.generation
            || held.over != sp.status
            || held.at.elapsed() >= FORGOTTEN_AFTER
        {
            map.remove(&uid);
            return sp;
        }
        let mut with = (*sp).clone();
        with.status = Some(held.status.clone());
        Arc::new(with)
    }

    /// Keeps `status` for the pipeline instead of writing it; `stored` is
    /// the status the object has.
    pub fn hold(
        &self,
        sp: &StreamPipeline,
        stored: Option<StreamPipelineStatus>,
        status: StreamPipelineStatus,
    ) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, h| h.at.elapsed() < FORGOTTEN_AFTER);
        map.insert(
            sp.uid().unwrap_or_default(),
            Held {
                generation: sp.metadata.generation.unwrap_or_default(),
                over: stored,
                status,
                at: Instant::now(),
            },
        );
    }

    /// Ends the hold for the pipeline `uid`, giving back the status its
    /// object has, if one was held (`None`: nothing was held).
    pub fn release(&self, uid: &str) -> Option<Option<StreamPipelineStatus>> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid).map(|h| h.over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b5a6f0e-1111-2222-3333-444455556666";

    fn first_rollout() -> Outcome<'static> {
        Outcome {
            observed_generation: None,
            generation: 1,
            others_ready: true,
            runner_ready: false,
            runner_reason: condition_reason::PROGRESSING,
            runner_changed: true,
            anything_else: false,
            suspended: false,
        }
    }

    #[test]
    fn only_a_new_generations_rollout_it_just_started_is_held() {
        assert!(may_hold(&first_rollout()));
        let spec_changed = Outcome {
            observed_generation: Some(1),
            generation: 2,
            ..first_rollout()
        };
        assert!(may_hold(&spec_changed));
        let cases = [
            (
                "the generation was reported (held once already)",
                Outcome {
                    observed_generation: Some(1),
                    ..first_rollout()
                },
            ),
            (
                "a part other than the runner is not ready",
                Outcome {
                    others_ready: false,
                    ..first_rollout()
                },
            ),
            (
                "the runner is ready: Ready=True is said at once",
                Outcome {
                    runner_ready: true,
                    runner_reason: condition_reason::RECONCILED,
                    ..first_rollout()
                },
            ),
            (
                "the runner waits for something else",
                Outcome {
                    runner_reason: "WaitingForDependencies",
                    ..first_rollout()
                },
            ),
            (
                "no rollout was started by this reconcile",
                Outcome {
                    runner_changed: false,
                    ..first_rollout()
                },
            ),
            (
                "a failure or a decision to record",
                Outcome {
                    anything_else: true,
                    ..first_rollout()
                },
            ),
            (
                "suspended",
                Outcome {
                    suspended: true,
                    ..first_rollout()
                },
            ),
        ];
        for (why, outcome) in cases {
            assert!(!may_hold(&outcome), "held although {why}");
        }
    }

    fn pipeline(generation: i64, status: Option<StreamPipelineStatus>) -> Arc<StreamPipeline> {
        let mut sp = crate::desired::fixtures::seed();
        sp.metadata.generation = Some(generation);
        sp.status = status;
        Arc::new(sp)
    }

    fn reported(generation: i64) -> StreamPipelineStatus {
        StreamPipelineStatus {
            observed_generation: Some(generation),
            ..Default::default()
        }
    }

    #[test]
    fn a_held_status_stands_in_for_the_stored_one_until_it_is_void() {
        let held = HeldStatuses::default();
        let stored = pipeline(1, None);
        held.hold(&stored, None, reported(1));

        let seen = held.overlay(stored.clone());
        assert_eq!(seen.status, Some(reported(1)));
        assert_eq!(
            held.overlay(seen.clone()).status,
            Some(reported(1)),
            "overlaying twice changes nothing"
        );
        // The next reconcile writes: it gets back the status the object has.
        assert_eq!(held.release(UID), Some(None));
        assert_eq!(held.release(UID), None, "released once");
        assert_eq!(held.overlay(stored.clone()).status, None);

        // A spec changed meanwhile: the held status is of an older generation.
        held.hold(&stored, None, reported(1));
        assert_eq!(held.overlay(pipeline(2, None)).status, None);
        assert_eq!(held.release(UID), None, "dropped as void");

        // Another writer changed the status meanwhile.
        held.hold(&stored, None, reported(1));
        let written = pipeline(1, Some(reported(0)));
        assert_eq!(held.overlay(written).status, Some(reported(0)));
        assert_eq!(held.release(UID), None, "dropped as void");
    }
}
