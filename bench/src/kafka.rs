//! Kafka helpers: topic admin and a plain whole-topic read.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use crate::World;

pub fn base_config(world: &World) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &world.kafka_bootstrap);
    cfg
}

pub async fn create_topic(world: &World, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(world).create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }
    Ok(())
}

pub async fn delete_topic(world: &World, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(world).create()?;
    let results = admin
        .delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("delete topic {t}: {e}"))?;
    }
    Ok(())
}

/// What a whole-topic read saw.
pub struct Read {
    pub records: u64,
    pub bytes: u64,
    /// From assigning the partitions (connected, metadata known) to the
    /// last record: the read itself, fetches included.
    pub timed: Duration,
    /// From the first record received to the last (librdkafka prefetches
    /// from the assignment on, so this undercounts the fetching).
    pub first_to_last: Duration,
    /// From creating the consumer to the last record.
    pub wall: Duration,
}

/// Reads every record the topic holds now (up to each partition's high
/// watermark), calling `each` on every one. Partitions are assigned, not
/// subscribed: no consumer-group join, so the figure is Kafka and librdkafka
/// only. The fetch settings are librdkafka's defaults, as the runner's are.
pub fn read_topic(
    world: &World,
    topic: &str,
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> anyhow::Result<Read> {
    let started = Instant::now();
    let consumer: BaseConsumer = base_config(world)
        // Never used to commit; librdkafka wants one for a consumer.
        .set("group.id", format!("millrace-bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("topic metadata")?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("no topic {topic}");
    };
    let mut tpl = TopicPartitionList::new();
    let mut expected: u64 = 0;
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        expected += u64::try_from(high - low).unwrap_or(0);
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
    }
    if expected == 0 {
        bail!("topic {topic} is empty");
    }
    let assigned = Instant::now();
    consumer.assign(&tpl)?;

    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut idle_since = Instant::now();
    while records < expected {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += m.payload_len() as u64;
                each(&m);
                last = Instant::now();
                idle_since = last;
            }
            Some(Err(e)) => bail!("kafka: {e}"),
            None => {
                if idle_since.elapsed() > Duration::from_secs(30) {
                    bail!("read {records} of {expected} records, then nothing for 30 s");
                }
            }
        }
    }
    Ok(Read {
        records,
        bytes,
        timed: last.duration_since(assigned),
        first_to_last: last.duration_since(first.unwrap_or(started)),
        wall: last.duration_since(started),
    })
}
