//! What a long-lived librdkafka client keeps after it asked about many
//! topics, one request per topic, as the operator's admin client and
//! offset reader do once per pipeline: glibc's bytes in use (`mallinfo2`,
//! every arena, so librdkafka's own threads count) before and after the
//! loop, for each way of asking.
//!
//!     cargo run --release -p millrace-bench --bin kafka-client-memory -- --topics 1000
//!
//! Makes `--topics` topics of one partition on the world's Kafka, asks each
//! question of a new client per way, prints a Markdown table, and deletes
//! the topics.

use std::time::Duration;

use clap::Parser;
use millrace_bench::{World, kafka};
use millrace_operator::clients::native::describe_topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
struct Args {
    /// How many topics to make and ask about.
    #[arg(long, default_value_t = 1000)]
    topics: usize,
}

/// Bytes glibc's malloc has handed out and not had back, over every arena.
#[allow(unsafe_code)]
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    info.uordblks + info.hblkhd
}

type Admin = AdminClient<DefaultClientContext>;

/// One way of asking about a topic, through a client of its own.
enum Way {
    AdminMetadata(Admin),
    AdminDescribeTopics(Admin),
    ReaderMetadata(BaseConsumer),
    ReaderWatermarks(BaseConsumer),
}

impl Way {
    fn label(&self) -> &'static str {
        match self {
            Way::AdminMetadata(_) => "admin client, `fetch_metadata(Some(topic))`",
            Way::AdminDescribeTopics(_) => {
                "admin client, DescribeTopics (`clients::native::describe_topic`)"
            }
            Way::ReaderMetadata(_) => "offset reader, `fetch_metadata(Some(topic))`",
            Way::ReaderWatermarks(_) => "offset reader, `fetch_watermarks` of partition 0",
        }
    }

    fn ask(&self, topic: &str) -> anyhow::Result<()> {
        match self {
            Way::AdminMetadata(admin) => {
                admin.inner().fetch_metadata(Some(topic), TIMEOUT)?;
            }
            Way::AdminDescribeTopics(admin) => {
                let shape = describe_topic(admin.inner(), topic, TIMEOUT)?;
                anyhow::ensure!(
                    shape.is_some_and(|s| s.partitions == 1),
                    "{topic}: {shape:?}"
                );
            }
            Way::ReaderMetadata(reader) => {
                reader.client().fetch_metadata(Some(topic), TIMEOUT)?;
            }
            Way::ReaderWatermarks(reader) => {
                reader.client().fetch_watermarks(topic, 0, TIMEOUT)?;
            }
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let prefix = format!("client-memory-{}", std::process::id());
    let topics: Vec<String> = (0..args.topics).map(|i| format!("{prefix}-{i}")).collect();
    let admin: Admin = kafka::base_config(&world).create()?;
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for chunk in topics.chunks(100) {
        let new: Vec<NewTopic<'_>> = chunk
            .iter()
            .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
            .collect();
        for result in runtime.block_on(admin.create_topics(&new, &options))? {
            result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
        }
    }
    // Every topic has its partition and leader before anything is counted
    // (asked through the client that made them).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for topic in &topics {
        while describe_topic(admin.inner(), topic, TIMEOUT)?.is_none() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{topic} never appeared"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let reader = || -> anyhow::Result<BaseConsumer> {
        Ok(kafka::base_config(&world)
            .set("group.id", format!("{prefix}-reader"))
            .set("enable.auto.commit", "false")
            .create()?)
    };
    let ways = [
        Way::AdminMetadata(kafka::base_config(&world).create()?),
        Way::AdminDescribeTopics(kafka::base_config(&world).create()?),
        Way::ReaderMetadata(reader()?),
        Way::ReaderWatermarks(reader()?),
    ];
    println!(
        "| {} calls, one per topic, on one client | C heap kept afterwards | per topic |",
        args.topics
    );
    println!("|---|---|---|");
    let result = (|| -> anyhow::Result<()> {
        for way in &ways {
            // Connected and with the cluster's brokers known before counting.
            way.ask(&topics[0])?;
            let before = heap_in_use();
            for topic in &topics {
                way.ask(topic)?;
            }
            let kept = heap_in_use().saturating_sub(before);
            println!(
                "| {} | {:.2} MB | {:.2} kB |",
                way.label(),
                kept as f64 / 1e6,
                kept as f64 / 1e3 / args.topics as f64
            );
        }
        Ok(())
    })();
    drop(ways);
    for chunk in topics.chunks(100) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        runtime.block_on(admin.delete_topics(&names, &options))?;
    }
    result
}
