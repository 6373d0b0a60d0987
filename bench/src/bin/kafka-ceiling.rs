//! The Kafka consume ceiling: a plain rdkafka consumer reading the whole
//! pre-filled topic, records/s. With `--map`, every record is also
//! parsed as the sink parses it (only the fields the columns read) and
//! mapped to a row with millrace-api's RowMapper (no CQL): the ceiling
//! of "read and map" on this CPU, which shows what mapping costs.

use clap::Parser;
use millrace_api::RowMapper;
use millrace_bench::{Outcome, World, example_table, kafka, secs};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    topic: String,
    /// Parse and map every record as the sink would.
    #[arg(long)]
    map: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let mapper = RowMapper::new(&example_table("unused", "unused")?)?;
    let mut mapped = 0u64;
    let mut refused = 0u64;
    let read = kafka::read_topic(&world, &args.topic, |m| {
        use rdkafka::Message as _;
        if !args.map {
            return;
        }
        let ok = m
            .payload()
            .and_then(|p| mapper.parse(p).ok())
            .is_some_and(|v| mapper.map(&v).is_ok());
        if ok {
            mapped += 1;
        } else {
            refused += 1;
        }
    })?;
    Outcome {
        measurement: if args.map {
            "kafka-ceiling-map"
        } else {
            "kafka-ceiling"
        },
        records: read.records,
        bytes: read.bytes,
        seconds: secs(read.timed),
        note: "assigned partitions (no group join); timed from the assignment to the last record"
            .into(),
        extra: json!({
            "first_to_last_seconds": secs(read.first_to_last),
            "consumer_wall_seconds": secs(read.wall),
            "mapped": mapped,
            "refused": refused,
        }),
    }
    .print();
    Ok(())
}
