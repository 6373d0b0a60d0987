//! Suspend and resume; an ingest Deployment only with sources; deletion with `Retain` and `Delete` (and the
//! finalizer only the latter needs); deletion while
//! Cassandra cannot be reached; what the runner makes goes with the
//! pipeline; one Cassandra that hangs does not hold up the others; a new
//! pipeline's status written once when its rollout ends at once.

mod operator_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams};
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use serde_json::json;

const DEAD_CASSANDRA: &str = "127.0.0.1:1";

#[tokio::test]
async fn suspend_scales_the_runner_to_zero_and_resume_brings_it_back() -> anyhow::Result<()> {
    let s = Scenario::new("op-suspend").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    s.apply(&s.seed_pipeline(name)?).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    s.merge(name, json!({"spec": {"suspend": true}})).await?;
    let (_, suspended) = s
        .wait_condition(name, "Suspended", "True", Some("Suspended"), 60)
        .await?;
    println!("Suspended: {}", suspended.message);
    let (_, ready) = s
        .wait_condition(name, "Ready", "False", Some("Suspended"), 60)
        .await?;
    println!("Ready: {}", ready.message);
    let deployments = s.ns.api::<Deployment>();
    for role in ["ingest", "sink"] {
        let d = deployments.get(&format!("{name}-{role}")).await?;
        assert_eq!(d.spec.and_then(|s| s.replicas), Some(0), "{role}");
    }
    let pods = s.ns.api::<Pod>();
    poll_until("the runner's Pods to stop", Deadline::secs(90), || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=randomuser"))
            .await?;
        Ok(list.items.is_empty().then_some(()))
    })
    .await?;
    assert!(
        s.kafka_topic(&s.topic).await?.is_some(),
        "suspend keeps the topic"
    );

    s.merge(name, json!({"spec": {"suspend": false}})).await?;
    s.wait_condition(name, "Suspended", "False", None, 60)
        .await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    for role in ["ingest", "sink"] {
        let d = deployments.get(&format!("{name}-{role}")).await?;
        assert_eq!(d.spec.and_then(|s| s.replicas), Some(1), "{role}");
    }

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

/// Records of a pipeline without sources come from producers of the
/// user's own: it has no ingest Deployment, gets one with its first source
/// and loses it with its last.
#[tokio::test]
async fn the_ingest_deployment_exists_only_while_the_pipeline_has_sources() -> anyhow::Result<()> {
    let s = Scenario::new("op-nosources").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "produced";
    let ingest = format!("{name}-ingest");
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    let (ready, _) = s.wait_condition(name, "Ready", "True", None, 180).await?;
    let runner = ready
        .status
        .and_then(|s| s.runner)
        .context("runner status")?;
    assert_eq!(runner.ingest_deployment, None);
    assert_eq!(runner.sink_deployment.as_deref(), Some("produced-sink"));
    let deployments = s.ns.api::<Deployment>();
    assert!(
        deployments.get_opt(&ingest).await?.is_none(),
        "no ingest Deployment without sources"
    );

    s.merge(
        name,
        json!({"spec": {"sources": [{"name": "events", "httpPush": {"path": "/v1/records"}}]}}),
    )
    .await?;
    poll_until("the ingest Deployment", Deadline::secs(60), || async {
        Ok(deployments.get_opt(&ingest).await?)
    })
    .await?;
    let (ready, _) = s.wait_condition(name, "Ready", "True", None, 180).await?;
    let runner = ready
        .status
        .and_then(|s| s.runner)
        .context("runner status")?;
    assert_eq!(runner.ingest_deployment.as_deref(), Some(ingest.as_str()));

    s.merge(name, json!({"spec": {"sources": []}})).await?;
    poll_until(
        "the ingest Deployment to go with the last source",
        Deadline::secs(60),
        || async { Ok(deployments.get_opt(&ingest).await?.is_none().then_some(())) },
    )
    .await?;
    s.wait_condition(name, "Ready", "True", None, 120).await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

#[tokio::test]
async fn delete_policy_removes_topic_and_table() -> anyhow::Result<()> {
    let s = Scenario::new("op-delete").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["deletionPolicy"] = json!("Delete");
    s.apply(&sp).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "RunnerReady", "True", None, 180)
        .await?;

    let took = s.delete_pipeline(name, 90).await?;
    println!("delete (Delete) -> gone {took:?}");
    assert!(
        s.kafka_topic(&s.topic).await?.is_none(),
        "the topic is deleted"
    );
    assert!(
        s.kafka_topic(&format!("{}.dlq", s.topic)).await?.is_none(),
        "the dead-letter topic is deleted"
    );
    assert!(
        s.table_columns("created_users").await?.is_empty(),
        "the table is dropped"
    );
    // The runner's objects go with their owner.
    let deployments = s.ns.api::<Deployment>();
    poll_until(
        "the Deployments to be collected",
        Deadline::secs(60),
        || async {
            Ok(deployments
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
                .then_some(()))
        },
    )
    .await?;
    op.stop().await?;
    s.cleanup().await
}

/// Only `Delete` leaves work for when the pipeline goes, so only a
/// `Delete` pipeline carries the operator's finalizer: a `Retain` one is
/// deleted at once, even with no operator running, and keeps its topic.
#[tokio::test]
async fn only_a_delete_policy_holds_the_pipeline_with_a_finalizer() -> anyhow::Result<()> {
    let s = Scenario::new("op-finalizer").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    s.apply(&s.seed_pipeline(name)?).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    assert!(
        !s.has_finalizer(name).await?,
        "a Retain pipeline has no finalizer"
    );
    s.merge(name, json!({"spec": {"deletionPolicy": "Delete"}}))
        .await?;
    s.wait_finalizer(name, true, 60).await?;
    s.merge(name, json!({"spec": {"deletionPolicy": "Retain"}}))
        .await?;
    s.wait_finalizer(name, false, 60).await?;

    op.stop().await?;
    let took = s.delete_pipeline(name, 30).await?;
    println!("delete (Retain, no operator running) -> gone {took:?}");
    assert!(
        s.kafka_topic(&s.topic).await?.is_some(),
        "Retain keeps the topic"
    );
    s.cleanup().await
}

#[tokio::test]
async fn deleting_while_cassandra_is_unreachable_says_why_and_finishes_once_it_is_back()
-> anyhow::Result<()> {
    let s = Scenario::new("op-unreach").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["deletionPolicy"] = json!("Delete");
    s.apply(&sp).await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;

    // Cassandra goes away (for this pipeline: its contact point is dead).
    let good = sp["spec"]["cassandra"]["contactPoints"].clone();
    s.merge(
        name,
        json!({"spec": {"cassandra": {"contactPoints": [DEAD_CASSANDRA]}}}),
    )
    .await?;
    let (_, table) = s
        .wait_condition(name, "TableReady", "False", Some("Unavailable"), 60)
        .await?;
    assert!(table.message.contains(DEAD_CASSANDRA), "{}", table.message);
    println!("TableReady: {}", table.message);

    s.pipelines().delete(name, &DeleteParams::default()).await?;
    let blocked = poll_until(
        "the deletion to be reported as blocked",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(operator_common::condition(&sp, "Ready").filter(|c| c.reason == "DeletionBlocked"))
        },
    )
    .await?;
    println!("Ready: {}", blocked.message);
    assert!(
        blocked.message.contains(DEAD_CASSANDRA),
        "{}",
        blocked.message
    );
    assert!(
        blocked.message.contains("millrace.io/force-delete"),
        "{}",
        blocked.message
    );
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(
        s.pipelines().get_opt(name).await?.is_some(),
        "the pipeline waits for its table to be dropped"
    );

    // Cassandra is back: the deletion finishes and the table is dropped.
    s.merge(
        name,
        json!({"spec": {"cassandra": {"contactPoints": good}}}),
    )
    .await?;
    poll_until("the pipeline to be gone", Deadline::secs(120), || async {
        Ok(s.pipelines().get_opt(name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        s.table_columns("created_users").await?.is_empty(),
        "the table is dropped"
    );
    op.stop().await?;
    s.cleanup().await
}

#[tokio::test]
async fn the_runner_waits_for_the_table_and_force_delete_lets_a_pipeline_go() -> anyhow::Result<()>
{
    let s = Scenario::new("op-force").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["deletionPolicy"] = json!("Delete");
    sp["spec"]["cassandra"]["contactPoints"] = json!([DEAD_CASSANDRA]);
    s.apply(&sp).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "TableReady", "False", Some("Unavailable"), 60)
        .await?;
    let (_, runner) = s
        .wait_condition(
            name,
            "RunnerReady",
            "False",
            Some("WaitingForDependencies"),
            60,
        )
        .await?;
    println!("RunnerReady: {}", runner.message);
    assert!(
        s.ns.api::<Deployment>()
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "no runner before its table exists"
    );

    s.pipelines().delete(name, &DeleteParams::default()).await?;
    poll_until(
        "the deletion to be reported as blocked",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(operator_common::condition(&sp, "Ready").filter(|c| c.reason == "DeletionBlocked"))
        },
    )
    .await?;
    s.merge(
        name,
        json!({"metadata": {"annotations": {"millrace.io/force-delete": "true"}}}),
    )
    .await?;
    poll_until("the forced deletion", Deadline::secs(60), || async {
        Ok(s.pipelines().get_opt(name).await?.is_none().then_some(()))
    })
    .await?;
    op.stop().await?;
    s.cleanup().await
}

/// Deleting the namespace also deletes the credentials Secret; the
/// `Delete` cleanup still reaches Cassandra with the credentials the
/// operator last used, and the namespace goes away.
#[tokio::test]
async fn deleting_the_namespace_still_applies_the_delete_policy() -> anyhow::Result<()> {
    let s = Scenario::new("op-nsdel").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["deletionPolicy"] = json!("Delete");
    s.apply(&sp).await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;

    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(s.client.clone());
    namespaces
        .delete(&s.ns.name, &DeleteParams::background())
        .await?;
    poll_until("the namespace to be gone", Deadline::secs(120), || async {
        Ok(namespaces
            .get_opt(&s.ns.name)
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    assert!(
        s.table_columns("created_users").await?.is_empty(),
        "the table is dropped"
    );
    assert!(
        s.kafka_topic(&s.topic).await?.is_none(),
        "the topic is deleted"
    );
    op.stop().await?;
    s.cleanup().await.or_else(|e| {
        // The namespace is already gone.
        if e.to_string().contains("not found") {
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// The runner's pull Lease is owned by its pipeline, so it goes with it
/// (whatever the `deletionPolicy`).
#[tokio::test]
async fn a_pull_lease_goes_with_its_pipeline() -> anyhow::Result<()> {
    let s = Scenario::new("op-lease").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "pulled";
    let mut sp = s.seed_pipeline(name)?;
    // Nothing listens at the URL: each run fails, and still takes the
    // Lease and records itself there.
    sp["spec"]["sources"] = json!([
        {"name": "api", "httpPull": {"url": "http://127.0.0.1:9/users", "schedule": "5s"}},
    ]);
    let uid = s.apply(&sp).await?.metadata.uid.context("uid")?;
    let leases = s.ns.api::<Lease>();
    let lease_name = millrace_api::pull_lease_name(name, "api");
    let lease = poll_until(
        "the runner to take its pull Lease",
        Deadline::secs(180),
        || async { Ok(leases.get_opt(&lease_name).await?) },
    )
    .await?;
    let owners = lease.metadata.owner_references.unwrap_or_default();
    assert!(
        owners
            .iter()
            .any(|o| o.uid == uid && o.kind == "StreamPipeline" && o.name == name),
        "the Lease is owned by the pipeline: {owners:?}"
    );

    let took = s.delete_pipeline(name, 60).await?;
    println!("pipeline deleted in {took:?}");
    let start = std::time::Instant::now();
    poll_until(
        "the pull Lease to be collected",
        Deadline::secs(60),
        || async { Ok(leases.get_opt(&lease_name).await?.is_none().then_some(())) },
    )
    .await?;
    println!(
        "pull Lease collected {:?} after the pipeline",
        start.elapsed()
    );
    op.stop().await?;
    s.cleanup().await
}

/// A Cassandra that accepts connections and never answers: a CQL session
/// to it hangs until its connect timeout.
async fn silent_cassandra()
-> anyhow::Result<(String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    Ok((addr, accepted, task))
}

/// One pipeline's Cassandra hangs; another pipeline, on the real cluster,
/// is not held up by it: its table is made, and it becomes Ready, while
/// the first is still waiting for its connect.
#[tokio::test]
async fn a_hanging_cassandra_does_not_hold_up_pipelines_on_another() -> anyhow::Result<()> {
    let s = Scenario::new("op-hang").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let (silent, accepted, listener) = silent_cassandra().await?;

    let bad = "hanging";
    let bad_topic = format!("{}-hanging", s.topic);
    let mut sp = s.seed_pipeline(bad)?;
    sp["spec"]["kafka"]["topic"]["name"] = json!(bad_topic);
    sp["spec"]["cassandra"]["contactPoints"] = json!([silent]);
    sp["spec"]["cassandra"]["keyspace"]["name"] = json!(format!("{}_hanging", s.keyspace));
    s.apply(&sp).await?;
    poll_until(
        "the operator to connect to the silent Cassandra",
        Deadline::secs(60),
        || async { Ok((accepted.load(Ordering::SeqCst) > 0).then_some(())) },
    )
    .await?;

    // While that connect hangs, a pipeline on the real cluster.
    let good = "good";
    s.apply(&s.seed_pipeline(good)?).await?;
    let start = std::time::Instant::now();
    let bad_table = || async {
        let sp = s.pipelines().get(bad).await?;
        Ok::<_, anyhow::Error>(operator_common::condition(&sp, "TableReady"))
    };
    s.wait_condition(good, "TableReady", "True", None, 60)
        .await?;
    let table_at = start.elapsed();
    let bad_then = bad_table().await?;
    println!("good: TableReady after {table_at:?}; hanging: TableReady {bad_then:?}");
    assert!(
        bad_then.is_none(),
        "the good pipeline's table was made while the hanging pipeline's first attempt was still waiting: {bad_then:?}"
    );
    s.wait_condition(good, "Ready", "True", None, 180).await?;
    let bad_then = bad_table().await?;
    println!(
        "good: Ready after {:?}; hanging: TableReady {bad_then:?}",
        start.elapsed()
    );
    assert!(
        bad_then.as_ref().is_none_or(|c| c.status != "True"),
        "the hanging pipeline is not Ready: {bad_then:?}"
    );

    // The hanging pipeline's deletion cannot reach its Cassandra: forced.
    s.merge(
        bad,
        json!({"metadata": {"annotations": {"millrace.io/force-delete": "true"}}}),
    )
    .await?;
    s.delete_pipeline(bad, 90).await?;
    s.delete_pipeline(good, 60).await?;
    listener.abort();
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        s.world.kafka_config().create()?;
    let _ = admin
        .delete_topics(
            &[&bad_topic, &format!("{bad_topic}.dlq")],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await;
    op.stop().await?;
    s.cleanup().await
}

/// Every status a watch sees of pipeline `name`, in order, each once.
fn watch_statuses(
    api: kube::Api<millrace_api::StreamPipeline>,
    name: &str,
) -> (
    Arc<std::sync::Mutex<Vec<millrace_api::StreamPipelineStatus>>>,
    tokio::task::JoinHandle<()>,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(watcher(api, config).applied_objects());
        while let Some(item) = stream.next().await {
            let Ok(sp) = item else { continue };
            let Some(status) = sp.status else { continue };
            let mut seen = into.lock().unwrap_or_else(|e| e.into_inner());
            if seen.last() != Some(&status) {
                seen.push(status);
            }
        }
    });
    (seen, task)
}

fn ready_of(status: &millrace_api::StreamPipelineStatus) -> (String, String) {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// A new pipeline whose runner rolls out at once (no replicas, as one fed
/// by other producers while it waits for them) has one status write on
/// its way to Ready, not a "progressing" one first: the reconcile that
/// started the rollout held its report back (`operator/src/hold.rs`) and
/// the one the rollout woke wrote Ready. One whose rollout does not end
/// is still reported as progressing, once the hold is over.
#[tokio::test]
async fn a_new_pipeline_reports_once_when_its_rollout_ends_at_once_and_progress_when_it_does_not()
-> anyhow::Result<()> {
    let s = Scenario::new("op-status-once").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let name = "at-once";
    let (seen, watch) = watch_statuses(s.pipelines(), name);
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    sp["spec"]["runner"]["sinkReplicas"] = json!(0);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 120).await?;
    let statuses = poll_until(
        "the watch to see Ready=True",
        Deadline::secs(30),
        || async {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
            Ok(seen.iter().any(|s| ready_of(s).0 == "True").then_some(seen))
        },
    )
    .await?;
    watch.abort();
    let readies: Vec<(String, String)> = statuses.iter().map(ready_of).collect();
    println!("statuses seen on the way to Ready: {readies:?}");
    assert_eq!(
        readies,
        vec![("True".to_owned(), "Reconciled".to_owned())],
        "one status, Ready, for a rollout that ends at once (the controller-manager reports a \
         Deployment with no replicas rolled out well within the operator's 3 s hold)"
    );
    let events = s.event_reasons(name).await?;
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert!(
        reasons.contains(&"Created") && reasons.contains(&"Reconciled"),
        "the Events are those of a new pipeline: {events:?}"
    );

    // An image no node can pull: the rollout never ends.
    let name = "never-rolled-out";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    sp["spec"]["kafka"]["topic"]["name"] = json!(format!("{}-never", s.topic));
    sp["spec"]["cassandra"]["table"]["name"] = json!("never_rolled_out");
    sp["spec"]["runner"]["image"] = json!("localhost/millrace-absent:none");
    s.apply(&sp).await?;
    let (_, ready) = s
        .wait_condition(name, "Ready", "False", Some("Progressing"), 60)
        .await?;
    assert!(
        ready
            .message
            .starts_with("RunnerReady: waiting for the runner's Pods"),
        "{}",
        ready.message
    );

    s.delete_pipeline("never-rolled-out", 60).await?;
    s.delete_pipeline("at-once", 60).await?;
    s.drop_own_topics(&["never"]).await;
    op.stop().await?;
    s.cleanup().await
}
