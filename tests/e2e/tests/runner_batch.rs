//! `spec.runner.batch` against the real Kafka and Cassandra: the rows of one
//! partition go to Cassandra as unlogged batches (the sink's batch metrics
//! count them), those of a clustering table and of a second table with the
//! same partition key together; every row arrives; of the many versions of
//! a row in one batch the latest wins; a row Cassandra refuses is the only
//! one dead-lettered (its batch is written again row by row); and a replay
//! by a second sink leaves both tables as they were.

mod runner;

use std::collections::BTreeMap;
use std::time::Duration;

use millrace_testsupport::{Deadline, poll_until};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;
use runner::Fixture;
use serde_json::{Value, json};

const DEVICES: i32 = 6;
const READINGS: i32 = 25;

fn readings() -> Value {
    json!({
        "name": "readings",
        "columns": [
            {"name": "device", "type": "int", "from": "/device"},
            {"name": "label", "type": "text", "from": "/label"},
            {"name": "value", "type": "int", "from": "/value"},
        ],
        "partitionKey": ["device"],
        "clusteringKey": [{"name": "label"}],
    })
}

/// The latest reading of each device: one row per partition, so every
/// record of a device is a new version of its row.
fn latest() -> Value {
    json!({
        "name": "latest",
        "columns": [
            {"name": "device", "type": "int", "from": "/device"},
            {"name": "value", "type": "int", "from": "/value"},
        ],
        "partitionKey": ["device"],
    })
}

/// The latest table: device -> (value, WRITETIME(value)).
async fn latest_rows(fx: &Fixture) -> anyhow::Result<BTreeMap<i32, (i32, i64)>> {
    let select = format!(
        "SELECT device, value, WRITETIME(value) FROM {}.latest",
        fx.keyspace
    );
    let rows: Vec<(i32, i32, i64)> = fx.select(select).await?;
    Ok(rows.into_iter().map(|(d, v, w)| (d, (v, w))).collect())
}

/// Every row: (device, label) -> (value, WRITETIME(value)).
async fn rows(fx: &Fixture) -> anyhow::Result<BTreeMap<(i32, String), (i32, i64)>> {
    let select = format!(
        "SELECT device, label, value, WRITETIME(value) FROM {}",
        fx.qualified_table()
    );
    let rows: Vec<(i32, String, i32, i64)> = fx.select(select).await?;
    Ok(rows
        .into_iter()
        .map(|(d, label, v, w)| ((d, label), (v, w)))
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_of_one_partition_are_batched_and_only_a_refused_row_is_dead_lettered()
-> anyhow::Result<()> {
    // Two partitions of the topic, so the sink's batches hold records of
    // both; every device is keyed to one of them.
    let fx = Fixture::new("batch", 2, readings()).await?;
    let latest_spec: millrace_api::TableSpec = serde_json::from_value(latest())?;
    fx.session
        .query_unpaged(
            millrace_api::cql::create_table(&fx.keyspace, &latest_spec)?,
            &[],
        )
        .await?;
    fx.session.await_schema_agreement().await?;

    // The whole backlog is in the topic before the sink starts, each
    // device's readings one after another, as a keyed producer of
    // per-device events writes them: the sink reads many rows of one
    // partition together.
    let mut records: Vec<(String, Value)> = Vec::new();
    for device in 0..DEVICES {
        for n in 0..READINGS {
            records.push((
                device.to_string(),
                json!({"device": device, "label": format!("r{n:03}"), "value": n}),
            ));
        }
    }
    // A second version of a row, in the same run of its device's records:
    // the later one wins.
    records.push((
        "2".into(),
        json!({"device": 2, "label": "r003", "value": 1003}),
    ));
    // A clustering value above Cassandra's 65,535 bytes: the mapper takes
    // it, Cassandra refuses the write, and so the whole batch of device 4
    // it is grouped in. Only this row may be dead-lettered.
    let huge = "x".repeat(70_000);
    records.push(("4".into(), json!({"device": 4, "label": huge, "value": -1})));
    for n in READINGS..READINGS + 5 {
        records.push((
            "4".into(),
            json!({"device": 4, "label": format!("r{n:03}"), "value": n}),
        ));
    }
    let producer = fx.producer()?;
    for (key, value) in &records {
        let payload = value.to_string();
        producer
            .send(
                FutureRecord::to(&fx.topic).key(key).payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }

    let mut pipeline = fx.pipeline(json!([]));
    pipeline["spec"]["runner"]["batch"] = json!({"maxRecords": 64, "maxDelayMs": 100});
    let cassandra = &mut pipeline["spec"]["cassandra"];
    let readings_table = cassandra["table"].take();
    cassandra["tables"] = json!([readings_table, latest()]);
    if let Some(c) = cassandra.as_object_mut() {
        c.remove("table");
    }
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;

    let expected_rows = (DEVICES * READINGS + 5) as usize;
    let first = poll_until("every good row", Deadline::secs(120), || async {
        let now = rows(&fx).await?;
        Ok((now.len() == expected_rows).then_some(now))
    })
    .await?;
    for device in 0..DEVICES {
        for n in 0..READINGS {
            let want = if (device, n) == (2, 3) { 1003 } else { n };
            let got = first.get(&(device, format!("r{n:03}"))).map(|(v, _)| *v);
            assert_eq!(got, Some(want), "device {device} reading {n}");
        }
    }
    assert!(
        first.keys().all(|(_, label)| label.len() < 100),
        "the refused row is not in the table"
    );
    // Each device's records were one run in the topic, so many versions of
    // its latest row shared a batch: the last record's value is there.
    let latest_first = poll_until("the latest of each device", Deadline::secs(60), || async {
        let now = latest_rows(&fx).await?;
        let values: Vec<i32> = now.values().map(|(v, _)| *v).collect();
        Ok((values == [24, 24, 1003, 24, 29, 24]).then_some(now))
    })
    .await?;

    let dead = fx.consume(&fx.dlq, 1, Deadline::secs(60)).await?;
    let reason = dead[0]
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == "millrace.error"))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    println!("dead letter: {reason}");
    assert!(
        reason.contains(&format!(
            "table {}.readings: cassandra refused the row",
            fx.keyspace
        )),
        "{reason}"
    );
    let payload: Value = serde_json::from_slice(dead[0].payload().unwrap_or_default())?;
    assert_eq!(payload["value"], json!(-1), "the refused record itself");

    // Every record is written to both tables but the refused one, which
    // `latest` took (its dead letter names the table that refused it), and
    // most rows in batches.
    let written = "millrace_rows_written_total";
    let rows_written = (2 * records.len() - 1) as f64;
    sink.metric_reaching(written, rows_written, Deadline::secs(30))
        .await?;
    let batches = sink.metric("millrace_batches_written_total").await?;
    let batched = sink.metric("millrace_batched_rows_total").await?;
    println!("{batches} batches, {batched} rows in them, of {rows_written}");
    assert!(batches >= 1.0, "no batch was written");
    assert!(
        batched >= rows_written / 2.0,
        "{batched} of {rows_written} rows went in batches"
    );
    assert!(
        batched / batches > 2.0,
        "{batched} rows in {batches} batches"
    );
    assert_eq!(
        sink.metric("millrace_rows_failed_total").await?,
        1.0,
        "one record dead-lettered"
    );
    // Nothing left behind: the offsets of both partitions are committed to
    // the end.
    poll_until(
        "offsets committed to the end",
        Deadline::secs(60),
        || async {
            let c = fx.committed_and_end()?;
            Ok((c.len() == 2 && c.values().all(|(done, end)| done == end)).then_some(()))
        },
    )
    .await?;

    // A second sink of another group reads the topic again: the same write
    // times, so the same table.
    let mut again = pipeline.clone();
    again["metadata"]["name"] = json!(format!("{}-again", fx.name));
    let mut replay = fx.start("sink", &again, "replay")?;
    replay.wait_ready(Deadline::secs(60)).await?;
    replay
        .metric_reaching(written, rows_written, Deadline::secs(90))
        .await?;
    assert_eq!(rows(&fx).await?, first, "the replay changed the table");
    assert_eq!(
        latest_rows(&fx).await?,
        latest_first,
        "the replay changed the latest table"
    );

    replay.terminate(Deadline::secs(30)).await?;
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}
