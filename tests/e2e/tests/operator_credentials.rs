//! Credentials come only from the Secrets a pipeline names: a missing
//! Secret is a condition that clears once the Secret exists, Kafka is
//! reached over SASL with the Secret's identity, and no password shows up
//! in the status, an Event, a ConfigMap or the operator's log.

mod operator_common;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use millrace_testsupport::kube_helpers::{pod_ready, pods};
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use serde_json::json;

#[tokio::test]
async fn kafka_sasl_credentials_come_from_a_secret_and_are_never_shown() -> anyhow::Result<()> {
    let s = Scenario::new("op-creds").await?;
    let sasl = s.kafka_sasl()?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sasl.use_in(&mut sp, "kafka-creds");
    s.apply(&sp).await?;

    // The Secret does not exist yet: a condition says so, nothing crashes.
    let (_, missing) = s
        .wait_condition(name, "TopicReady", "False", Some("SecretNotFound"), 60)
        .await?;
    assert!(
        missing.message.contains("kafka-creds"),
        "{}",
        missing.message
    );
    println!("TopicReady: {}", missing.message);

    // Once it exists, the topic is made over SASL.
    s.create_credentials_secret("kafka-creds", &sasl.username, &sasl.password)
        .await?;
    s.wait_condition(name, "TopicReady", "True", None, 120)
        .await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;
    assert!(s.kafka_topic(&s.topic).await?.is_some());
    // The runner's Pods are up, so their logs are searched too.
    s.wait_condition(name, "RunnerReady", "True", None, 120)
        .await?;

    // The runner gets the Kafka identity by secretKeyRef only.
    for var in ["MILLRACE_KAFKA_USERNAME", "MILLRACE_KAFKA_PASSWORD"] {
        assert_eq!(s.env_secret("randomuser-sink", var).await?, "kafka-creds");
    }

    // No password anywhere the operator writes or logs.
    s.assert_secrets_unseen(&op, &[sasl.password.as_str(), s.world.cassandra_password()])
        .await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

/// With `--watch-secrets`, a pipeline waiting for its Secret is reconciled
/// as soon as the Secret appears, not at its next retry.
#[tokio::test]
async fn with_watch_secrets_a_new_secret_is_picked_up_at_once() -> anyhow::Result<()> {
    let s = Scenario::new("op-watchsec").await?;
    let op = Operator::start(&s.world, &s.ns.name, &["--watch-secrets"]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["cassandra"]["credentialsSecretRef"] = json!({"name": "late-creds"});
    s.apply(&sp).await?;
    let (_, missing) = s
        .wait_condition(name, "TableReady", "False", Some("SecretNotFound"), 60)
        .await?;
    assert!(
        missing.message.contains("late-creds"),
        "{}",
        missing.message
    );
    // A missing Secret is retried after 15 s, then 30 s, doubling. Once
    // the second attempt has failed the next retry is 30 s away, so a
    // pipeline Ready within 25 s of the Secret appearing was woken by the
    // watch; 25 s leaves room for the keyspace and table DDL on a loaded
    // node.
    let failed = "millrace_operator_reconcile_failures_total{category=\"secret\"}";
    let failed_twice = poll_until("the second failed attempt", Deadline::secs(60), || async {
        Ok((op.metric(failed).await? >= 2.0).then(std::time::Instant::now))
    })
    .await?;

    s.create_credentials_secret(
        "late-creds",
        &s.world.cassandra_username,
        s.world.cassandra_password(),
    )
    .await?;
    let created = std::time::Instant::now();
    s.wait_condition(name, "TableReady", "True", None, 25)
        .await?;
    let ready = failed_twice.elapsed();
    assert!(
        ready < std::time::Duration::from_secs(29),
        "Ready {ready:?} after the second failure: the retry, not the watch"
    );
    println!(
        "Secret created -> TableReady {:?} ({ready:?} after the second failure; the retry was due at 30 s)",
        created.elapsed()
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

/// Environment from a Secret is read only when a container starts: a
/// rewritten Secret (a rotated password or certificate) rolls the runner's
/// Pods, within one resync and without `--watch-secrets`.
#[tokio::test]
async fn a_rewritten_secret_rolls_the_runner_pods() -> anyhow::Result<()> {
    let s = Scenario::new("op-rotate").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let deployments = s.ns.api::<Deployment>();
    let version = |d: Deployment| {
        d.spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("millrace.io/secrets-version").cloned())
    };
    let before = version(deployments.get("randomuser-sink").await?)
        .context("the sink's Pod template names the Secrets' version")?;
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=sink");
    let old_pods: Vec<String> = pods(&s.ns.api::<Pod>(), &selector)
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(!old_pods.is_empty(), "a sink Pod runs");

    // The same credentials, written again (as a rotation would).
    let secrets = s.ns.api::<Secret>();
    let patch = json!({"stringData": {"rotated-at": "now"}});
    secrets
        .patch(
            operator_common::SECRET,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    let rotated = std::time::Instant::now();
    let after = poll_until(
        "the sink's Pod template to follow the Secret",
        Deadline::secs(90),
        || async {
            Ok(version(deployments.get("randomuser-sink").await?).filter(|v| *v != before))
        },
    )
    .await?;
    println!(
        "Secret rewritten -> Pod template {before} -> {after} in {:?}",
        rotated.elapsed()
    );
    poll_until(
        "a new sink Pod Ready, the old ones gone",
        Deadline::secs(120),
        || async {
            let now = pods(&s.ns.api::<Pod>(), &selector).await?;
            let ready_new = now.iter().any(|p| {
                pod_ready(p)
                    && !old_pods.contains(p.metadata.name.as_ref().unwrap_or(&String::new()))
            });
            let old_left = now
                .iter()
                .any(|p| old_pods.contains(p.metadata.name.as_ref().unwrap_or(&String::new())));
            Ok((ready_new && !old_left).then_some(()))
        },
    )
    .await?;
    println!("rolled {:?} after the rewrite", rotated.elapsed());

    // It stays: later reconciles see the same versions.
    let settled = version(deployments.get("randomuser-sink").await?);
    assert_eq!(settled.as_deref(), Some(after.as_str()));

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
