//! Poison records: the sink dead-letters what it cannot map, with headers
//! that say why and where from, and writes every good record.

mod runner;

use std::collections::HashMap;

use millrace_testsupport::Deadline;
use millrace_testsupport::randomuser_page as page;
use rdkafka::Message;
use rdkafka::message::Headers;
use runner::{Fixture, randomuser_table};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn poison_records_go_to_the_dead_letter_topic_with_reasons() -> anyhow::Result<()> {
    let fx = Fixture::new("dlq", 3, randomuser_table("users")).await?;
    let good = page(1);
    let mut bad_type = page(2)[0].clone();
    bad_type["login"]["uuid"] = json!("not-a-uuid");
    let mut missing_key = page(2)[1].clone();
    missing_key.as_object_mut().expect("object").remove("login");
    let mut bad_date = page(2)[2].clone();
    bad_date["registered"]["date"] = json!("yesterday");
    // Poison written straight to the topic, past ingest's checks, as an
    // older producer or another tool might.
    let poison: Vec<(Vec<u8>, &str)> = vec![
        (bad_type.to_string().into_bytes(), "column \"id\""),
        (
            missing_key.to_string().into_bytes(),
            "no value for this primary key column",
        ),
        (
            bad_date.to_string().into_bytes(),
            "column \"registered_date\"",
        ),
        (b"this is not JSON".to_vec(), "not JSON"),
    ];
    let mut payloads: Vec<Vec<u8>> = good.iter().map(|r| r.to_string().into_bytes()).collect();
    payloads.extend(poison.iter().map(|(p, _)| p.clone()));
    fx.produce(&payloads).await?;

    let mut sink = fx.start("sink", &fx.pipeline(json!([])), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    fx.wait_for_rows(good.len(), Deadline::secs(60)).await?;

    let dead = fx
        .consume(&fx.dlq, poison.len(), Deadline::secs(60))
        .await?;
    let mut by_payload: HashMap<Vec<u8>, HashMap<String, String>> = HashMap::new();
    for m in &dead {
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for header in h.iter() {
                let value = header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                headers.insert(header.key.to_owned(), value);
            }
        }
        by_payload.insert(m.payload().unwrap_or_default().to_vec(), headers);
    }
    for (payload, reason) in &poison {
        let headers = by_payload
            .get(payload)
            .unwrap_or_else(|| panic!("{} not dead-lettered", String::from_utf8_lossy(payload)));
        assert!(
            headers["millrace.error"].contains(reason),
            "{:?} lacks {reason}",
            headers["millrace.error"]
        );
        assert_eq!(headers["millrace.stage"], "sink");
        assert_eq!(headers["millrace.source.topic"], fx.topic);
        let partition: i32 = headers["millrace.source.partition"].parse()?;
        let offset: i64 = headers["millrace.source.offset"].parse()?;
        assert!((0..3).contains(&partition) && offset >= 0);
    }
    let written = "millrace_rows_written_total";
    sink.metric_reaching(written, 10.0, Deadline::secs(30))
        .await?;
    assert_eq!(sink.metric(written).await?, 10.0);
    assert_eq!(sink.metric("millrace_rows_failed_total").await?, 4.0);
    assert_eq!(
        sink.metric("millrace_records_dead_lettered_total{reason=\"unmappable\"}")
            .await?,
        3.0
    );
    assert_eq!(
        sink.metric("millrace_records_dead_lettered_total{reason=\"not_json\"}")
            .await?,
        1.0
    );
    // Dead-lettered records count as done: the offsets move past them.
    millrace_testsupport::poll_until(
        "the sink to commit every offset",
        Deadline::secs(30),
        || async {
            let offsets = fx.committed_and_end()?;
            Ok(offsets.values().all(|(c, end)| c == end).then_some(()))
        },
    )
    .await?;
    drop(sink);
    fx.cleanup().await
}

/// Rows Cassandra cannot take (here the table's `phone` column is an `int`
/// while the pipeline maps text into it, as after a hand-made schema change)
/// go to the dead-letter topic as `write_failed`, and the sink keeps going.
#[tokio::test(flavor = "multi_thread")]
async fn rows_cassandra_refuses_are_dead_lettered_and_the_sink_keeps_going() -> anyhow::Result<()> {
    let fx = Fixture::new("refused", 1, randomuser_table("users")).await?;
    let table = fx.qualified_table();
    fx.session
        .query_unpaged(format!("DROP TABLE {table}"), &[])
        .await?;
    fx.session
        .query_unpaged(
            format!(
                "CREATE TABLE {table} (id uuid PRIMARY KEY, first_name text, last_name text, gender text, \
                 address text, post_code text, email text, username text, registered_date timestamp, \
                 phone int, picture text)"
            ),
            &[],
        )
        .await?;
    fx.session.await_schema_agreement().await?;
    let mut records = page(1);
    records.truncate(3);
    // One record without a phone: its row fits (phone stays unset).
    records[2].as_object_mut().expect("object").remove("phone");
    let payloads: Vec<Vec<u8>> = records.iter().map(|r| r.to_string().into_bytes()).collect();
    fx.produce(&payloads).await?;

    let mut sink = fx.start("sink", &fx.pipeline(json!([])), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let dead = fx.consume(&fx.dlq, 2, Deadline::secs(60)).await?;
    for m in &dead {
        let error = m
            .headers()
            .and_then(|h| h.iter().find(|x| x.key == "millrace.error"))
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        assert!(error.contains("cassandra refused the row"), "{error}");
    }
    fx.wait_for_rows(1, Deadline::secs(30)).await?;
    assert_eq!(
        sink.metric("millrace_records_dead_lettered_total{reason=\"write_failed\"}")
            .await?,
        2.0
    );
    let written = "millrace_rows_written_total";
    sink.metric_reaching(written, 1.0, Deadline::secs(30))
        .await?;
    assert_eq!(sink.metric(written).await?, 1.0);
    drop(sink);
    fx.cleanup().await
}

/// A dead letter that its topic cannot take (here the dead-letter topic
/// takes at most 2,000 bytes and the record is 10,000) would stall its
/// partition forever if retried: it goes without its payload, with a header
/// that says so, and the records after it are written.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_too_large_for_its_topic_goes_without_its_payload() -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let fx = Fixture::new("dlq-big", 1, randomuser_table("users")).await?;
    let admin: AdminClient<DefaultClientContext> = fx.world.kafka_config().create()?;
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic(&fx.dlq)).set("max.message.bytes", "2000");
    for r in admin.alter_configs([&alter], &AdminOptions::new()).await? {
        r.map_err(|(_, e)| anyhow::anyhow!("alter config: {e}"))?;
    }
    // Incompressible, so the producer's compression cannot bring it under
    // the limit.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: String = (0..10_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let big = format!("not JSON {noise}").into_bytes();
    let after = page(1)[0].to_string().into_bytes();
    fx.produce(&[big.clone(), after]).await?;

    let mut sink = fx.start("sink", &fx.pipeline(json!([])), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    fx.wait_for_rows(1, Deadline::secs(60)).await?;
    let dead = fx.consume(&fx.dlq, 1, Deadline::secs(30)).await?;
    let m = &dead[0];
    assert!(
        m.payload().unwrap_or_default().is_empty(),
        "the payload is left out"
    );
    let mut headers = HashMap::new();
    for header in m.headers().expect("headers").iter() {
        let value = header
            .value
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        headers.insert(header.key.to_owned(), value);
    }
    println!("dead letter headers: {headers:?}");
    assert_eq!(
        headers["millrace.payload.omitted"],
        format!("{} bytes: too large for the dead-letter topic", big.len())
    );
    assert!(headers["millrace.error"].contains("not JSON"));
    assert_eq!(headers["millrace.source.offset"], "0");
    millrace_testsupport::poll_until(
        "the sink to commit past both records",
        Deadline::secs(30),
        || async {
            let offsets = fx.committed_and_end()?;
            Ok(offsets.values().all(|(c, end)| c == end).then_some(()))
        },
    )
    .await?;
    drop(sink);
    fx.cleanup().await
}
