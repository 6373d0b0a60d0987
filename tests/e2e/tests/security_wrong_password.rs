//! Wrong credentials in a pipeline's Secrets are a condition a person can
//! act on, not a crash loop: Cassandra refusing the password gives
//! `TableReady=False, reason CassandraAuthFailed`, Kafka refusing the SASL
//! password gives `TopicReady=False, reason KafkaAuthFailed`, each with a
//! message naming the Secret; the operator keeps running and retries slowly;
//! no runner Pod is started (and so none crash-loops) while topic or table
//! cannot be made; and the wrong passwords are not shown anywhere.

mod operator_common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use millrace_testsupport::unique_name;
use operator_common::{Operator, Scenario, condition};
use serde_json::json;

/// Reconcile failures counted as refused credentials.
async fn auth_failures(op: &Operator) -> f64 {
    let mut total = 0.0;
    for category in ["cassandra_auth", "kafka_auth"] {
        total += op
            .metric(&format!(
                "millrace_operator_reconcile_failures_total{{category=\"{category}\"}}"
            ))
            .await
            .unwrap_or(0.0);
    }
    total
}

#[tokio::test]
async fn wrong_passwords_are_clear_conditions_without_a_crash_loop() -> anyhow::Result<()> {
    let s = Scenario::new("sec-badpw").await?;
    let sasl = s.kafka_sasl()?;
    let wrong_cassandra = unique_name("wrong-cassandra");
    let wrong_kafka = unique_name("wrong-kafka");
    for (secret, user, password) in [
        (
            "bad-cassandra",
            s.world.cassandra_username.as_str(),
            wrong_cassandra.as_str(),
        ),
        ("bad-kafka", sasl.username.as_str(), wrong_kafka.as_str()),
    ] {
        s.create_credentials_secret(secret, user, password).await?;
    }
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let mut cassandra = s.seed_pipeline("bad-cassandra")?;
    cassandra["spec"]["cassandra"]["credentialsSecretRef"] = json!({"name": "bad-cassandra"});
    s.apply(&cassandra).await?;
    let mut kafka = s.seed_pipeline("bad-kafka")?;
    kafka["spec"]["kafka"]["topic"]["name"] = json!(format!("{}-k", s.topic));
    kafka["spec"]["cassandra"]["table"]["name"] = json!("users_k");
    sasl.use_in(&mut kafka, "bad-kafka");
    s.apply(&kafka).await?;

    let (_, table) = s
        .wait_condition(
            "bad-cassandra",
            "TableReady",
            "False",
            Some("CassandraAuthFailed"),
            90,
        )
        .await?;
    println!("TableReady: CassandraAuthFailed: {}", table.message);
    assert!(
        table.message.contains("refused the credentials"),
        "{}",
        table.message
    );
    assert!(
        table.message.contains("bad-cassandra"),
        "names the Secret: {}",
        table.message
    );
    let (_, topic) = s
        .wait_condition(
            "bad-kafka",
            "TopicReady",
            "False",
            Some("KafkaAuthFailed"),
            90,
        )
        .await?;
    println!("TopicReady: KafkaAuthFailed: {}", topic.message);
    assert!(
        topic.message.contains("refused the SASL credentials"),
        "{}",
        topic.message
    );
    assert!(
        topic.message.contains("bad-kafka"),
        "names the Secret: {}",
        topic.message
    );
    for (name, reason) in [
        ("bad-cassandra", "CassandraAuthFailed"),
        ("bad-kafka", "KafkaAuthFailed"),
    ] {
        let sp = s.pipelines().get(name).await?;
        let ready = condition(&sp, "Ready").expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason)
        );
        let runner = condition(&sp, "RunnerReady").expect("RunnerReady");
        assert_eq!(runner.reason, "WaitingForDependencies", "{runner:?}");
    }

    // No crash loop: the operator stays up and retries slowly (user errors
    // back off from 15 s), and it holds the runner back while the
    // credentials are refused, so there is no runner to crash-loop. The
    // ten seconds are the window the retry rate is measured over.
    let before = auth_failures(&op).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = auth_failures(&op).await;
    println!("auth failures counted: {before} then {after} ten seconds later");
    assert!(before >= 2.0, "both failures are counted: {before}");
    assert!(
        after - before <= 4.0,
        "retried too fast: {before} -> {after}"
    );
    assert!(
        op.pid()
            .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
    );
    let deployments: Vec<String> =
        s.ns.api::<Deployment>()
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect();
    assert!(
        deployments.is_empty(),
        "runner Deployments made: {deployments:?}"
    );
    let pods: Vec<String> =
        s.ns.api::<Pod>()
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
    assert!(pods.is_empty(), "runner Pods exist: {pods:?}");

    // The wrong passwords are not shown.
    let status = serde_json::to_string(&s.pipelines().list(&ListParams::default()).await?)?;
    let events = serde_json::to_string(
        &s.ns
            .api::<k8s_openapi::api::events::v1::Event>()
            .list(&ListParams::default())
            .await?,
    )?;
    let log = op.log_text();
    for password in [&wrong_cassandra, &wrong_kafka] {
        assert!(
            !status.contains(password.as_str()),
            "a password in a status"
        );
        assert!(
            !events.contains(password.as_str()),
            "a password in an Event"
        );
        assert!(
            !log.contains(password.as_str()),
            "a password in the operator's log"
        );
    }

    for name in ["bad-cassandra", "bad-kafka"] {
        s.delete_pipeline(name, 60).await?;
    }
    op.stop().await?;
    s.cleanup().await
}
