//! The Kafka produce ceiling: a plain rdkafka producer with the runner's
//! producer settings (idempotent, acks=all, lz4, linger 5 ms) sending N
//! randomuser-shaped records as fast as librdkafka takes them. The records
//! are generated before the clock starts, so only producing is timed. Also
//! fills the benchmark topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use millrace_bench::users::Users;
use millrace_bench::{Outcome, World, kafka, secs};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// The generator's seed: the same seed writes the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write Avro in the Confluent wire format instead of JSON, the schema
    /// registered under `{topic}-value` in this Schema Registry.
    #[arg(long)]
    avro_registry: Option<String>,
    /// Records per user (JSON only): each user's uuid, and so its key, on
    /// this many records in a row, each with a `seq` field from 0: the
    /// topic of a table clustered by `seq` (bench-tool create-table
    /// --clustering).
    #[arg(long, default_value_t = 1)]
    rows_per_key: u64,
}

/// Counts acknowledgements and failures from librdkafka's delivery reports.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) if m.offset() >= 0 => self.ok.fetch_add(1, Ordering::Relaxed),
            _ => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// `records` users in runs of `per` that share the first one's uuid (and
/// key), each with its place in the run as `seq`.
fn keyed_runs(users: &mut Users, records: u64, per: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(records as usize);
    let mut key = String::new();
    for n in 0..records {
        let mut user = users.next_user();
        let seq = n % per;
        if seq == 0 {
            key = user["login"]["uuid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        user["login"]["uuid"] = json!(key);
        user["seq"] = json!(seq);
        out.push((key.clone(), user.to_string().into_bytes()));
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let mut users = Users::new(args.seed);
    let records: Vec<(String, Vec<u8>)> = match &args.avro_registry {
        None if args.rows_per_key > 1 => keyed_runs(&mut users, args.records, args.rows_per_key),
        None => (0..args.records).map(|_| users.next_record()).collect(),
        Some(_) if args.rows_per_key > 1 => bail!("--rows-per-key is for JSON records"),
        Some(url) => avro_records(&mut users, args.records, url, &args.topic)?,
    };
    let bytes: u64 = records.iter().map(|(_, v)| v.len() as u64).sum();

    // The runner's settings (runner/src/kafka.rs), so this is the ceiling
    // of the same producer configuration.
    let producer: ThreadedProducer<Acks> = kafka::base_config(&world)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "60000")
        .create_with_context(Acks::default())?;
    // Metadata first, so the timed part does not include the first lookup.
    producer
        .client()
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))?;

    let started = Instant::now();
    for (key, value) in &records {
        let mut record = BaseRecord::to(&args.topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                // Back-pressure: librdkafka's queue is full; its own thread
                // drains it, so wait a little and try again.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let elapsed = started.elapsed();
    let acks = producer.context();
    let ok = acks.ok.load(Ordering::Relaxed);
    let failed = acks.failed.load(Ordering::Relaxed);
    if ok != args.records {
        bail!(
            "{ok} of {} records acknowledged, {failed} failed",
            args.records
        );
    }
    Outcome {
        measurement: if args.avro_registry.is_some() {
            "kafka-produce-ceiling-avro"
        } else {
            "kafka-produce-ceiling"
        },
        records: ok,
        bytes,
        seconds: secs(elapsed),
        note:
            "records generated before timing; timed from the first send to the last acknowledgement"
                .into(),
        extra: json!({"avg_record_bytes": bytes / args.records.max(1)}),
    }
    .print();
    Ok(())
}

/// `n` users as Avro records (key, Confluent wire format), their schema
/// registered under `{topic}-value`.
fn avro_records(
    users: &mut Users,
    n: u64,
    registry: &str,
    topic: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use millrace_bench::avro;
    let mut sample = Users::new(0);
    let schema_json = avro::schema_of(&sample.next_user(), "User");
    let schema = apache_avro::Schema::parse_str(&schema_json.to_string())?;
    let id = tokio::runtime::Runtime::new()?.block_on(avro::register(
        registry,
        &format!("{topic}-value"),
        &schema_json,
    ))?;
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build()?;
    (0..n)
        .map(|_| {
            let user = users.next_user();
            let key = user["login"]["uuid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let datum = writer.write_value_to_vec(avro::to_avro(&user, &schema)?)?;
            Ok((key, millrace_api::avro::wire(id, &datum)))
        })
        .collect()
}
