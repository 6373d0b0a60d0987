//! A topic another operator owns (Strimzi's Topic Operator) is used as it
//! is with `topic.managed: false`: millrace checks and reports it, carries
//! records through it, and never creates, alters or deletes it, not even
//! with `deletionPolicy: Delete`. A missing one is `TopicNotFound` until it
//! exists.

mod operator_common;

use std::collections::BTreeMap;

use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, describe_topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use serde_json::json;

const ROWS: i64 = 150;

async fn create_topic(s: &Scenario, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = s.world.kafka_config().create()?;
    let topic =
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    for r in admin.create_topics([&topic], &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

#[tokio::test]
async fn an_unmanaged_topic_is_used_as_it_is_and_never_deleted() -> anyhow::Result<()> {
    let s = Scenario::new("op-unmanaged").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "external";
    let dlq = format!("{}.dlq", s.topic);
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["deletionPolicy"] = json!("Delete");
    sp["spec"]["kafka"]["topic"] = json!({"name": s.topic, "partitions": 3, "managed": false});
    sp["spec"]["sources"] = json!([{
        "name": "synthetic",
        "generator": {"profile": "randomuser", "recordsPerSecond": 150, "limit": ROWS}
    }]);
    s.apply(&sp).await?;

    // Not there: reported, and not created.
    let (_, missing) = s
        .wait_condition(name, "TopicReady", "False", Some("TopicNotFound"), 60)
        .await?;
    println!("TopicReady: {}", missing.message);
    assert!(
        missing.message.contains("managed is false"),
        "{}",
        missing.message
    );
    assert!(
        describe_topic(&s.world, &s.topic).await?.is_none(),
        "not created"
    );

    // Made elsewhere, with its own partitions and config: the next retry
    // (15 s, then doubling) finds them.
    create_topic(&s, &s.topic, 2).await?;
    create_topic(&s, &dlq, 1).await?;
    let (_, ready) = s
        .wait_condition(name, "TopicReady", "True", None, 120)
        .await?;
    println!("TopicReady: {}", ready.message);
    assert!(ready.message.contains("used as it is"), "{}", ready.message);
    assert!(
        ready
            .message
            .contains("it has 2 partitions where the spec expects 3"),
        "{}",
        ready.message
    );
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    poll_until(&format!("{ROWS} rows"), Deadline::secs(180), || async {
        Ok((s.row_count("created_users").await? == ROWS).then_some(()))
    })
    .await?;
    let status = s.pipelines().get(name).await?.status.unwrap_or_default();
    assert_eq!(
        status.topic.and_then(|t| t.partitions),
        Some(2),
        "as observed"
    );
    let topic = describe_topic(&s.world, &s.topic).await?.expect("topic");
    assert_eq!(topic.partitions, 2, "no partitions added");
    assert_eq!(
        topic.config,
        BTreeMap::from([("retention.ms".to_owned(), "3600000".to_owned())]),
        "its config untouched"
    );

    // Delete leaves both topics.
    s.delete_pipeline(name, 60).await?;
    assert!(
        describe_topic(&s.world, &s.topic).await?.is_some(),
        "topic kept"
    );
    assert!(
        describe_topic(&s.world, &dlq).await?.is_some(),
        "dead-letter topic kept"
    );
    let reasons = s.event_reasons(name).await?;
    assert!(
        reasons
            .iter()
            .any(|(r, m)| r == "LeftInPlace" && m.contains("not managed by millrace")),
        "{reasons:?}"
    );
    op.stop().await?;
    s.cleanup().await
}
