//! The generator → Kafka → sink → Cassandra path at volume, and the first
//! throughput figure: rows/s of one sink process beside a plain
//! scylla-driver insert loop on the same rows, in the same run.

mod runner;

use std::collections::HashMap;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use millrace_api::cql;
use millrace_testsupport::{Deadline, poll_until};
use rdkafka::Message;
use runner::{Fixture, randomuser_table};
use scylla::value::CqlTimestamp;
use serde_json::{Value, json};

const N: usize = 50_000;

/// A row of the seed's table, as read back or as expected.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    first_name: Option<String>,
    last_name: Option<String>,
    gender: Option<String>,
    address: Option<String>,
    post_code: Option<String>,
    email: Option<String>,
    username: Option<String>,
    registered_ms: Option<i64>,
    phone: Option<String>,
    picture: Option<String>,
}

type Cols = (
    uuid::Uuid,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<String>,
);

const COLUMNS: &str = "id, first_name, last_name, gender, address, post_code, email, username, registered_date, phone, picture";

/// What the seed's job would have written for `record`, computed here
/// without the runner's mapping code.
fn expected(record: &Value) -> (uuid::Uuid, Row) {
    let text = |p: &str| {
        record.pointer(p).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let address = format!(
        "{} {}, {}, {}, {}",
        text("/location/street/number").unwrap_or_default(),
        text("/location/street/name").unwrap_or_default(),
        text("/location/city").unwrap_or_default(),
        text("/location/state").unwrap_or_default(),
        text("/location/country").unwrap_or_default(),
    );
    let registered_ms = text("/registered/date").map(|d| {
        chrono::DateTime::parse_from_rfc3339(&d)
            .expect("generated dates are RFC 3339")
            .timestamp_millis()
    });
    let id = text("/login/uuid")
        .and_then(|u| u.parse().ok())
        .expect("uuid");
    (
        id,
        Row {
            first_name: text("/name/first"),
            last_name: text("/name/last"),
            gender: text("/gender"),
            address: Some(address),
            post_code: text("/location/postcode"),
            email: text("/email"),
            username: text("/login/username"),
            registered_ms,
            phone: text("/phone"),
            picture: text("/picture/medium"),
        },
    )
}

async fn read_table(fx: &Fixture, table: &str) -> anyhow::Result<HashMap<uuid::Uuid, Row>> {
    let mut query = scylla::statement::unprepared::Statement::new(format!(
        "SELECT {COLUMNS} FROM {}",
        cql::qualified_table(&fx.keyspace, table)
    ));
    query.set_page_size(5000);
    let rows = fx
        .session
        .query_iter(query, &[])
        .await?
        .rows_stream::<Cols>()?;
    Ok(rows
        .map_ok(|c| {
            (
                c.0,
                Row {
                    first_name: c.1,
                    last_name: c.2,
                    gender: c.3,
                    address: c.4,
                    post_code: c.5,
                    email: c.6,
                    username: c.7,
                    registered_ms: c.8.map(|t| t.0),
                    phone: c.9,
                    picture: c.10,
                },
            )
        })
        .try_collect()
        .await?)
}

/// Given a pipeline whose generator produces 50,000 users, when ingest has
/// produced them all and a sink runs, then the table holds exactly 50,000
/// rows, each equal to its record; and the sink's rows/s is printed beside
/// a plain driver loop writing the same rows.
#[tokio::test(flavor = "multi_thread")]
async fn generator_fifty_thousand_records_become_exactly_fifty_thousand_rows() -> anyhow::Result<()>
{
    let fx = Fixture::new("gen", 3, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([
        {"name": "synthetic", "generator": {"profile": "randomuser", "recordsPerSecond": 25000, "limit": N}}
    ]));

    // Ingest: the generator produces N records, each acknowledged.
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    let started = Instant::now();
    poll_until(
        "the generator to produce every record",
        Deadline::secs(300),
        || async {
            Ok((ingest
                .metric("millrace_records_ingested_total{source=\"synthetic\"}")
                .await?
                >= N as f64)
                .then_some(()))
        },
    )
    .await?;
    let produce_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        fx.topic_size(&fx.topic)?,
        N as i64,
        "exactly N records in the topic"
    );
    let status = ingest.terminate(Deadline::secs(60)).await?;
    assert!(status.success(), "ingest exits cleanly: {status}");

    // Sink: time from start to the last row.
    let started = Instant::now();
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    // Ready means the group has assigned the partitions: from here on the
    // sink only reads and writes.
    let assigned = Instant::now();
    // Polled every 50 ms rather than with poll_until's growing pauses, so
    // the time is accurate to the poll.
    let deadline = Deadline::secs(600);
    while sink.metric("millrace_rows_written_total").await? < N as f64 {
        anyhow::ensure!(
            !deadline.passed(),
            "the sink did not write every row in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sink_secs = started.elapsed().as_secs_f64();
    let sink_write_secs = assigned.elapsed().as_secs_f64();
    drop(sink);

    // Contents: every record produced, read back from the topic, is a row
    // with the same values; nothing else is.
    let messages = fx.consume(&fx.topic, N, Deadline::secs(120)).await?;
    let want: HashMap<uuid::Uuid, Row> = messages
        .iter()
        .map(|m| {
            let v: Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("records are JSON");
            expected(&v)
        })
        .collect();
    assert_eq!(want.len(), N, "generated ids are distinct");
    let got = read_table(&fx, "users").await?;
    assert_eq!(got.len(), N, "exactly N rows");
    for (id, row) in &want {
        assert_eq!(got.get(id), Some(row), "row {id}");
    }

    // The same rows through a plain driver loop: prepared, idempotent,
    // 256 in flight (the sink's maxInFlight), no Kafka.
    let mut plain = fx.table.clone();
    plain.name = "users_plain".into();
    fx.session
        .query_unpaged(cql::create_table(&fx.keyspace, &plain)?, &[])
        .await?;
    fx.session.await_schema_agreement().await?;
    let mut insert = fx
        .session
        .prepare(format!(
            "INSERT INTO {} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            cql::qualified_table(&fx.keyspace, "users_plain")
        ))
        .await?;
    insert.set_is_idempotent(true);
    let rows: Vec<(uuid::Uuid, Row)> = want.into_iter().collect();
    let started = Instant::now();
    futures::stream::iter(rows.iter())
        .map(|(id, r)| {
            let insert = &insert;
            let session = &fx.session;
            async move {
                session
                    .execute_unpaged(
                        insert,
                        (
                            id,
                            &r.first_name,
                            &r.last_name,
                            &r.gender,
                            &r.address,
                            &r.post_code,
                            &r.email,
                            &r.username,
                            r.registered_ms.map(CqlTimestamp),
                            &r.phone,
                            &r.picture,
                        ),
                    )
                    .await
            }
        })
        .buffer_unordered(256)
        .try_collect::<Vec<_>>()
        .await?;
    let plain_secs = started.elapsed().as_secs_f64();
    assert_eq!(read_table(&fx, "users_plain").await?.len(), N);

    println!(
        "throughput on this machine ({N} randomuser rows, 3 partitions, maxInFlight 256):\n  \
         generator -> kafka: {:.0} records/s ({produce_secs:.1} s)\n  \
         sink (kafka -> cassandra, one process) once assigned: {:.0} rows/s ({sink_write_secs:.1} s)\n  \
         same, counting process start, CQL connect and group join: {:.0} rows/s ({sink_secs:.1} s)\n  \
         plain scylla-driver loop (256 in flight): {:.0} rows/s ({plain_secs:.1} s)",
        N as f64 / produce_secs,
        N as f64 / sink_write_secs,
        N as f64 / sink_secs,
        N as f64 / plain_secs,
    );
    fx.cleanup().await
}

/// Given a generator with a limit, when its ingest process is killed -9
/// part-way and started again, then it produces the same sequence again
/// from the start: the topic holds more records than the limit, but exactly
/// `limit` distinct ones, each replayed record identical to its first copy,
/// and the table ends with exactly `limit` rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_generator_replays_its_sequence_and_the_table_keeps_the_limit()
-> anyhow::Result<()> {
    const LIMIT: usize = 6_000;
    let fx = Fixture::new("gen-replay", 3, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([
        {"name": "synthetic", "generator": {"profile": "randomuser", "recordsPerSecond": 1500, "limit": LIMIT}}
    ]));
    let ingested = "millrace_records_ingested_total{source=\"synthetic\"}";

    let mut first = fx.start("ingest", &pipeline, "ingest-1")?;
    first.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "part of the sequence to be produced",
        Deadline::secs(120),
        || async { Ok((first.metric(ingested).await? >= 1_000.0).then_some(())) },
    )
    .await?;
    first.kill9()?;
    let before_restart = fx.topic_size(&fx.topic)?;
    assert!(
        (1_000..LIMIT as i64).contains(&before_restart),
        "killed part-way: {before_restart} records"
    );

    let mut second = fx.start("ingest", &pipeline, "ingest-2")?;
    second.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the whole sequence to be produced",
        Deadline::secs(180),
        || async { Ok((second.metric(ingested).await? >= LIMIT as f64).then_some(())) },
    )
    .await?;
    let status = second.terminate(Deadline::secs(60)).await?;
    assert!(status.success(), "ingest exits cleanly: {status}");

    let total = fx.topic_size(&fx.topic)?;
    assert_eq!(
        total,
        before_restart + LIMIT as i64,
        "the restart replays from the start"
    );
    let messages = fx
        .consume(&fx.topic, total as usize, Deadline::secs(120))
        .await?;
    let mut by_id: HashMap<uuid::Uuid, Vec<u8>> = HashMap::new();
    for m in &messages {
        let payload = m.payload().unwrap_or_default();
        let v: Value = serde_json::from_slice(payload)?;
        let (id, _) = expected(&v);
        let first_copy = by_id.entry(id).or_insert_with(|| payload.to_vec());
        assert_eq!(
            first_copy.as_slice(),
            payload,
            "a replayed record is the same record"
        );
    }
    assert_eq!(by_id.len(), LIMIT, "exactly `limit` distinct records");

    let _sink = fx.start("sink", &pipeline, "sink")?;
    fx.wait_for_rows(LIMIT, Deadline::secs(300)).await?;
    assert_eq!(fx.row_count().await?, LIMIT, "exactly `limit` rows");
    fx.cleanup().await
}
