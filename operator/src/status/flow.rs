//! Report the data flow: the sink's lag and totals, from its consumer
//! group's committed offsets (`millrace.NS.NAME`), the counts their
//! metadata carries and the topic's high watermarks; the last run of each
//! pull source, from the annotation its Lease holder writes
//! (`millrace.io/last-pull`); and from those the `Flowing` condition.
//! Best effort: a failure here leaves the previous figures and never fails
//! a reconcile.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use millrace_api::{
    FlowStatus, LAST_PULL_ANNOTATION, LastPull, PullStatus, StreamPipelineSpec, consumer_group,
    pull_lease_name,
};

use crate::clients::lag::{self, Offsets, Readers};
use crate::credentials::KafkaAuth;
use crate::status::{Cond, reasons};

/// Flow figures are refreshed at most this often unless the operator is
/// told otherwise (`--flow-refresh-seconds`): on a busy pipeline they
/// change all the time, and each status write sets off another reconcile.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(30);

/// A sink with lag that commits nothing for this long is stalled.
pub const STALLED_AFTER: Duration = Duration::from_secs(120);

/// After retention deleted records the sink had not read, `Flowing` stays
/// false this long, so the loss is seen, not only logged.
pub const SKIP_SHOWN_FOR: Duration = Duration::from_secs(600);

/// Above this share of the records handled in a refresh going to the
/// dead-letter topic, the pipeline is `DeadLettering`.
pub const DEAD_LETTER_SHARE: f64 = 0.10;

/// Above this many write timeouts (or overloads) per record handled in a
/// refresh, Cassandra is the bottleneck: a timeout now and then under load
/// is routine, one write in a hundred waiting is not.
pub const OVERLOAD_SHARE: f64 = 0.01;

/// How long after an overload the autoscaler adds no replicas: two
/// default refreshes, so one quiet refresh does not end it (a shorter
/// refresh makes the autoscaler quicker to add, not quicker to forget).
pub const OVERLOAD_HOLD: Duration = Duration::from_secs(2 * DEFAULT_REFRESH.as_secs());

/// The last run of each pull source, as its Lease records it.
pub async fn last_pulls(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: &StreamPipelineSpec,
) -> Vec<PullStatus> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for source in spec.sources.iter().filter(|s| s.http_pull.is_some()) {
        let Ok(Some(lease)) = leases.get_opt(&pull_lease_name(name, &source.name)).await else {
            continue;
        };
        let Some(text) = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LAST_PULL_ANNOTATION))
        else {
            continue;
        };
        let Ok(last) = serde_json::from_str::<LastPull>(text) else {
            continue;
        };
        let Ok(time) = last.time.parse::<Timestamp>() else {
            continue;
        };
        out.push(PullStatus {
            source: source.name.clone(),
            time: Time(time),
            succeeded: last.succeeded(),
            records: i64::try_from(last.records).unwrap_or(i64::MAX),
            message: last.message,
        });
    }
    out
}

/// The flow status: the new figures, read again once `refresh` has passed
/// since the last ones, with `updated` moved only when they changed (so an
/// idle pipeline's status is not rewritten).
#[allow(clippy::too_many_arguments)]
pub async fn flow(
    refresh: Duration,
    offsets: &Readers,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: &StreamPipelineSpec,
    partitions: Option<i32>,
    auth: Option<&KafkaAuth>,
    old: Option<&FlowStatus>,
) -> Option<FlowStatus> {
    if let Some(updated) = old.and_then(|o| o.updated.as_ref()) {
        let age = Timestamp::now().duration_since(updated.0);
        if age.is_positive() && age.unsigned_abs() < refresh {
            return old.cloned();
        }
    }
    let mut new = old.cloned().unwrap_or_default();
    // `partitions`: the topic exists, with that many partitions.
    if let Some(count) = partitions
        && let Ok(reader) = offsets.get(&spec.kafka, auth)
    {
        let group = consumer_group(namespace, name);
        let topic = spec.kafka.topic.name.clone();
        if let Ok(Some(measured)) =
            tokio::task::spawn_blocking(move || lag::read(&reader, &group, &topic, Some(count)))
                .await
        {
            totals(&mut new, old, lag::sum(&measured), Timestamp::now());
        }
    }
    new.last_pulls = last_pulls(client, namespace, name, spec).await;
    let mut unchanged = new.clone();
    unchanged.updated = old.and_then(|o| o.updated.clone());
    if old == Some(&unchanged) {
        return old.cloned();
    }
    if new == FlowStatus::default() {
        return None;
    }
    new.updated = Some(Time(Timestamp::now()));
    Some(new)
}

/// The new figures from the offsets measured `now`, with the rate since
/// the last measurement and when the sink last moved.
fn totals(new: &mut FlowStatus, old: Option<&FlowStatus>, measured: Offsets, now: Timestamp) {
    let handled = |f: &FlowStatus| {
        f.rows_written.unwrap_or(0) + f.rows_failed.unwrap_or(0) + f.records_skipped.unwrap_or(0)
    };
    new.sink_lag = Some(measured.lag);
    new.records_ingested = Some(measured.produced);
    new.rows_failed = Some(measured.dead_lettered);
    new.rows_written = Some((measured.handled - measured.dead_lettered - measured.skipped).max(0));
    if measured.skipped > 0 || old.is_some_and(|o| o.records_skipped.is_some()) {
        new.records_skipped = Some(measured.skipped);
    }
    if measured.skipped > old.and_then(|o| o.records_skipped).unwrap_or(0) {
        new.last_skip = Some(Time(now));
    }
    if measured.timed_out > 0 || old.is_some_and(|o| o.write_timeouts.is_some()) {
        new.write_timeouts = Some(measured.timed_out);
    }
    // The first refresh has nothing to compare with: the counts it reads
    // may be from long ago.
    if let Some(o) = old {
        let timed_out = measured.timed_out - o.write_timeouts.unwrap_or(0);
        let handled_now = (measured.handled - handled(o)).max(1);
        if timed_out > 0 && timed_out as f64 > OVERLOAD_SHARE * handled_now as f64 {
            new.last_overload = Some(Time(now));
        }
    }
    let moved = old.is_none_or(|o| handled(o) != measured.handled);
    if moved || new.sink_progressed.is_none() {
        new.sink_progressed = Some(Time(now));
    }
    // An idle pipeline keeps no rate at all rather than gaining a 0 on its
    // second refresh: a steady state writes nothing.
    let previous_rate = old.and_then(|o| o.rows_per_second);
    new.rows_per_second = old
        .and_then(|o| Some((o.rows_written?, o.updated.as_ref()?.0)))
        .and_then(|(before, at)| {
            let secs = now.duration_since(at).as_secs_f64();
            let rows = new.rows_written.unwrap_or(0) - before;
            if secs >= 1.0 && rows > 0 {
                Some((rows as f64 / secs).round() as i64)
            } else {
                previous_rate.map(|_| 0)
            }
        });
}

/// Why Cassandra is the bottleneck, if it is, for the autoscaler to hold
/// back: the sink's writes met timeouts or overload lately (as of the last
/// measurement), or the sink runs and has committed nothing for a while
/// (`SinkStalled`; a sink with no ready replica is stalled for reasons
/// replicas can fix).
pub fn cassandra_pushback(
    flow: Option<&FlowStatus>,
    flowing: &Cond,
    sink_ready: Option<i32>,
) -> Option<String> {
    if flowing.reason == reasons::SINK_STALLED && sink_ready.unwrap_or(0) > 0 {
        return Some(format!("the sink writes nothing: {}", flowing.message));
    }
    let flow = flow?;
    let at = flow.last_overload.as_ref()?;
    let measured_at = flow.updated.as_ref().map_or(at.0, |u| u.0);
    let ago = measured_at.duration_since(at.0);
    (!ago.is_negative() && ago.unsigned_abs() < OVERLOAD_HOLD).then(|| {
        format!(
            "Cassandra timed out or refused as overloaded more than 1 in 100 of the sink's writes (at {}; {} such tries in all)",
            at.0,
            flow.write_timeouts.unwrap_or(0)
        )
    })
}

/// The Event's note when retention deleted more records the sink had not
/// read since the last refresh.
pub fn skipped_note(old: Option<&FlowStatus>, new: Option<&FlowStatus>) -> Option<String> {
    let before = old.and_then(|o| o.records_skipped).unwrap_or(0);
    let now = new?.records_skipped?;
    (now > before).then(|| {
        format!(
            "the topic's retention deleted {} records before the sink read them ({now} in all): they are lost to the table",
            now - before
        )
    })
}

/// The `Flowing` condition: whether records reach the table. Judged on the
/// last refresh in which the sink handled records, so a pipeline that
/// dead-lettered everything stays `DeadLettering` while nothing new comes.
pub fn flowing(
    old: Option<&FlowStatus>,
    new: Option<&FlowStatus>,
    previous: Option<&Cond>,
    dead_letter_topic: &str,
    now: Timestamp,
) -> Cond {
    let ok = |message: String| Cond::new(FLOWING, true, reasons::FLOWING, message);
    let Some(new) = new else {
        return ok("no figures yet: the topic's offsets have not been read".into());
    };
    if let Some(failed) = new.last_pulls.iter().find(|p| !p.succeeded) {
        return Cond::new(
            FLOWING,
            false,
            reasons::PULL_FAILING,
            format!(
                "the last run of pull source {} failed: {}",
                failed.source,
                failed.message.as_deref().unwrap_or("no reason given")
            ),
        );
    }
    if let Some(at) = &new.last_skip {
        let ago = now.duration_since(at.0);
        if !ago.is_negative() && ago.unsigned_abs() < SKIP_SHOWN_FOR {
            return Cond::new(
                FLOWING,
                false,
                reasons::RECORDS_SKIPPED,
                format!(
                    "the topic's retention deleted {} records before the sink read them (the last at {}): they are lost to the table; raise the topic's retention.ms or find why the sink fell behind",
                    new.records_skipped.unwrap_or(0),
                    at.0
                ),
            );
        }
    }
    let lag = new.sink_lag.unwrap_or(0);
    // As of the last measurement: figures that could not be read since
    // (Kafka unreachable) say nothing new about the sink.
    let measured_at = new.updated.as_ref().map_or(now, |u| u.0);
    if let Some(since) = &new.sink_progressed {
        let idle = measured_at.duration_since(since.0);
        if lag > 0 && idle.is_positive() && idle.unsigned_abs() >= STALLED_AFTER {
            return Cond::new(
                FLOWING,
                false,
                reasons::SINK_STALLED,
                format!(
                    "the sink has {lag} records to write and has committed none since {}; see the sink's logs and its millrace_writes_waiting metric",
                    since.0
                ),
            );
        }
    }
    let handled = |f: &FlowStatus| f.rows_written.unwrap_or(0) + f.rows_failed.unwrap_or(0);
    let (base_handled, base_failed) =
        old.map_or((0, 0), |o| (handled(o), o.rows_failed.unwrap_or(0)));
    let delta_handled = handled(new) - base_handled;
    let delta_failed = new.rows_failed.unwrap_or(0) - base_failed;
    if delta_handled <= 0 {
        // Nothing handled since the last refresh: the last verdict stands.
        if let Some(previous) = previous.filter(|p| p.reason == reasons::DEAD_LETTERING) {
            return previous.clone();
        }
    } else if delta_failed as f64 > DEAD_LETTER_SHARE * delta_handled as f64 {
        return Cond::new(
            FLOWING,
            false,
            reasons::DEAD_LETTERING,
            format!(
                "{delta_failed} of the last {delta_handled} records the sink read went to the dead-letter topic {dead_letter_topic} (its headers say why); fix the mapping or the table"
            ),
        );
    }
    ok(format!(
        "the sink keeps up (lag {lag}); rows written {}, dead-lettered {}",
        new.rows_written.unwrap_or(0),
        new.rows_failed.unwrap_or(0)
    ))
}

const FLOWING: &str = millrace_api::condition_type::FLOWING;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn measured(lag: i64, handled: i64, dead_lettered: i64) -> Offsets {
        Offsets {
            lag,
            produced: lag + handled,
            handled,
            dead_lettered,
            skipped: 0,
            timed_out: 0,
        }
    }

    fn refresh(old: Option<&FlowStatus>, m: Offsets, now: i64) -> FlowStatus {
        let mut new = old.cloned().unwrap_or_default();
        totals(&mut new, old, m, at(now));
        new.updated = Some(Time(at(now)));
        new
    }

    #[test]
    fn totals_come_from_the_offsets_and_the_rate_from_two_refreshes() {
        let first = refresh(None, measured(10, 100, 4), 1000);
        assert_eq!(first.rows_written, Some(96));
        assert_eq!(first.rows_failed, Some(4));
        assert_eq!(first.records_ingested, Some(110));
        assert_eq!(first.sink_lag, Some(10));
        assert_eq!(first.rows_per_second, None, "one refresh gives no rate");
        let second = refresh(Some(&first), measured(0, 400, 4), 1030);
        assert_eq!(second.rows_written, Some(396));
        assert_eq!(second.rows_per_second, Some(10), "300 rows in 30 s");
        assert_eq!(second.sink_progressed, Some(Time(at(1030))));
        let idle = refresh(Some(&second), measured(0, 400, 4), 1060);
        assert_eq!(idle.rows_per_second, Some(0));
        assert_eq!(idle.sink_progressed, Some(Time(at(1030))), "did not move");
    }

    #[test]
    fn an_idle_pipeline_gets_no_rate_so_its_status_stays_put() {
        let first = refresh(None, measured(0, 0, 0), 1000);
        let second = refresh(Some(&first), measured(0, 0, 0), 1030);
        assert_eq!(second.rows_per_second, None);
        let mut unchanged = second.clone();
        unchanged.updated = first.updated.clone();
        assert_eq!(unchanged, first, "nothing to write");
    }

    #[test]
    fn a_pipeline_fed_only_poison_is_dead_lettering_and_stays_so_while_idle() {
        let first = refresh(None, measured(0, 50, 50), 1000);
        let c = flowing(None, Some(&first), None, "t.dlq", at(1000));
        assert_eq!((c.ready, c.reason.as_str()), (false, "DeadLettering"));
        assert!(c.message.contains("50 of the last 50"), "{}", c.message);
        // No new records: still dead-lettering.
        let idle = refresh(Some(&first), measured(0, 50, 50), 1030);
        let again = flowing(Some(&first), Some(&idle), Some(&c), "t.dlq", at(1030));
        assert_eq!(again.reason, "DeadLettering");
        // Good records again: flowing.
        let good = refresh(Some(&idle), measured(0, 150, 52), 1060);
        let c = flowing(Some(&idle), Some(&good), Some(&again), "t.dlq", at(1060));
        assert!(c.ready, "{}", c.message);
    }

    #[test]
    fn a_few_dead_letters_among_many_rows_still_flow() {
        let first = refresh(None, measured(0, 1000, 5), 1000);
        assert!(flowing(None, Some(&first), None, "t.dlq", at(1000)).ready);
    }

    #[test]
    fn a_sink_with_lag_that_commits_nothing_is_stalled() {
        let first = refresh(None, measured(500, 100, 0), 1000);
        let later = refresh(Some(&first), measured(900, 100, 0), 1100);
        let c = flowing(Some(&first), Some(&later), None, "t.dlq", at(1100));
        assert!(c.ready, "100 s without progress is not yet a stall");
        let stalled = refresh(Some(&later), measured(1200, 100, 0), 1130);
        let c = flowing(Some(&later), Some(&stalled), None, "t.dlq", at(1130));
        assert_eq!((c.ready, c.reason.as_str()), (false, "SinkStalled"));
        // No lag: an idle sink is not stalled.
        let idle = refresh(Some(&first), measured(0, 600, 0), 2000);
        let quiet = refresh(Some(&idle), measured(0, 600, 0), 3000);
        assert!(flowing(Some(&idle), Some(&quiet), None, "t.dlq", at(3000)).ready);
    }

    #[test]
    fn a_failed_pull_is_pull_failing() {
        let mut f = refresh(None, measured(0, 0, 0), 1000);
        f.last_pulls.push(PullStatus {
            source: "api".into(),
            time: Time(at(990)),
            succeeded: false,
            records: 0,
            message: Some("HTTP 500".into()),
        });
        let c = flowing(None, Some(&f), None, "t.dlq", at(1000));
        assert_eq!((c.ready, c.reason.as_str()), (false, "PullFailing"));
        assert!(c.message.contains("api") && c.message.contains("HTTP 500"));
    }

    #[test]
    fn records_lost_to_retention_are_counted_apart_and_shown_for_a_while() {
        let first = refresh(None, measured(0, 100, 0), 1000);
        assert_eq!(first.records_skipped, None, "nothing lost: no field");
        let mut m = measured(0, 160, 2);
        m.skipped = 50;
        let lost = refresh(Some(&first), m, 1030);
        assert_eq!(lost.records_skipped, Some(50));
        assert_eq!(
            lost.rows_written,
            Some(108),
            "160 handled, 2 dead, 50 never read"
        );
        assert_eq!(lost.last_skip, Some(Time(at(1030))));
        let c = flowing(Some(&first), Some(&lost), None, "t.dlq", at(1030));
        assert_eq!((c.ready, c.reason.as_str()), (false, "RecordsSkipped"));
        assert!(c.message.contains("deleted 50 records"), "{}", c.message);
        // Later refreshes keep the total and the time of the loss.
        let mut m = measured(0, 260, 2);
        m.skipped = 50;
        let later = refresh(Some(&lost), m, 1300);
        assert_eq!(later.last_skip, Some(Time(at(1030))));
        assert!(!flowing(Some(&lost), Some(&later), None, "t.dlq", at(1300)).ready);
        let c = flowing(Some(&lost), Some(&later), None, "t.dlq", at(1700));
        assert!(c.ready, "shown for ten minutes: {}", c.message);
    }

    #[test]
    fn write_timeouts_on_more_than_one_write_in_a_hundred_are_an_overload() {
        let first = refresh(None, measured(5000, 1000, 0), 1000);
        assert_eq!(first.write_timeouts, None, "none: no field");
        let mut m = measured(4000, 2000, 0);
        m.timed_out = 5;
        let few = refresh(Some(&first), m, 1030);
        assert_eq!(few.write_timeouts, Some(5));
        assert_eq!(few.last_overload, None, "5 in 1000 is routine");
        let ok = Cond::new(FLOWING, true, reasons::FLOWING, "ok");
        assert_eq!(cassandra_pushback(Some(&few), &ok, Some(1)), None);
        let mut m = measured(3900, 2100, 0);
        m.timed_out = 40;
        let many = refresh(Some(&few), m, 1060);
        assert_eq!(many.last_overload, Some(Time(at(1060))));
        let why = cassandra_pushback(Some(&many), &ok, Some(1)).expect("pushback");
        assert!(why.contains("40 such tries"), "{why}");
        // It holds for two refreshes, then ends.
        let mut m = measured(3000, 3000, 0);
        m.timed_out = 40;
        let calm = refresh(Some(&many), m, 1090);
        assert!(cassandra_pushback(Some(&calm), &ok, Some(1)).is_some());
        let calmer = refresh(Some(&calm), m, 1120);
        assert_eq!(cassandra_pushback(Some(&calmer), &ok, Some(1)), None);
    }

    #[test]
    fn a_running_sink_that_writes_nothing_is_pushback_and_one_without_pods_is_not() {
        let stalled = Cond::new(
            FLOWING,
            false,
            reasons::SINK_STALLED,
            "the sink has 9 records",
        );
        let f = refresh(None, measured(9, 0, 0), 1000);
        let why = cassandra_pushback(Some(&f), &stalled, Some(2)).expect("pushback");
        assert!(why.contains("9 records"), "{why}");
        assert_eq!(cassandra_pushback(Some(&f), &stalled, Some(0)), None);
        assert_eq!(cassandra_pushback(None, &stalled, None), None);
    }

    #[test]
    fn figures_that_could_not_be_read_make_no_stall() {
        // Last measured at 1000 with the sink moving; Kafka cannot be read
        // since, so the status keeps those figures.
        let first = refresh(None, measured(500, 100, 0), 1000);
        let c = flowing(None, Some(&first), None, "t.dlq", at(1500));
        assert!(c.ready, "{}", c.message);
    }
}
