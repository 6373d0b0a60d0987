//! Every key ends at its latest version: thousands of keys, several
//! versions of each produced back to back by a plain Kafka producer keyed by
//! the partition key, written by a sink that is killed with SIGKILL and then
//! shares the topic with a second sink that joins mid-stream. Each row is
//! checked by content, not only counted.

mod runner;

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use millrace_testsupport::{Deadline, poll_until};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use runner::{Fixture, NAMESPACE, randomuser_table};
use serde_json::{Value, json};

const KEYS: usize = 6_000;
const VERSIONS: usize = 4;

fn id(key: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0deb_0000_0000_4000_8000_0000_0000_0000 | key as u128)
}

fn record(key: usize, version: usize) -> Value {
    json!({
        "gender": "female",
        "name": {"first": format!("v{version}"), "last": format!("Lindqvist{key}")},
        "location": {"street": {"number": key, "name": "Storgatan"}, "city": "Umeå",
                     "state": "Västerbotten", "country": "Sweden", "postcode": 90326},
        "email": format!("k{key}.v{version}@example.com"),
        "login": {"uuid": id(key).to_string(), "username": format!("k{key}")},
        "registered": {"date": "2019-05-01T08:00:00.000Z"},
        "phone": "090-123456",
        "picture": {"medium": "https://randomuser.me/api/portraits/med/women/3.jpg"},
    })
}

/// `first_name` (the version) of every row, by id.
async fn versions(fx: &Fixture) -> anyhow::Result<HashMap<uuid::Uuid, String>> {
    let mut query = scylla::statement::unprepared::Statement::new(format!(
        "SELECT id, first_name FROM {}",
        fx.qualified_table()
    ));
    query.set_page_size(5000);
    let rows = fx
        .session
        .query_iter(query, &[])
        .await?
        .rows_stream::<(uuid::Uuid, String)>()?;
    Ok(rows.try_collect().await?)
}

/// The metadata the sink group committed with each partition's offset.
fn committed_metadata(fx: &Fixture, partitions: i32) -> anyhow::Result<Vec<String>> {
    let group = millrace_api::consumer_group(NAMESPACE, &fx.name);
    let consumer: BaseConsumer = fx.world.kafka_config().set("group.id", &group).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&fx.topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| e.metadata().to_owned())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_key_ends_at_its_latest_version_through_a_kill_and_a_rebalance() -> anyhow::Result<()>
{
    let partitions = 3;
    let fx = Fixture::new("ordering", partitions, randomuser_table("users")).await?;
    // Each key's versions back to back, as fast as the producer goes: many
    // versions of one key share a millisecond, and some sit on either side
    // of an offset multiple of 1000.
    let payloads: Vec<Vec<u8>> = (0..KEYS)
        .flat_map(|k| (0..VERSIONS).map(move |v| record(k, v).to_string().into_bytes()))
        .collect();
    fx.produce(&payloads).await?;
    let pipeline = fx.pipeline(json!([]));
    let mut slow = pipeline.clone();
    slow["spec"]["runner"]["maxInFlight"] = json!(8);
    let mut slowest = pipeline.clone();
    slowest["spec"]["runner"]["maxInFlight"] = json!(1);

    // A sink killed mid-stream: what it wrote past its last commit is
    // written again by the next owner.
    let mut first = fx.start("sink", &slow, "sink-1")?;
    first.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the first sink to write some rows",
        Deadline::secs(120),
        || async {
            Ok((first.metric("millrace_rows_written_total").await? >= 5000.0).then_some(()))
        },
    )
    .await?;
    first.kill9()?;

    // Its successor, slowed down, and a second sink joining mid-stream.
    let mut second = fx.start("sink", &slowest, "sink-2")?;
    second.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the second sink to write some rows",
        Deadline::secs(120),
        || async {
            Ok((second.metric("millrace_rows_written_total").await? >= 1500.0).then_some(()))
        },
    )
    .await?;
    let mut third = fx.start("sink", &pipeline, "sink-3")?;
    third.wait_ready(Deadline::secs(90)).await?;
    poll_until(
        "both sinks to have read everything",
        Deadline::secs(300),
        || async { Ok((second.lag_is_zero().await? && third.lag_is_zero().await?).then_some(())) },
    )
    .await?;
    assert!(
        second
            .log_text()
            .contains("partitions revoked: draining in-flight writes"),
        "the second sink gave partitions up to the third"
    );
    assert!(
        third.metric("millrace_rows_written_total").await? > 0.0,
        "the third sink wrote too"
    );

    let rows = versions(&fx).await?;
    assert_eq!(rows.len(), KEYS, "one row per key");
    let latest = format!("v{}", VERSIONS - 1);
    let stale: Vec<(uuid::Uuid, &String)> = rows
        .iter()
        .filter(|(_, v)| **v != latest)
        .map(|(id, v)| (*id, v))
        .collect();
    println!(
        "{} keys x {VERSIONS} versions: {} rows at an older version",
        KEYS,
        stale.len()
    );
    assert!(
        stale.is_empty(),
        "{} of {KEYS} rows end at an older version, e.g. {:?}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
    for k in [0, KEYS / 2, KEYS - 1] {
        assert_eq!(rows.get(&id(k)), Some(&latest), "key {k}");
    }

    for sink in [&mut third, &mut second] {
        let status = sink.terminate(Deadline::secs(60)).await?;
        assert!(status.success(), "{status}");
    }
    for (partition, (committed, end)) in fx.committed_and_end()? {
        assert_eq!(committed, end, "partition {partition} committed to its end");
    }
    // The chain of write timestamps goes with each commit, so the next
    // owner of a partition continues it.
    for metadata in committed_metadata(&fx, partitions)? {
        assert!(
            millrace_api::CommitMetadata::decode(&metadata).is_some(),
            "committed offset metadata carries the write timestamp: {metadata:?}"
        );
    }
    fx.cleanup().await
}
