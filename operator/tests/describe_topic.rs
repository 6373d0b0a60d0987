//! The operator's DescribeTopics request (`clients::native::describe_topic`,
//! its own code over librdkafka's C API) against the test world's broker:
//! a topic's partitions and replication factor, a topic that does not
//! exist, and a cluster that does not answer.

use std::net::TcpListener;
use std::time::Duration;

use millrace_operator::clients::native::{DescribeError, TopicShape, describe_topic};
use millrace_testsupport::{Deadline, World, poll_until, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

type Admin = AdminClient<DefaultClientContext>;

fn admin(bootstrap: &str) -> anyhow::Result<Admin> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("socket.connection.setup.timeout.ms", "2000")
        .create()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_is_described_a_missing_one_is_none_and_silence_is_an_error() -> anyhow::Result<()>
{
    let world = World::discover()?;
    let topic = unique_name("describe-topic");
    let client = std::sync::Arc::new(admin(&world.kafka_bootstrap)?);
    let describe = |topic: String| {
        let client = client.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                describe_topic(client.inner(), &topic, Duration::from_secs(10))
            })
            .await
        }
    };

    assert_eq!(describe(topic.clone()).await??, None, "not made yet");

    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in client
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &options,
        )
        .await?
    {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let shape = poll_until("the new topic described", Deadline::secs(60), || async {
        Ok(describe(topic.clone()).await??)
    })
    .await;
    let deleted = client.delete_topics(&[topic.as_str()], &options).await;
    assert_eq!(
        shape?,
        TopicShape {
            partitions: 3,
            replication_factor: 1
        }
    );
    for result in deleted? {
        result.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }

    // A port of this machine's that nothing listens on: reserved, then let go.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let silent = admin(&format!("127.0.0.1:{port}"))?;
    let answer = tokio::task::spawn_blocking(move || {
        describe_topic(silent.inner(), "anything", Duration::from_secs(3))
    })
    .await?;
    assert!(
        matches!(answer, Err(DescribeError::Request { .. })),
        "{answer:?}"
    );
    Ok(())
}
