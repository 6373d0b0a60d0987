//! The sink's replicas from its lag (`spec.runner.autoscale`), decided by
//! one pure function of what was measured and what was decided last.
//!
//! The lag asks for `ceil(lag / targetLagPerReplica)` replicas, within
//! `minReplicas` and `maxReplicas` and never more than the topic's
//! partitions (a consumer past them reads nothing). More replicas are given
//! at once: lag is records waiting. Fewer only once the lag has asked for
//! fewer for the whole cool-down, and the cool-down has passed since the
//! last change; then the sink goes to the most the lag asked for in that
//! time, so a dip in the lag does not scale down what a moment later is
//! needed again. While Cassandra is the bottleneck, more writers would only
//! add load to it: the scale-up is held back, with the reason.
//!
//! The decision's state lives in `status.autoscale`, so an operator that
//! restarts (or a new leader) carries on where the last one left off, and
//! the same inputs give the same status: a steady state writes nothing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use millrace_api::{AutoscaleSpec, AutoscaleStatus, autoscale_reason as reason};

use crate::events::Notice;

/// What the decision is made on.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// Records on the topic the sink has not written, as last measured;
    /// `None` until it has been.
    pub lag: Option<i64>,
    /// Partitions of the topic, when known.
    pub partitions: Option<i32>,
    /// The last decision, if autoscaling has decided before.
    pub previous: Option<&'a AutoscaleStatus>,
    /// The replicas to start from when there is no previous decision: the
    /// sink Deployment's (or `sinkReplicas`).
    pub current: i32,
    /// Why Cassandra is the bottleneck now, if it is.
    pub pushback: Option<String>,
    pub now: Timestamp,
}

/// The new `status.autoscale` and, when the decision changes or holds
/// back the replicas, the Event that says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: AutoscaleStatus,
    pub notice: Option<Notice>,
}

/// The replicas the lag asks for, within the bounds: `(lower, upper)` are
/// `minReplicas` and the lesser of `maxReplicas` and the partitions (the
/// partitions win over `minReplicas` too).
pub fn bounds(spec: &AutoscaleSpec, partitions: Option<i32>) -> (i32, i32) {
    let max = spec.max_replicas.max(1);
    let upper = partitions.map_or(max, |p| max.min(p.max(1)));
    let lower = spec.min_replicas.clamp(1, upper);
    (lower, upper)
}

/// `ceil(lag / target)`, within `(lower, upper)`.
pub fn wanted(lag: i64, target: i64, (lower, upper): (i32, i32)) -> i32 {
    let target = target.max(1);
    let lag = lag.max(0);
    let n = lag / target + i64::from(lag % target != 0);
    i32::try_from(n).unwrap_or(i32::MAX).clamp(lower, upper)
}

fn seconds_since(now: Timestamp, then: Option<&Time>) -> Option<i64> {
    then.map(|t| now.duration_since(t.0).as_secs())
}

/// The decision for this reconcile.
pub fn decide(spec: &AutoscaleSpec, o: &Observed<'_>) -> Decision {
    let (lower, upper) = bounds(spec, o.partitions);
    let previous = o.previous;
    let before = previous.map_or(o.current, |p| p.replicas);
    let last_scale_time = previous.and_then(|p| p.last_scale_time.clone());
    let limit = match o.partitions {
        Some(p) if p < spec.max_replicas => format!("{p} partitions"),
        _ => format!("maxReplicas {}", spec.max_replicas),
    };
    let status = |replicas: i32, desired: i32, why: &str, message: String| AutoscaleStatus {
        replicas,
        desired_replicas: desired,
        last_scale_time: if replicas == before {
            last_scale_time.clone()
        } else {
            Some(Time(o.now))
        },
        scale_down_pending_since: None,
        scale_down_to: None,
        reason: why.to_owned(),
        message,
    };
    let scaled = |status: AutoscaleStatus| {
        let notice = Notice::normal(&status.reason, status.message.clone());
        Decision {
            status,
            notice: Some(notice),
        }
    };
    let quiet = |status: AutoscaleStatus| Decision {
        status,
        notice: None,
    };

    let Some(lag) = o.lag else {
        // Nothing measured yet: the replicas stay, within the bounds.
        let replicas = before.clamp(lower, upper);
        let message = format!(
            "the sink's lag has not been measured yet; {replicas} replicas (bounds {lower} to {upper})"
        );
        return if replicas == before {
            quiet(status(replicas, replicas, reason::STEADY, message))
        } else {
            scaled(status(
                replicas,
                replicas,
                if replicas > before {
                    reason::SCALED_UP
                } else {
                    reason::SCALED_DOWN
                },
                format!("from {before} to {replicas}: the bounds are {lower} to {upper} ({limit})"),
            ))
        };
    };
    let target = spec.target_lag_per_replica;
    let desired = wanted(lag, target, (lower, upper));
    let figures = format!("lag {lag} records, target {target} per replica");

    // Bounds changed under the replicas (maxReplicas lowered, minReplicas
    // raised): they apply at once, with no cool-down.
    if before > upper {
        return scaled(status(
            upper,
            desired,
            reason::SCALED_DOWN,
            format!(
                "from {before} to {upper}: at most {upper} replicas ({limit}); {figures} asks for {desired}"
            ),
        ));
    }
    if before < lower {
        // Up to the minimum at once; past it as the lag asks, unless
        // Cassandra holds that part back.
        let to = if o.pushback.is_some() { lower } else { desired };
        return scaled(status(
            to,
            desired,
            reason::SCALED_UP,
            format!("from {before} to {to}: minReplicas is {lower}; {figures} asks for {desired}"),
        ));
    }

    if desired > before {
        if let Some(why) = &o.pushback {
            let held = status(
                before,
                desired,
                reason::SCALE_HELD_BACK,
                format!(
                    "kept at {before} replicas though {figures} asks for {desired}: {why}; more writers would only add load to Cassandra"
                ),
            );
            // One Event when the hold begins or asks for another count,
            // not one per refresh while it lasts.
            let repeated = previous.is_some_and(|p| {
                p.reason == reason::SCALE_HELD_BACK && p.desired_replicas == desired
            });
            return if repeated { quiet(held) } else { scaled(held) };
        }
        let capped = if desired == upper && lag > i64::from(upper) * target {
            format!(" (capped by {limit})")
        } else {
            String::new()
        };
        return scaled(status(
            desired,
            desired,
            reason::SCALED_UP,
            format!("from {before} to {desired}: {figures}{capped}"),
        ));
    }

    if desired < before {
        let since = previous
            .and_then(|p| p.scale_down_pending_since.clone())
            .unwrap_or(Time(o.now));
        let to = previous
            .and_then(|p| p.scale_down_to)
            .map_or(desired, |t| t.max(desired));
        let cooldown = i64::from(spec.cooldown_seconds.max(0));
        let waited = seconds_since(o.now, Some(&since)).unwrap_or(0);
        let since_change = seconds_since(o.now, last_scale_time.as_ref()).unwrap_or(i64::MAX);
        if waited >= cooldown && since_change >= cooldown {
            let mut s = status(
                to,
                desired,
                reason::SCALED_DOWN,
                format!(
                    "from {before} to {to}: {figures} asks for {desired}, and for at most {to} over the {cooldown} s cool-down"
                ),
            );
            // Still fewer wanted than the new count: that wait starts now.
            if desired < to {
                s.scale_down_pending_since = Some(Time(o.now));
                s.scale_down_to = Some(desired);
            }
            return scaled(s);
        }
        let from = match &last_scale_time {
            Some(t) if t.0 > since.0 => t.0,
            _ => since.0,
        };
        let at = from
            .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(cooldown))
            .unwrap_or(from);
        let mut s = status(
            before,
            desired,
            reason::COOLING_DOWN,
            format!(
                "{before} replicas; {figures} asks for {desired}: scaling down to {to} at {at} if the lag stays low"
            ),
        );
        s.scale_down_pending_since = Some(since);
        s.scale_down_to = Some(to);
        return quiet(s);
    }

    quiet(status(
        before,
        desired,
        reason::STEADY,
        format!("{before} replicas, as {figures} asks (bounds {lower} to {upper})"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: i32, max: i32, target: i64, cooldown: i32) -> AutoscaleSpec {
        AutoscaleSpec {
            min_replicas: min,
            max_replicas: max,
            target_lag_per_replica: target,
            cooldown_seconds: cooldown,
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn observe(
        lag: Option<i64>,
        partitions: Option<i32>,
        previous: Option<&AutoscaleStatus>,
        now: i64,
    ) -> Observed<'_> {
        Observed {
            lag,
            partitions,
            previous,
            current: 1,
            pushback: None,
            now: at(now),
        }
    }

    /// Runs the decisions over a series of (seconds, lag) measurements.
    fn run(spec: &AutoscaleSpec, partitions: i32, series: &[(i64, i64)]) -> Vec<Decision> {
        let mut out: Vec<Decision> = Vec::new();
        for (now, lag) in series {
            let previous = out.last().map(|d| d.status.clone());
            out.push(decide(
                spec,
                &observe(Some(*lag), Some(partitions), previous.as_ref(), *now),
            ));
        }
        out
    }

    #[test]
    fn the_lag_asks_for_one_replica_per_target_within_the_bounds() {
        let b = (1, 8);
        assert_eq!(wanted(0, 100, b), 1, "no lag: the minimum");
        assert_eq!(wanted(1, 100, b), 1);
        assert_eq!(wanted(100, 100, b), 1);
        assert_eq!(wanted(101, 100, b), 2, "rounded up");
        assert_eq!(wanted(750, 100, b), 8);
        assert_eq!(wanted(10_000, 100, b), 8, "never past the upper bound");
        assert_eq!(wanted(i64::MAX, 1, b), 8, "no overflow");
        assert_eq!(wanted(-5, 100, (2, 8)), 2, "a negative lag is none");
        assert_eq!(wanted(5, 0, b), 5, "a zero target is taken as 1");
    }

    #[test]
    fn the_partitions_cap_the_replicas_even_below_min_replicas() {
        assert_eq!(bounds(&spec(1, 8, 10, 0), Some(4)), (1, 4));
        assert_eq!(bounds(&spec(1, 8, 10, 0), None), (1, 8));
        assert_eq!(bounds(&spec(1, 3, 10, 0), Some(12)), (1, 3));
        assert_eq!(bounds(&spec(6, 8, 10, 0), Some(4)), (4, 4));
        assert_eq!(bounds(&spec(0, 0, 10, 0), Some(0)), (1, 1), "never zero");
    }

    #[test]
    fn lag_scales_up_at_once_to_the_partitions_then_down_after_the_cool_down() {
        let s = spec(1, 8, 100, 60);
        let d = run(
            &s,
            4,
            &[
                (0, 0),     // steady at 1
                (30, 5000), // backlog: up to 4 (the partitions), not 8
                (60, 2500), // still asks for 4
                (90, 150),  // asks for 2: the cool-down starts
                (120, 0),   // asks for 1; the most asked for since 90 is 2
                (150, 0),   // 60 s since 90: down to 2
                (180, 0),   // 30 s after that change: waiting
                (210, 0),   // 60 s since the change: down to 1
                (240, 0),   // steady
            ],
        );
        let replicas: Vec<i32> = d.iter().map(|d| d.status.replicas).collect();
        assert_eq!(replicas, [1, 4, 4, 4, 4, 2, 2, 1, 1]);
        let reasons: Vec<&str> = d.iter().map(|d| d.status.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "Steady",
                "ScaledUp",
                "Steady",
                "CoolingDown",
                "CoolingDown",
                "ScaledDown",
                "CoolingDown",
                "ScaledDown",
                "Steady"
            ]
        );
        assert!(
            d[1].status.message.contains("capped by 4 partitions"),
            "{}",
            d[1].status.message
        );
        assert!(d[1].status.message.contains("lag 5000"));
        assert_eq!(d[1].status.last_scale_time, Some(Time(at(30))));
        assert_eq!(d[2].status.last_scale_time, Some(Time(at(30))), "kept");
        assert_eq!(d[4].status.scale_down_pending_since, Some(Time(at(90))));
        assert_eq!(d[4].status.scale_down_to, Some(2));
        assert_eq!(d[5].status.last_scale_time, Some(Time(at(150))));
        assert_eq!(d[8].status.scale_down_pending_since, None);
        // An Event for each change, none for the waits and the steady ones.
        let events: Vec<(usize, &str)> = d
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.notice.as_ref().map(|n| (i, n.reason.as_str())))
            .collect();
        assert_eq!(
            events,
            [(1, "ScaledUp"), (5, "ScaledDown"), (7, "ScaledDown")]
        );
        assert!(
            d[5].notice
                .as_ref()
                .is_some_and(|n| n.note.contains("lag 0")),
            "the Event has the figures"
        );
    }

    #[test]
    fn a_lag_that_comes_back_during_the_cool_down_cancels_the_scale_down() {
        let s = spec(1, 8, 100, 60);
        let d = run(&s, 8, &[(0, 800), (30, 0), (60, 0), (70, 750), (100, 0)]);
        let replicas: Vec<i32> = d.iter().map(|d| d.status.replicas).collect();
        assert_eq!(replicas, [8, 8, 8, 8, 8]);
        assert_eq!(d[3].status.reason, "Steady");
        assert_eq!(d[3].status.scale_down_pending_since, None, "cancelled");
        assert_eq!(
            d[4].status.scale_down_pending_since,
            Some(Time(at(100))),
            "the wait starts again"
        );
    }

    #[test]
    fn the_scale_down_waits_for_the_cool_down_after_the_last_change_too() {
        let s = spec(1, 8, 100, 60);
        // Up at 0; the lag is gone at 10 already: no scale-down before 60.
        let d = run(&s, 8, &[(0, 400), (10, 0), (50, 0), (60, 0)]);
        let replicas: Vec<i32> = d.iter().map(|d| d.status.replicas).collect();
        assert_eq!(replicas, [4, 4, 4, 4], "60 s since 10 not yet passed");
        let d = run(&s, 8, &[(0, 400), (10, 0), (50, 0), (70, 0)]);
        assert_eq!(d[3].status.replicas, 1);
    }

    #[test]
    fn a_zero_cool_down_scales_down_at_once() {
        let s = spec(2, 8, 10, 0);
        let d = run(&s, 8, &[(0, 80), (30, 0)]);
        assert_eq!(d[1].status.replicas, 2, "to minReplicas");
        assert_eq!(d[1].status.reason, "ScaledDown");
    }

    #[test]
    fn cassandra_as_the_bottleneck_holds_the_scale_up_back_with_one_event() {
        let s = spec(1, 8, 100, 60);
        let mut o = observe(Some(600), Some(8), None, 0);
        o.pushback = Some("Cassandra timed out 40 of the last 900 writes".into());
        let held = decide(&s, &o);
        assert_eq!(held.status.replicas, 1);
        assert_eq!(held.status.desired_replicas, 6);
        assert_eq!(held.status.reason, "ScaleHeldBack");
        assert!(held.status.message.contains("timed out 40"));
        assert!(held.status.message.contains("lag 600"));
        assert_eq!(held.status.last_scale_time, None);
        assert_eq!(
            held.notice.as_ref().map(|n| n.reason.as_str()),
            Some("ScaleHeldBack")
        );
        // The hold lasts: no second Event for the same ask.
        let mut o = observe(Some(600), Some(8), Some(&held.status), 30);
        o.pushback = Some("Cassandra timed out 40 of the last 900 writes".into());
        let again = decide(&s, &o);
        assert_eq!(again.status.reason, "ScaleHeldBack");
        assert!(again.notice.is_none());
        // Cassandra keeps up again: up at once.
        let up = decide(&s, &observe(Some(600), Some(8), Some(&again.status), 60));
        assert_eq!(up.status.replicas, 6);
        assert_eq!(up.status.reason, "ScaledUp");
    }

    #[test]
    fn a_pushback_does_not_stop_a_scale_down() {
        let s = spec(1, 8, 100, 0);
        let up = decide(&s, &observe(Some(400), Some(8), None, 0));
        let mut o = observe(Some(0), Some(8), Some(&up.status), 30);
        o.pushback = Some("Cassandra is slow".into());
        assert_eq!(decide(&s, &o).status.replicas, 1);
    }

    #[test]
    fn new_bounds_apply_at_once() {
        let up = decide(&spec(1, 8, 100, 300), &observe(Some(800), Some(8), None, 0));
        assert_eq!(up.status.replicas, 8);
        // maxReplicas lowered to 3: down at once, no cool-down.
        let down = decide(
            &spec(1, 3, 100, 300),
            &observe(Some(800), Some(8), Some(&up.status), 10),
        );
        assert_eq!(down.status.replicas, 3);
        assert_eq!(down.status.reason, "ScaledDown");
        // minReplicas raised to 5 while idle at 3: up at once.
        let raised = decide(
            &spec(5, 8, 100, 300),
            &observe(Some(0), Some(8), Some(&down.status), 20),
        );
        assert_eq!(raised.status.replicas, 5);
        assert_eq!(raised.status.reason, "ScaledUp");
    }

    #[test]
    fn before_any_lag_is_measured_the_replicas_stay_within_the_bounds() {
        let mut o = observe(None, Some(4), None, 0);
        o.current = 3;
        let d = decide(&spec(1, 8, 100, 60), &o);
        assert_eq!((d.status.replicas, d.status.reason.as_str()), (3, "Steady"));
        assert!(d.notice.is_none());
        o.current = 6;
        let d = decide(&spec(1, 8, 100, 60), &o);
        assert_eq!(d.status.replicas, 4, "never past the partitions");
    }

    #[test]
    fn the_same_inputs_give_the_same_status() {
        let s = spec(1, 8, 100, 60);
        for lag in [0, 150, 5000] {
            let first = decide(&s, &observe(Some(lag), Some(4), None, 0));
            let again = decide(&s, &observe(Some(lag), Some(4), Some(&first.status), 3));
            let third = decide(&s, &observe(Some(lag), Some(4), Some(&again.status), 6));
            assert_eq!(again.status, third.status, "lag {lag}");
            assert!(third.notice.is_none(), "lag {lag}");
        }
    }
}
