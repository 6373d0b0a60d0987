//! How a row is written, as the record says, against the real Kafka and
//! Cassandra: columns from the Kafka record's key, timestamp and headers
//! (records produced by a plain producer); a TTL from the table and from
//! the record (`TTL()` read back, and a row that expires); a write time
//! from a record field (`WRITETIME()` read back), still in the topic's
//! order for two versions of a key; and records whose TTL or write time
//! cannot be read, dead-lettered with the reason and the headers the
//! columns read, or refused by the push endpoint with 422.

mod runner;

use std::time::Duration;

use anyhow::Context;
use millrace_testsupport::{Deadline, poll_until};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use runner::Fixture;
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};

/// Base of the records' own times: 2023-11-14T22:13:20Z, in milliseconds.
const T0: i64 = 1_700_000_000_000;
/// The table's TTL, for records without their own.
const TABLE_TTL: i32 = 3600;
/// The TTL record 2 gives itself.
const ROW_TTL: i32 = 20;

fn table() -> Value {
    json!({
        "name": "events",
        "columns": [
            {"name": "id", "type": "int", "from": "/id"},
            {"name": "body", "type": "text", "from": "/body"},
            {"name": "k", "type": "text", "fromKafka": "key"},
            {"name": "produced", "type": "timestamp", "fromKafka": "timestamp"},
            {"name": "trace", "type": "text", "fromHeader": "trace-id"},
        ],
        "partitionKey": ["id"],
        "ttl": {"seconds": TABLE_TTL, "from": "/ttl"},
        "writeTime": {"from": "/updatedAt", "unit": "milliseconds"},
    })
}

/// One record as a plain Kafka producer sends it.
struct Sent {
    key: String,
    timestamp: i64,
    trace: Option<&'static str>,
    value: Value,
}

async fn produce(fx: &Fixture, records: &[Sent]) -> anyhow::Result<()> {
    let producer = fx.producer()?;
    // One at a time: two versions of a key must be in this order.
    for r in records {
        let payload = r.value.to_string();
        let mut record = FutureRecord::to(&fx.topic)
            .key(&r.key)
            .payload(&payload)
            .timestamp(r.timestamp);
        if let Some(trace) = r.trace {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "trace-id",
                value: Some(trace),
            }));
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

/// (body, k, produced, trace, WRITETIME(body), TTL(body)) of row `id`.
type Stored = (
    String,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    i64,
    Option<i32>,
);

async fn row(fx: &Fixture, id: i32) -> anyhow::Result<Option<Stored>> {
    let select = format!(
        "SELECT body, k, produced, trace, WRITETIME(body), TTL(body) FROM {} WHERE id = ?",
        fx.qualified_table()
    );
    let rows = fx
        .session
        .query_unpaged(select, (id,))
        .await?
        .into_rows_result()?;
    Ok(rows.maybe_first_row::<Stored>()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_parts_ttl_and_write_time_reach_the_table() -> anyhow::Result<()> {
    // One partition: the two versions of key 3 are in one partition's order.
    let fx = Fixture::new("ttl-wt", 1, table()).await?;
    let pipeline = fx.pipeline(json!([]));
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;

    let produced_at = T0 + 86_400_000;
    produce(
        &fx,
        &[
            // Everything from the Kafka record; the table's TTL.
            Sent {
                key: "k1".into(),
                timestamp: produced_at,
                trace: Some("trace-1"),
                value: json!({"id": 1, "body": "one", "updatedAt": T0 + 123}),
            },
            // Its own TTL of 20 s: it expires.
            Sent {
                key: "k2".into(),
                timestamp: produced_at,
                trace: None,
                value: json!({"id": 2, "body": "two", "updatedAt": T0 + 1000, "ttl": ROW_TTL}),
            },
            // Two versions of one key, the later one with an earlier time:
            // the topic's order wins, written just after the first.
            Sent {
                key: "k3".into(),
                timestamp: produced_at,
                trace: None,
                value: json!({"id": 3, "body": "first", "updatedAt": T0 + 5000}),
            },
            Sent {
                key: "k3".into(),
                timestamp: produced_at,
                trace: None,
                value: json!({"id": 3, "body": "second", "updatedAt": T0 + 4000}),
            },
            // No write time: dead-lettered, with its header.
            Sent {
                key: "k4".into(),
                timestamp: produced_at,
                trace: Some("trace-4"),
                value: json!({"id": 4, "body": "four"}),
            },
            // A TTL that is no number of seconds: dead-lettered.
            Sent {
                key: "k5".into(),
                timestamp: produced_at,
                trace: None,
                value: json!({"id": 5, "body": "five", "updatedAt": T0, "ttl": "soon"}),
            },
            // Forever: TTL 0 overrides the table's.
            Sent {
                key: "k6".into(),
                timestamp: produced_at,
                trace: None,
                value: json!({"id": 6, "body": "six", "updatedAt": T0 + 6000, "ttl": 0}),
            },
        ],
    )
    .await?;

    let one = poll_until("row 1", Deadline::secs(60), || row(&fx, 1)).await?;
    println!("row 1: {one:?}");
    assert_eq!(one.0, "one");
    assert_eq!(one.1.as_deref(), Some("k1"), "the Kafka key");
    assert_eq!(
        one.2,
        Some(CqlTimestamp(produced_at)),
        "the Kafka timestamp"
    );
    assert_eq!(one.3.as_deref(), Some("trace-1"), "the header");
    assert_eq!(
        one.4,
        (T0 + 123) * 1000,
        "WRITETIME is the record's own time"
    );
    let ttl = one.5.context("row 1 has a TTL")?;
    assert!(
        (TABLE_TTL - 120..=TABLE_TTL).contains(&ttl),
        "the table's TTL: {ttl}"
    );

    let three = poll_until("row 3's second version", Deadline::secs(60), || async {
        Ok(row(&fx, 3).await?.filter(|r| r.0 == "second"))
    })
    .await?;
    assert_eq!(
        three.4,
        (T0 + 5000) * 1000 + 1,
        "the later offset is written just after the earlier one"
    );
    assert_eq!(three.3, None, "no header: unset");

    let six = poll_until("row 6", Deadline::secs(60), || row(&fx, 6)).await?;
    assert_eq!(six.5, None, "TTL 0: the row never expires");
    assert_eq!(six.4, (T0 + 6000) * 1000);

    // Row 2 was written with its own TTL, and goes.
    let two = poll_until("row 2", Deadline::secs(60), || row(&fx, 2)).await?;
    let ttl = two.5.context("row 2 has a TTL")?;
    assert!((1..=ROW_TTL).contains(&ttl), "the record's own TTL: {ttl}");
    let started = std::time::Instant::now();
    poll_until("row 2 to expire", Deadline::secs(60), || async {
        Ok(row(&fx, 2).await?.is_none().then_some(()))
    })
    .await?;
    println!(
        "row 2 gone {:.1?} after the checks began",
        started.elapsed()
    );

    let dead = fx.consume(&fx.dlq, 2, Deadline::secs(60)).await?;
    let header = |m: &rdkafka::message::OwnedMessage, name: &str| {
        m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    let reasons: Vec<(Option<String>, Option<String>, Option<String>)> = dead
        .iter()
        .map(|m| {
            (
                header(m, "millrace.error"),
                header(m, "trace-id"),
                header(m, "millrace.source.timestamp"),
            )
        })
        .collect();
    println!("dead letters: {reasons:?}");
    let no_time = &reasons[0];
    assert_eq!(
        no_time.0.as_deref(),
        Some("writeTime from /updatedAt: the record has no value there")
    );
    assert_eq!(
        no_time.1.as_deref(),
        Some("trace-4"),
        "the header it carried"
    );
    assert_eq!(no_time.2, Some(produced_at.to_string()));
    let bad_ttl = reasons[1].0.as_deref().unwrap_or_default();
    assert!(bad_ttl.starts_with("ttl from /ttl: "), "{bad_ttl}");
    for id in [4, 5] {
        assert!(row(&fx, id).await?.is_none(), "row {id} was not written");
    }
    drop(sink);
    fx.cleanup().await
}

/// The push endpoint refuses a record whose TTL or write time the sink
/// would refuse, as it does a record that does not fit the columns.
#[tokio::test(flavor = "multi_thread")]
async fn the_push_endpoint_refuses_a_bad_ttl_or_write_time_with_422() -> anyhow::Result<()> {
    let mut table = table();
    // The sources key records by the value's partition key; the Kafka
    // columns stay (filled by the sink).
    table["name"] = json!("pushed");
    let fx = Fixture::new("ttl-push", 1, table).await?;
    let pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let client = reqwest::Client::new();
    let push = |body: Value| {
        let client = client.clone();
        let request = ingest.push(&client, "/v1/records");
        async move {
            let r = request
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.text().await?))
        }
    };
    let (status, text) = push(json!({"id": 1, "body": "x", "updatedAt": T0, "ttl": -1})).await?;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("ttl from /ttl"), "{text}");
    let (status, text) = push(json!({"id": 2, "body": "x", "updatedAt": T0 * 1000})).await?;
    assert_eq!(status, 422, "milliseconds times a thousand: {text}");
    assert!(text.contains("writeTime from /updatedAt"), "{text}");
    let (status, text) = push(json!({"id": 3, "body": "ok", "updatedAt": T0})).await?;
    assert_eq!(status, 202, "{text}");
    let three = poll_until("row 3", Deadline::secs(60), || row(&fx, 3)).await?;
    assert_eq!(three.0, "ok");
    assert_eq!(three.4, T0 * 1000);
    assert_eq!(three.1.as_deref(), Some("3"), "the key the ingest gave it");
    assert!(three.2.is_some(), "the produce time");
    drop((ingest, sink));
    fx.cleanup().await
}
