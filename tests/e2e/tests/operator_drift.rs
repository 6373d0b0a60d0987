//! The operator keeps what it made as declared: a steady-state resync
//! writes nothing, and hand-made changes to the topic, its config and the
//! runner's Deployments are undone.

mod operator_common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::json;

#[tokio::test]
async fn a_steady_state_resync_writes_nothing_and_drift_is_undone() -> anyhow::Result<()> {
    let s = Scenario::new("op-drift").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    // Idle: records arrive only when pushed, so nothing (not even the
    // sink's lag) changes between resyncs.
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([{"name": "events", "httpPush": {"path": "/v1/records"}}]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // Steady state: resyncs (every 3 s here) run, and write nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let reconciles = op.metric("millrace_operator_reconciles_total").await?;
    let writes = op.writes().await?;
    let version = s.pipelines().get(name).await?.metadata.resource_version;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let resyncs = op.metric("millrace_operator_reconciles_total").await? - reconciles;
    assert!(resyncs >= 3.0, "only {resyncs} reconciles in 15 s");
    assert_eq!(
        op.writes().await?,
        writes,
        "writes [kubernetes, kafka, cassandra] during {resyncs} steady-state reconciles"
    );
    assert_eq!(
        s.pipelines().get(name).await?.metadata.resource_version,
        version,
        "the StreamPipeline (and its status) was not written"
    );
    println!("steady state: {resyncs} reconciles, 0 writes (totals {writes:?})");

    let admin: AdminClient<DefaultClientContext> = s.world.kafka_config().create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));

    // A hand-made topic config change is reverted.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&s.topic)).set("retention.ms", "1000");
    for r in admin.alter_configs([&alter], &opts).await? {
        r.map_err(|(_, e)| anyhow::anyhow!("alter config: {e}"))?;
    }
    let start = Instant::now();
    poll_until(
        "the topic config to be restored",
        Deadline::secs(60),
        || async {
            let t = s.kafka_topic(&s.topic).await?;
            Ok(t.filter(|t| t.config.get("retention.ms").map(String::as_str) == Some("604800000")))
        },
    )
    .await?;
    println!("topic config restored in {:?}", start.elapsed());

    // A deleted topic is created again as declared.
    for r in admin.delete_topics(&[&s.topic], &opts).await? {
        r.map_err(|(_, e)| anyhow::anyhow!("delete topic: {e}"))?;
    }
    let start = Instant::now();
    poll_until("the topic to be recreated", Deadline::secs(90), || async {
        let t = s.kafka_topic(&s.topic).await?;
        Ok(t.filter(|t| {
            t.partitions == 3
                && t.config.get("retention.ms").map(String::as_str) == Some("604800000")
        }))
    })
    .await?;
    println!("deleted topic restored in {:?}", start.elapsed());

    // A deleted Deployment comes back; a hand-scaled one is scaled back.
    let deployments = s.ns.api::<Deployment>();
    let old_uid = deployments.get("randomuser-sink").await?.metadata.uid;
    deployments
        .delete("randomuser-sink", &DeleteParams::foreground())
        .await?;
    let start = Instant::now();
    poll_until(
        "the sink Deployment to be recreated",
        Deadline::secs(60),
        || async {
            let d = deployments.get_opt("randomuser-sink").await?;
            Ok(d.filter(|d| d.metadata.uid != old_uid && d.metadata.deletion_timestamp.is_none()))
        },
    )
    .await?;
    println!("deleted Deployment restored in {:?}", start.elapsed());
    deployments
        .patch(
            "randomuser-ingest",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await?;
    poll_until(
        "the ingest Deployment to be scaled back",
        Deadline::secs(60),
        || async {
            let d = deployments.get("randomuser-ingest").await?;
            Ok((d.spec.and_then(|s| s.replicas) == Some(1)).then_some(()))
        },
    )
    .await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
