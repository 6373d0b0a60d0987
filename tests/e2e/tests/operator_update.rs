//! Changing a running pipeline: supported changes are applied and
//! `observedGeneration` follows; changes Kafka or Cassandra cannot make
//! become `NotSupported` conditions while the rest is still reconciled.

mod operator_common;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use operator_common::{Operator, Scenario};
use serde_json::{Value, json};

fn columns_with(sp: &Value, extra: &[Value], change: impl Fn(&mut Value)) -> Value {
    let mut columns = sp["spec"]["cassandra"]["table"]["columns"].clone();
    for c in columns.as_array_mut().expect("columns") {
        change(c);
    }
    columns
        .as_array_mut()
        .expect("columns")
        .extend(extra.iter().cloned());
    columns
}

#[tokio::test]
async fn supported_changes_are_applied_and_unsupported_ones_are_reported() -> anyhow::Result<()> {
    let s = Scenario::new("op-update").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    s.apply(&sp).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;

    let first_hash = s.runner_config_hash("randomuser-sink", 1).await?;

    // Add a column, raise the partitions, change the topic config.
    let age = json!({"name": "age", "type": "int", "from": "/dob/age"});
    sp["spec"]["cassandra"]["table"]["columns"] = columns_with(&sp, &[age], |_| {});
    sp["spec"]["kafka"]["topic"]["partitions"] = json!(6);
    sp["spec"]["kafka"]["topic"]["config"] =
        json!({"retention.ms": "86400000", "max.message.bytes": "2097152"});
    let updated = s.apply(&sp).await?;
    assert_eq!(updated.metadata.generation, Some(2));
    let (_, topic) = s
        .wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    let (got, _) = s
        .wait_condition(name, "TableReady", "True", None, 60)
        .await?;
    assert_eq!(topic.observed_generation, Some(2));
    assert_eq!(
        got.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );

    let t = s.kafka_topic(&s.topic).await?.expect("topic");
    assert_eq!(t.partitions, 6);
    assert_eq!(
        t.config.get("retention.ms").map(String::as_str),
        Some("86400000")
    );
    assert_eq!(
        t.config.get("max.message.bytes").map(String::as_str),
        Some("2097152")
    );
    let columns = s.table_columns("created_users").await?;
    assert!(
        columns
            .iter()
            .any(|c| c.name == "age" && c.cql_type == "int"),
        "{columns:?}"
    );
    let status = got.status.expect("status");
    assert_eq!(status.topic.and_then(|t| t.partitions), Some(6));
    assert!(
        status
            .table
            .expect("table")
            .columns
            .iter()
            .any(|c| c.name == "age")
    );
    // The spec change rolls the runner's Pods.
    let second_hash = s.runner_config_hash("randomuser-sink", 2).await?;
    assert_ne!(
        second_hash, first_hash,
        "a new column changes what the Pods run"
    );

    // Unsupported: fewer partitions and a changed column type; supported
    // in the same update: a new column and a topic config change.
    let nat = json!({"name": "nat", "type": "text", "from": "/nat"});
    sp["spec"]["cassandra"]["table"]["columns"] = columns_with(&sp, &[nat], |c| {
        if c["name"] == "gender" {
            c["type"] = json!("int");
        }
    });
    sp["spec"]["kafka"]["topic"]["partitions"] = json!(2);
    sp["spec"]["kafka"]["topic"]["config"] = json!({"retention.ms": "3600000"});
    s.apply(&sp).await?;
    let (_, topic) = s
        .wait_condition(name, "TopicReady", "False", Some("NotSupported"), 60)
        .await?;
    assert!(
        topic.message.contains("cannot remove partitions"),
        "{}",
        topic.message
    );
    let (_, table) = s
        .wait_condition(name, "TableReady", "False", Some("NotSupported"), 60)
        .await?;
    assert!(
        table.message.contains("\"gender\"")
            && table.message.contains("cannot change a column's type"),
        "{}",
        table.message
    );
    let (sp_now, ready) = s
        .wait_condition(name, "Ready", "False", Some("NotSupported"), 60)
        .await?;
    println!("Ready: {}", ready.message);
    assert_eq!(
        sp_now.status.as_ref().and_then(|s| s.observed_generation),
        Some(3)
    );
    // ...and everything else was still reconciled.
    let t = s.kafka_topic(&s.topic).await?.expect("topic");
    assert_eq!(t.partitions, 6, "partitions are never removed");
    assert_eq!(
        t.config.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert!(
        !t.config.contains_key("max.message.bytes"),
        "undeclared config is reverted"
    );
    let columns = s.table_columns("created_users").await?;
    assert!(
        columns.iter().any(|c| c.name == "nat"),
        "the new column was added"
    );
    assert!(
        columns
            .iter()
            .any(|c| c.name == "gender" && c.cql_type == "text"),
        "the type is left as it is"
    );
    s.wait_condition(name, "RunnerReady", "True", None, 120)
        .await?;

    // Every change was announced as an Event.
    let events = s.ns.api::<Event>().list(&ListParams::default()).await?;
    let reasons: Vec<String> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason.clone())
        .collect();
    // The first apply is one Event for all it made.
    let created: Vec<&str> = events
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some("Created"))
        .filter_map(|e| e.note.as_deref())
        .collect();
    assert!(
        matches!(created.as_slice(), [note] if note.contains("topic") && note.contains("table") && note.contains("Deployment")),
        "one Created Event naming the topic, the table and the runner: {created:?}"
    );
    for reason in [
        "Created",
        "ColumnAdded",
        "PartitionsIncreased",
        "TopicConfigApplied",
        "NotSupported",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
