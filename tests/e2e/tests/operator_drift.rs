//! The operator keeps what it made as declared: a steady-state resync
//! writes nothing, and hand-made changes to the topic, its config and
//! every Kubernetes object it owns (Deployments, Service, ConfigMap,
//! ServiceAccount, Role, RoleBinding) are undone; one made by hand under
//! the runner's name before the pipeline is taken over.

mod operator_common;

use std::time::{Duration, Instant};

use anyhow::Context;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Api, Resource};
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

/// One hand edit, as `kubectl edit` makes it: a JSON patch by another field
/// manager, and the parts of the object it changes.
struct Edit {
    resource: ApiResource,
    name: String,
    /// JSON pointers to what the edit changes; each must come back.
    watched: &'static [&'static str],
    patch: serde_json::Value,
}

fn edit<K: Resource<DynamicType = ()>>(
    name: String,
    watched: &'static [&'static str],
    patch: serde_json::Value,
) -> Edit {
    Edit {
        resource: ApiResource::erase::<K>(&()),
        name,
        watched,
        patch,
    }
}

#[tokio::test]
async fn every_owned_object_edited_by_hand_comes_back() -> anyhow::Result<()> {
    let s = Scenario::new("op-handedit").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "edited";
    // Idle, with a pull source (so the runner's Role has rules) that does
    // not run while the test does.
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([
        {"name": "events", "httpPush": {"path": "/v1/records"}},
        {"name": "api", "httpPull": {"url": "http://127.0.0.1:9/users", "schedule": "0 0 1 1 *"}},
    ]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let ns = s.ns.name.clone();
    let edits = [
        edit::<Deployment>(
            format!("{name}-ingest"),
            &["/spec/template/spec/containers/0"],
            json!([
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "localhost/millrace-testpod:dev"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/args/0", "value": "sink"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/env/3/value", "value": "0.0.0.0:1"},
            ]),
        ),
        edit::<Deployment>(
            format!("{name}-sink"),
            &["/spec/template/spec/containers/0/env"],
            json!([
                {"op": "remove", "path": "/spec/template/spec/containers/0/env/3"},
            ]),
        ),
        edit::<Service>(
            name.to_owned(),
            &["/spec/ports", "/spec/selector"],
            json!([
                {"op": "replace", "path": "/spec/ports/0/port", "value": 9999},
                {"op": "replace", "path": "/spec/selector/app.kubernetes.io~1component", "value": "sink"},
            ]),
        ),
        edit::<ConfigMap>(
            format!("{name}-pipeline"),
            &["/data"],
            json!([
                {"op": "replace", "path": "/data/pipeline.yaml", "value": "spec: {}\n"},
            ]),
        ),
        edit::<ServiceAccount>(
            format!("{name}-runner"),
            &["/automountServiceAccountToken"],
            json!([
                {"op": "replace", "path": "/automountServiceAccountToken", "value": false},
            ]),
        ),
        edit::<Role>(
            format!("{name}-runner"),
            &["/rules"],
            json!([
                {"op": "add", "path": "/rules/-", "value":
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}},
            ]),
        ),
        edit::<RoleBinding>(
            format!("{name}-runner"),
            &["/subjects"],
            json!([
                {"op": "add", "path": "/subjects/-", "value":
                    {"kind": "ServiceAccount", "name": "default", "namespace": ns}},
            ]),
        ),
    ];

    // What each edit will change, as the operator declared it.
    let api = |e: &Edit| Api::<DynamicObject>::namespaced_with(s.client.clone(), &ns, &e.resource);
    let parts = |o: &DynamicObject, e: &Edit| -> anyhow::Result<Vec<serde_json::Value>> {
        let v = serde_json::to_value(o)?;
        Ok(e.watched
            .iter()
            .map(|p| v.pointer(p).cloned().unwrap_or_default())
            .collect())
    };
    let mut declared = Vec::new();
    for e in &edits {
        declared.push(parts(&api(e).get(&e.name).await?, e)?);
    }

    // Every edit at once, as a person would make them.
    let by_hand = PatchParams {
        field_manager: Some("kubectl-edit".to_owned()),
        ..PatchParams::default()
    };
    let start = Instant::now();
    for (e, want) in edits.iter().zip(&declared) {
        let patch: json_patch::Patch = serde_json::from_value(e.patch.clone())?;
        let edited = api(e)
            .patch(&e.name, &by_hand, &Patch::<()>::Json(patch))
            .await?;
        assert_ne!(
            &parts(&edited, e)?,
            want,
            "{} {}: the edit changed it",
            e.resource.kind,
            e.name
        );
    }
    for (e, want) in edits.iter().zip(&declared) {
        poll_until(
            &format!("{} {} to be as declared again", e.resource.kind, e.name),
            Deadline::secs(60),
            || async {
                let now = parts(&api(e).get(&e.name).await?, e)?;
                if &now == want {
                    Ok(Some(()))
                } else {
                    anyhow::bail!("now {now:?}")
                }
            },
        )
        .await?;
        println!(
            "{} {} back as declared after {:?}",
            e.resource.kind,
            e.name,
            start.elapsed()
        );
    }
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // Undone, and then left alone: within a few resyncs (every 3 s here)
    // the writes stop, and three resyncs in a row write nothing.
    let quiet = std::cell::Cell::new(None::<([f64; 3], f64)>);
    let resyncs = poll_until(
        "three resyncs in a row without a write",
        Deadline::secs(90),
        || async {
            let writes = op.writes().await?;
            let reconciles = op.metric("millrace_operator_reconciles_total").await?;
            match quiet.get() {
                Some((w, r)) if w == writes => {
                    let n = reconciles - r;
                    Ok((n >= 3.0).then_some(n))
                }
                _ => {
                    quiet.set(Some((writes, reconciles)));
                    Ok(None)
                }
            }
        },
    )
    .await?;
    println!("after the edits were undone: {resyncs} resyncs without a write");

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

/// An object of a name the runner needs, made by someone else before the
/// pipeline (here the ConfigMap, without the operator's label, so no watch
/// cache holds it), is taken over as declared, and the Event says it was
/// updated, not created.
#[tokio::test]
async fn an_object_made_by_hand_under_the_runners_name_is_taken_over_and_said_updated()
-> anyhow::Result<()> {
    let s = Scenario::new("op-takeover").await?;
    let name = "taken";
    let config_map = format!("{name}-pipeline");
    let config_maps = s.ns.api::<ConfigMap>();
    config_maps
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": config_map},
                "data": {"made": "by hand"}
            }))?,
        )
        .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let taken = config_maps.get(&config_map).await?;
    let owner = taken
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.name);
    assert_eq!(
        owner.as_deref(),
        Some(name),
        "the ConfigMap is the pipeline's now"
    );
    assert!(
        taken.data.unwrap_or_default().contains_key("pipeline.yaml"),
        "the ConfigMap holds the runner's document"
    );
    let events = s.event_reasons(name).await?;
    let (_, created) = events
        .iter()
        .find(|(reason, _)| reason == "Created")
        .with_context(|| format!("no Created Event: {events:?}"))?;
    assert!(
        created.contains(&format!("updated ConfigMap {config_map}")),
        "the Event says the hand-made ConfigMap was updated: {created}"
    );
    assert!(
        created.contains(&format!("created Deployment {name}-sink")),
        "and what was made, created: {created}"
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
