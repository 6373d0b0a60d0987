//! Dead letters can be replayed, and records lost to retention are shown:
//! - poison records are dead-lettered; the mapping is fixed; the annotation
//!   `millrace.io/replay-dead-letters` replays them into the table, each
//!   with its first write timestamp (a newer version already written
//!   stays); what fails again goes back; the same token again does
//!   nothing, and the next token starts where the last replay ended;
//! - records the topic's retention deleted before the sink read them are
//!   counted in `status.flow.recordsSkipped`, with an Event and
//!   `Flowing=False, reason RecordsSkipped`.

mod operator_common;

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use millrace_api::{DeadLetterReplayStatus, ReplayState, StreamPipeline};
use millrace_testsupport::kube_helpers::{pod_ip, pod_ready, pods};
use millrace_testsupport::tools::http_get;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, condition};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// Produces with a plain Kafka producer, keyed by the partition key.
async fn produce(s: &Scenario, records: &[(String, Value)]) -> anyhow::Result<()> {
    let producer: FutureProducer = s
        .world
        .kafka_config()
        .set("enable.idempotence", "true")
        .create()?;
    for (key, value) in records {
        let payload = value.to_string();
        producer
            .send(
                FutureRecord::to(&s.topic).key(key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

fn flow(sp: &StreamPipeline) -> millrace_api::FlowStatus {
    sp.status
        .as_ref()
        .and_then(|s| s.flow.clone())
        .unwrap_or_default()
}

fn replay_of(sp: &StreamPipeline) -> Option<DeadLetterReplayStatus> {
    sp.status
        .as_ref()
        .and_then(|s| s.dead_letter_replay.clone())
}

/// The table's `v` for each `id`.
async fn readings(s: &Scenario) -> anyhow::Result<Vec<(String, Option<i32>)>> {
    let session = s.world.cassandra_session().await?;
    let rows = session
        .query_unpaged(format!("SELECT id, v FROM {}.readings", s.keyspace), &[])
        .await?
        .into_rows_result()?;
    let mut out: Vec<(String, Option<i32>)> = rows
        .rows::<(String, Option<i32>)>()?
        .collect::<Result<_, _>>()?;
    out.sort();
    Ok(out)
}

async fn wait_replay(
    s: &Scenario,
    name: &str,
    token: &str,
) -> anyhow::Result<DeadLetterReplayStatus> {
    poll_until(
        &format!("replay {token} to be done"),
        Deadline::secs(180),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(replay_of(&sp).filter(|r| r.token == token && r.state == ReplayState::Done))
        },
    )
    .await
}

/// The sink Pods' summed `millrace_dead_letter_replay_partitions{state}`,
/// once every sink Pod of the current template is Ready.
async fn sink_replay_partitions(s: &Scenario, name: &str) -> anyhow::Result<(f64, f64)> {
    let api = s.ns.api::<Pod>();
    let list = pods(
        &api,
        &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=sink"),
    )
    .await?;
    // A Pod being deleted keeps its address in the list after its
    // container is gone; only the live ones hold partitions.
    let list: Vec<_> = list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    anyhow::ensure!(!list.is_empty(), "no sink Pod");
    let (mut active, mut done) = (0.0, 0.0);
    for pod in &list {
        anyhow::ensure!(pod_ready(pod), "a sink Pod is not Ready");
        let ip = pod_ip(pod).context("pod IP")?;
        let text = http_get(
            &format!("{ip}:{}", millrace_api::ports::METRICS),
            "/metrics",
        )
        .await?;
        for line in text.lines() {
            let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if line.starts_with("millrace_dead_letter_replay_partitions{state=\"active\"}") {
                active += value(line).unwrap_or(0.0);
            } else if line.starts_with("millrace_dead_letter_replay_partitions{state=\"done\"}") {
                done += value(line).unwrap_or(0.0);
            }
        }
    }
    Ok((active, done))
}

#[tokio::test]
async fn dead_letters_are_replayed_once_per_token_through_the_fixed_mapping() -> anyhow::Result<()>
{
    let s = Scenario::new("op-replay").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "replay";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    sp["spec"]["cassandra"]["table"] = json!({
        "name": "readings",
        "columns": [
            {"name": "id", "type": "text", "from": "/id"},
            {"name": "v", "type": "int", "from": "/v"},
        ],
        "partitionKey": ["id"],
    });
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // 30 records whose `v` is no int, but whose `w` is; 3 that no mapping
    // can write.
    let mut records: Vec<(String, Value)> = (0..30)
        .map(|i| {
            (
                format!("r{i}"),
                json!({"id": format!("r{i}"), "v": format!("bad{i}"), "w": i}),
            )
        })
        .collect();
    records.extend((0..3).map(|i| {
        (
            format!("z{i}"),
            json!({"id": format!("z{i}"), "v": "bad", "w": "zz"}),
        )
    }));
    produce(&s, &records).await?;
    // Then a newer version of r0 that the mapping writes.
    produce(
        &s,
        &[("r0".into(), json!({"id": "r0", "v": 1000, "w": 1000}))],
    )
    .await?;
    let dlq = format!("{}.dlq", s.topic);
    poll_until("33 dead letters and 1 row", Deadline::secs(120), || async {
        let sp = s.pipelines().get(name).await?;
        let f = flow(&sp);
        Ok((f.rows_failed == Some(33) && f.rows_written == Some(1)).then_some(()))
    })
    .await?;
    assert_eq!(operator_common::topic_records(&s.world, &dlq)?, 33);
    assert_eq!(readings(&s).await?, [("r0".to_owned(), Some(1000))]);

    // The fix: `v` from `w`. Then the replay.
    let live: StreamPipeline = s.pipelines().get(name).await?;
    let mut table = serde_json::to_value(&live.spec.cassandra.table)?;
    table["columns"][1]["from"] = json!("/w");
    s.merge(name, json!({"spec": {"cassandra": {"table": table}}}))
        .await?;
    // Still DeadLettering (nothing new was read), but the fixed mapping is
    // rolled out.
    s.wait_condition(name, "RunnerReady", "True", None, 120)
        .await?;
    s.merge(
        name,
        json!({"metadata": {"annotations": {"millrace.io/replay-dead-letters": "fix-1"}}}),
    )
    .await?;
    let done = wait_replay(&s, name, "fix-1").await?;
    println!("replay fix-1: {done:?}");
    assert_eq!(
        (done.replayed, done.failed_again, done.remaining),
        (30, 3, 0)
    );

    let mut expected: Vec<(String, Option<i32>)> =
        (0..30).map(|i| (format!("r{i}"), Some(i))).collect();
    expected[0].1 = Some(1000);
    expected.sort();
    assert_eq!(
        readings(&s).await?,
        expected,
        "every replayed row, and r0 keeps its newer version"
    );
    assert_eq!(
        operator_common::topic_records(&s.world, &dlq)?,
        36,
        "the 3 that failed again are back on the dead-letter topic, once"
    );
    let reasons = s.event_reasons(name).await?;
    for reason in ["ReplayStarted", "ReplayCompleted"] {
        assert!(
            reasons.iter().any(|(r, _)| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    // The same token again: a restarted sink finds every partition done
    // and replays nothing.
    let api = s.ns.api::<Pod>();
    for pod in pods(
        &api,
        &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=sink"),
    )
    .await?
    {
        api.delete(&pod.metadata.name.context("pod name")?, &Default::default())
            .await?;
    }
    let partitions = 3.0;
    poll_until(
        "the restarted sink to hold every dead-letter partition as done",
        Deadline::secs(120),
        || async {
            let (active, done) = sink_replay_partitions(&s, name).await?;
            Ok((active == 0.0 && done == partitions).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        operator_common::topic_records(&s.world, &dlq)?,
        36,
        "nothing replayed again"
    );
    let sp = s.pipelines().get(name).await?;
    assert_eq!(
        replay_of(&sp).as_ref(),
        Some(&done),
        "the status is unchanged"
    );

    // A new token starts where fix-1 ended: only the 3 that failed again.
    s.merge(
        name,
        json!({"metadata": {"annotations": {"millrace.io/replay-dead-letters": "fix-2"}}}),
    )
    .await?;
    let second = wait_replay(&s, name, "fix-2").await?;
    println!("replay fix-2: {second:?}");
    assert_eq!((second.replayed, second.failed_again), (0, 3));
    assert_eq!(operator_common::topic_records(&s.world, &dlq)?, 39);
    assert_eq!(readings(&s).await?.len(), 30);

    // A value that is no token is refused, and said so.
    s.merge(
        name,
        json!({"metadata": {"annotations": {"millrace.io/replay-dead-letters": "no;token"}}}),
    )
    .await?;
    poll_until("the refusal in status", Deadline::secs(60), || async {
        let sp = s.pipelines().get(name).await?;
        Ok(replay_of(&sp).filter(|r| r.state == ReplayState::Refused))
    })
    .await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

/// A user record of the seed's shape (a fixture page's first), with its
/// own id.
fn user(i: usize) -> (String, Value) {
    let mut record = millrace_testsupport::randomuser_page(1)[0].clone();
    let id = format!("00000000-0000-4000-8000-{i:012}");
    record["login"]["uuid"] = json!(id);
    (id, record)
}

#[tokio::test]
async fn records_deleted_by_retention_before_the_sink_read_them_are_shown() -> anyhow::Result<()> {
    let s = Scenario::new("op-skip").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "skip";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let first: Vec<(String, Value)> = (0..10).map(user).collect();
    produce(&s, &first).await?;
    poll_until("the first 10 rows", Deadline::secs(120), || async {
        let sp = s.pipelines().get(name).await?;
        Ok((flow(&sp).rows_written == Some(10) && flow(&sp).sink_lag == Some(0)).then_some(()))
    })
    .await?;

    // The sink stops; 60 more records come; retention (here DeleteRecords,
    // which moves the partitions' start as retention does) deletes all
    // but the last record of each partition before the sink is back.
    s.merge(name, json!({"spec": {"suspend": true}})).await?;
    let api = s.ns.api::<Pod>();
    poll_until("the sink Pods to be gone", Deadline::secs(120), || async {
        let left = pods(
            &api,
            &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=sink"),
        )
        .await?;
        Ok(left.is_empty().then_some(()))
    })
    .await?;
    let before = operator_common::watermarks(&s.world, &s.topic)?;
    let more: Vec<(String, Value)> = (10..70).map(user).collect();
    produce(&s, &more).await?;
    let after = operator_common::watermarks(&s.world, &s.topic)?;
    let mut cut = TopicPartitionList::new();
    let mut expected_skipped = 0;
    let mut kept = 0;
    for (p, ((_, was), (_, now))) in before.iter().zip(&after).enumerate() {
        if now > was {
            cut.add_partition_offset(&s.topic, p as i32, Offset::Offset(now - 1))?;
            expected_skipped += now - 1 - was;
            kept += 1;
        }
    }
    let admin: AdminClient<DefaultClientContext> = s.world.kafka_config().create()?;
    let result = admin.delete_records(&cut, &AdminOptions::new()).await?;
    for e in result.elements() {
        e.error()?;
    }
    println!("deleted {expected_skipped} unread records; {kept} kept");
    anyhow::ensure!(expected_skipped > 0, "the cut deleted nothing");

    s.merge(name, json!({"spec": {"suspend": false}})).await?;
    let sp = poll_until("the loss in status", Deadline::secs(180), || async {
        let sp = s.pipelines().get(name).await?;
        Ok((flow(&sp).records_skipped == Some(expected_skipped)
            && flow(&sp).rows_written == Some(10 + kept))
        .then_some(sp))
    })
    .await?;
    let flowing = condition(&sp, "Flowing").context("Flowing")?;
    println!(
        "Flowing: {} {}: {}",
        flowing.status, flowing.reason, flowing.message
    );
    assert_eq!(
        (flowing.status.as_str(), flowing.reason.as_str()),
        ("False", "RecordsSkipped")
    );
    assert!(
        flowing
            .message
            .contains(&format!("deleted {expected_skipped} records")),
        "{}",
        flowing.message
    );
    let ready = condition(&sp, "Ready").context("Ready")?;
    assert_eq!(ready.status, "False", "{}", ready.message);
    let reasons = s.event_reasons(name).await?;
    assert!(
        reasons.iter().any(|(r, m)| r == "RecordsSkipped"
            && m.contains(&format!("deleted {expected_skipped} records"))),
        "{reasons:?}"
    );
    assert_eq!(
        s.row_count("created_users").await?,
        10 + kept,
        "what was not deleted is written"
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
