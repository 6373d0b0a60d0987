//! A second sink joins mid-stream: the first drains its in-flight writes and
//! commits before giving partitions up, and together they write every
//! record once the stream is read.

mod runner;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, randomuser_table};
use serde_json::{Value, json};

const RECORDS: usize = 20_000;
/// Rows the first sink writes alone before the second joins.
const HEAD: usize = 2_000;

fn record(i: usize) -> Value {
    let id = uuid::Uuid::from_u128(0x0b1a_0000_0000_4000_8000_0000_0000_0000 | i as u128);
    json!({
        "gender": "female",
        "name": {"first": format!("Ingrid{i}"), "last": "Müller"},
        "location": {"street": {"number": i, "name": "Hauptstraße"}, "city": "München",
                     "state": "Bayern", "country": "Germany", "postcode": 80331},
        "email": format!("ingrid{i}@example.com"),
        "login": {"uuid": id.to_string(), "username": format!("ingrid{i}")},
        "registered": {"date": "2012-01-01T00:00:00.000Z"},
        "phone": "089 123456",
        "picture": {"medium": "https://randomuser.me/api/portraits/med/women/2.jpg"},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sink_joining_mid_stream_loses_nothing() -> anyhow::Result<()> {
    let fx = Fixture::new("rebalance", 4, randomuser_table("users")).await?;
    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| record(i).to_string().into_bytes())
        .collect();
    fx.produce(&payloads).await?;
    let pipeline = fx.pipeline(json!([]));
    // The first sink writes one row at a time, so there is work left for
    // the second when it joins.
    let mut slow = pipeline.clone();
    slow["spec"]["runner"]["maxInFlight"] = json!(1);

    let mut first = fx.start("sink", &slow, "sink-a")?;
    first.wait_ready(Deadline::secs(60)).await?;
    let writing = Instant::now();
    poll_until(
        "the first sink to write some rows",
        Deadline::secs(120),
        || async {
            Ok((first.metric("millrace_rows_written_total").await? >= HEAD as f64).then_some(()))
        },
    )
    .await?;
    // One row at a time runs at Cassandra's latency, which a loaded machine
    // stretches several times over; the first sink keeps about half of
    // what is left, so the wait for the rows is measured in its own pace.
    let pace = writing.elapsed() / HEAD as u32;
    let mut second = fx.start("sink", &pipeline, "sink-b")?;
    second.wait_ready(Deadline::secs(90)).await?;

    let rows_deadline = (pace * (RECORDS as u32 / 2) * 3).max(Duration::from_secs(300));
    fx.wait_for_rows(RECORDS, Deadline::after(rows_deadline))
        .await?;
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    assert_eq!(ids.len(), RECORDS);
    assert!(
        first
            .log_text()
            .contains("partitions revoked: draining in-flight writes"),
        "the first sink gave partitions up"
    );
    assert!(
        second.metric("millrace_rows_written_total").await? > 0.0,
        "the second sink wrote too"
    );

    poll_until(
        "both sinks to have read everything",
        Deadline::secs(60),
        || async { Ok((first.lag_is_zero().await? && second.lag_is_zero().await?).then_some(())) },
    )
    .await?;
    for sink in [&mut second, &mut first] {
        let status = sink.terminate(Deadline::secs(60)).await?;
        assert!(status.success(), "{status}");
    }
    for (partition, (committed, end)) in fx.committed_and_end()? {
        assert_eq!(committed, end, "partition {partition}");
    }
    fx.cleanup().await
}
