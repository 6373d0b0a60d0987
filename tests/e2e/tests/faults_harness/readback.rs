//! Reading back what the run left: the topic and the dead-letter topic
//! record by record, the sink group's committed offsets, the table's ids.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use millrace_testsupport::{Deadline, World};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

pub struct TopicRecord {
    pub count: u32,
    pub first_ms: i64,
    /// Where its first copy is.
    pub partition: i32,
    pub offset: i64,
}

/// A topic's records by key, and (time, `millrace.error` header) of each
/// message, which is what a dead-letter topic is read for.
pub type TopicContents = (HashMap<u128, TopicRecord>, Vec<(i64, String)>);

/// Every key of `topic` with how often it occurs and when it was first
/// produced (the record's CreateTime), read from the beginning to the high
/// watermarks.
pub fn read_topic(world: &World, topic: &str) -> anyhow::Result<TopicContents> {
    let consumer: BaseConsumer = world
        .kafka_config()
        .set(
            "group.id",
            millrace_testsupport::unique_name("faults-reader"),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    let mut keys: HashMap<u128, TopicRecord> = HashMap::new();
    let mut headers = Vec::new();
    if ends.is_empty() {
        return Ok((keys, headers));
    }
    consumer.assign(&tpl)?;
    let deadline = Deadline::secs(300);
    while !ends.is_empty() {
        anyhow::ensure!(!deadline.passed(), "reading {topic}: {ends:?} left");
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let at = msg.timestamp().to_millis().unwrap_or_default();
        let id = msg
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| uuid::Uuid::parse_str(k.trim_matches('"')).ok())
            .map(|u| u.as_u128())
            .unwrap_or_default();
        let e = keys.entry(id).or_insert(TopicRecord {
            count: 0,
            first_ms: at,
            partition: msg.partition(),
            offset: msg.offset(),
        });
        e.count += 1;
        e.first_ms = e.first_ms.min(at);
        let reason = msg
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|x| x.key == "millrace.error")
                    .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
            .unwrap_or_default();
        headers.push((at, reason));
        if ends
            .get(&msg.partition())
            .is_some_and(|end| msg.offset() + 1 >= *end)
        {
            ends.remove(&msg.partition());
        }
    }
    Ok((keys, headers))
}

/// The sink group's committed offsets have reached the topic's end.
pub fn sink_caught_up(world: &World, group: &str, topic: &str) -> anyhow::Result<Option<i64>> {
    let consumer: BaseConsumer = world.kafka_config().set("group.id", group).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            ends.insert(p.id(), high);
        }
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut lag = 0;
    for e in committed.elements() {
        let c = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        lag += (ends[&e.partition()] - c).max(0);
    }
    Ok(Some(lag))
}

/// The fewest in-sync replicas any partition of `topic` has (0 when the
/// topic has no partitions or a partition no leader).
pub fn smallest_isr(world: &World, topic: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = world.kafka_config().create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| if p.leader() < 0 { 0 } else { p.isr().len() })
        .min()
        .unwrap_or(0))
}

pub async fn table_ids(
    session: &scylla::client::session::Session,
    table: &str,
) -> anyhow::Result<HashMap<u128, u32>> {
    let mut query =
        scylla::statement::unprepared::Statement::new(format!("SELECT id FROM {table}"));
    query.set_page_size(1000);
    let ids: Vec<uuid::Uuid> = session
        .query_iter(query, &[])
        .await?
        .rows_stream::<(uuid::Uuid,)>()?
        .map_ok(|(id,)| id)
        .try_collect()
        .await?;
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        *out.entry(id.as_u128()).or_insert(0) += 1;
    }
    Ok(out)
}
