//! The sink loses nothing: killed with SIGKILL mid-stream and restarted, it
//! ends with one row per distinct record; stopped with SIGTERM, it drains
//! and commits every offset.

mod runner;

use std::collections::HashSet;

use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, randomuser_table};
use serde_json::{Value, json};

const RECORDS: usize = 20_000;
const DISTINCT: usize = 18_000;

fn record(i: usize) -> Value {
    let id = uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | i as u128);
    json!({
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "name": {"first": format!("Zoë{i}"), "last": "Jørgensen"},
        "location": {"street": {"number": i, "name": "Mill Lane"}, "city": "Truro",
                     "state": "Cornwall", "country": "United Kingdom", "postcode": "TR1 2AB"},
        "email": format!("user{i}@example.com"),
        "login": {"uuid": id.to_string(), "username": format!("user{i}")},
        "registered": {"date": "2015-06-01T12:00:00.000Z"},
        "phone": "01872 123456",
        "picture": {"medium": "https://randomuser.me/api/portraits/med/women/1.jpg"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_killed_mid_stream_and_restarted_loses_nothing() -> anyhow::Result<()> {
    let fx = Fixture::new("crash", 3, randomuser_table("users")).await?;
    // 18,000 distinct records, then 2,000 of them again (a producer's retry).
    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| record(i % DISTINCT).to_string().into_bytes())
        .collect();
    fx.produce(&payloads).await?;
    let pipeline = fx.pipeline(json!([]));

    let mut sink = fx.start("sink", &pipeline, "sink-1")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the sink to write some rows",
        Deadline::secs(120),
        || async {
            let written = sink.metric("millrace_rows_written_total").await?;
            Ok((written >= 3000.0).then_some(()))
        },
    )
    .await?;
    sink.kill9()?;
    let at_kill = fx.row_count().await?;
    assert!(
        at_kill < DISTINCT,
        "killed mid-stream ({at_kill} rows already)"
    );
    println!("killed the sink with {at_kill} of {DISTINCT} rows written");

    let mut sink = fx.start("sink", &pipeline, "sink-2")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    fx.wait_for_rows(DISTINCT, Deadline::secs(300)).await?;
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    let expected: HashSet<_> = (0..DISTINCT)
        .map(|i| uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 | i as u128))
        .collect();
    assert_eq!(ids, expected, "one row per distinct record");

    // Once every record has been read (lag 0 in every partition), SIGTERM:
    // the sink drains its in-flight writes, commits and exits 0, leaving the
    // group's offsets at the end of the topic.
    poll_until(
        "the restarted sink to read everything",
        Deadline::secs(120),
        || async {
            let metrics = sink.metrics().await?;
            let lags: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("millrace_consumer_lag{"))
                .collect();
            Ok((lags.len() == 3 && lags.iter().all(|l| l.ends_with(" 0"))).then_some(()))
        },
    )
    .await?;
    let status = sink.terminate(Deadline::secs(60)).await?;
    assert!(
        status.success(),
        "the sink exits cleanly on SIGTERM: {status}"
    );
    let offsets = fx.committed_and_end()?;
    for (partition, (committed, end)) in &offsets {
        assert_eq!(committed, end, "partition {partition} committed to its end");
    }
    assert!(sink.log_text().contains("offsets committed"));
    fx.cleanup().await
}
