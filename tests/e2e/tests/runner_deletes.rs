//! Deletes from the record, against the real Kafka and Cassandra, with
//! records from a plain producer: a Kafka tombstone, a key-only record and
//! a record with the delete marker each remove their one row of a
//! clustering table, and the row's other clustering rows stay; a later
//! version of a deleted key writes the row again; a tombstone that names no
//! row goes to the dead-letter topic with the reason; and a second sink
//! reading the whole topic again (a replay) leaves the table as it was.
//! Without `deletes`, a tombstone is dead-lettered, never dropped.

mod runner;

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_testsupport::{Deadline, poll_until};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use runner::Fixture;
use serde_json::{Value, json};

fn orders(deletes: Option<Value>) -> Value {
    let mut table = json!({
        "name": "orders",
        "columns": [
            {"name": "user_id", "type": "int", "from": "/user"},
            {"name": "at", "type": "int", "from": "/at"},
            {"name": "item", "type": "text", "from": "/item"},
        ],
        "partitionKey": ["user_id"],
        "clusteringKey": [{"name": "at"}],
    });
    if let Some(deletes) = deletes {
        table["deletes"] = deletes;
    }
    table
}

/// Produces each (key, value) in order, a `None` value as a tombstone.
async fn produce(fx: &Fixture, records: &[(Option<&str>, Option<Value>)]) -> anyhow::Result<()> {
    let producer = fx.producer()?;
    for (key, value) in records {
        let payload = value.as_ref().map(Value::to_string);
        let mut record = FutureRecord::<str, str>::to(&fx.topic);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = &payload {
            record = record.payload(payload);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

/// Every row: (user_id, at) -> (item, WRITETIME(item)).
async fn rows(fx: &Fixture) -> anyhow::Result<BTreeMap<(i32, i32), (String, i64)>> {
    let select = format!(
        "SELECT user_id, at, item, WRITETIME(item) FROM {}",
        fx.qualified_table()
    );
    let rows: Vec<(i32, i32, String, i64)> = fx.select(select).await?;
    Ok(rows
        .into_iter()
        .map(|(user, at, item, written)| ((user, at), (item, written)))
        .collect())
}

fn header(m: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn tombstones_key_only_and_marked_records_delete_their_row_and_a_replay_keeps_it_so()
-> anyhow::Result<()> {
    // One partition: the records' order is the topic's.
    let fx = Fixture::new(
        "deletes",
        1,
        orders(Some(json!({
            "tombstones": true,
            "keyOnly": true,
            "marker": {"from": "/op", "equals": "delete"},
        }))),
    )
    .await?;
    let pipeline = fx.pipeline(json!([]));
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;

    produce(
        &fx,
        &[
            (Some("1"), Some(json!({"user": 1, "at": 1, "item": "a"}))),
            (Some("1"), Some(json!({"user": 1, "at": 2, "item": "b"}))),
            (Some("2"), Some(json!({"user": 2, "at": 1, "item": "c"}))),
            (Some("3"), Some(json!({"user": 3, "at": 1, "item": "d"}))),
            // A tombstone keyed by the primary key's fields: row (1, 1)
            // only; (1, 2) in the same partition stays.
            (Some(r#"{"user": 1, "at": 1}"#), None),
            // The key and nothing else.
            (Some("2"), Some(json!({"user": 2, "at": 1}))),
            // The marker, whatever else the record has.
            (
                Some("3"),
                Some(json!({"user": 3, "at": 1, "item": "d", "op": "delete"})),
            ),
            // A later version of a deleted row writes it again.
            (Some("2"), Some(json!({"user": 2, "at": 1, "item": "c2"}))),
            // Names no single row: two key columns, plain text.
            (Some("7"), None),
            // Names nothing at all.
            (None, None),
        ],
    )
    .await?;

    let want: BTreeMap<(i32, i32), String> =
        [((1, 2), "b".to_owned()), ((2, 1), "c2".to_owned())].into();
    let first = poll_until("the rows after the deletes", Deadline::secs(90), || async {
        let now = rows(&fx).await?;
        let items: BTreeMap<(i32, i32), String> = now
            .iter()
            .map(|(k, (item, _))| (*k, item.clone()))
            .collect();
        Ok((items == want).then_some(now))
    })
    .await?;
    let deleted = "millrace_rows_deleted_total";
    sink.metric_reaching(deleted, 3.0, Deadline::secs(30))
        .await?;
    assert_eq!(sink.metric(deleted).await?, 3.0);

    let dead = fx.consume(&fx.dlq, 2, Deadline::secs(60)).await?;
    let reasons: Vec<Option<String>> = dead.iter().map(|m| header(m, "millrace.error")).collect();
    println!("dead letters: {reasons:?}");
    // In either order: the two tombstones are handled by concurrent
    // writes, so which is dead-lettered first is not defined.
    assert!(
        reasons.iter().any(|r| r
            .as_deref()
            .is_some_and(|r| r.contains("the tombstone's key \"7\" does not name the row"))),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.as_deref() == Some("a tombstone without a key names no row to delete")),
        "{reasons:?}"
    );
    assert!(
        dead.iter().all(|m| m.payload().is_none()),
        "a dead-lettered tombstone stays a tombstone"
    );

    // A replay of the whole topic by a sink of another group: the same
    // write times, so the same table.
    let mut again = pipeline.clone();
    again["metadata"]["name"] = json!(format!("{}-again", fx.name));
    let mut replay = fx.start("sink", &again, "replay")?;
    replay.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the replay to pass every record",
        Deadline::secs(90),
        || async {
            let written = replay.metric("millrace_rows_written_total").await?;
            let deleted = replay.metric("millrace_rows_deleted_total").await?;
            Ok((written >= 5.0 && deleted >= 3.0).then_some(()))
        },
    )
    .await?;
    assert_eq!(rows(&fx).await?, first, "the replay changed the table");
    println!("after the replay: {first:?}");

    replay.terminate(Deadline::secs(30)).await?;
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tombstone_for_a_table_without_deletes_is_dead_lettered() -> anyhow::Result<()> {
    let fx = Fixture::new("deletes-off", 1, orders(None)).await?;
    let mut sink = fx.start("sink", &fx.pipeline(json!([])), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    produce(
        &fx,
        &[
            (Some("1"), Some(json!({"user": 1, "at": 1, "item": "a"}))),
            (Some(r#"{"user": 1, "at": 1}"#), None),
            // Key-only, but keyOnly is off: a row with its item unset.
            (Some("2"), Some(json!({"user": 2, "at": 1}))),
        ],
    )
    .await?;
    let dead = fx.consume(&fx.dlq, 1, Deadline::secs(60)).await?;
    assert_eq!(
        header(&dead[0], "millrace.error").as_deref(),
        Some("a tombstone (a record without a value), and the table's deletes.tombstones is off")
    );
    poll_until("rows 1 and 2", Deadline::secs(60), || async {
        let n = fx
            .session
            .query_unpaged(format!("SELECT item FROM {}", fx.qualified_table()), &[])
            .await?
            .into_rows_result()?
            .rows_num();
        Ok((n == 2).then_some(()))
    })
    .await?;
    let kept = rows_with_null_items(&fx).await?;
    assert_eq!(kept, vec![(1, Some("a".to_owned())), (2, None)]);
    assert_eq!(
        sink.metric("millrace_records_dead_lettered_total{reason=\"tombstone\"}")
            .await?,
        1.0
    );
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}

async fn rows_with_null_items(fx: &Fixture) -> anyhow::Result<Vec<(i32, Option<String>)>> {
    let mut out: Vec<(i32, Option<String>)> = fx
        .select(format!(
            "SELECT user_id, item FROM {}",
            fx.qualified_table()
        ))
        .await?;
    out.sort();
    Ok(out)
}
