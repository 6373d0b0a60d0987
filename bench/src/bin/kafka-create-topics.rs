//! How fast the world's Kafka creates topics, by how they are asked for:
//! one CreateTopics request at a time with 1 to 100 topics in it; 16
//! requests in flight (as 16 reconciles at once send them); and the
//! operator's group commit (`millrace_operator::clients::create_topics`),
//! 16 callers each asking for a pipeline's topic and dead-letter topic.
//!
//!     cargo run --release -p millrace-bench --bin kafka-create-topics -- --topics 400
//!
//! Each row makes `--topics` topics of one partition with unique names,
//! times them, prints a Markdown row and deletes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use millrace_bench::{World, kafka};
use millrace_operator::clients::create_topics::TopicToCreate;
use millrace_operator::clients::kafka::Admin;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser)]
struct Args {
    /// How many topics each row creates.
    #[arg(long, default_value_t = 400)]
    topics: usize,
    /// Requests (or group-commit callers) in flight for the concurrent rows.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT))
}

async fn create_plain(
    admin: &AdminClient<DefaultClientContext>,
    names: &[String],
) -> anyhow::Result<()> {
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new, &options()).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

async fn create_together(admin: &Admin, names: &[String]) -> anyhow::Result<()> {
    let topics = names
        .iter()
        .map(|name| TopicToCreate {
            name: name.clone(),
            partitions: 1,
            replication_factor: 1,
            config: Default::default(),
        })
        .collect();
    for (name, created) in names
        .iter()
        .zip(admin.create_topics_together(topics, options()).await)
    {
        created?.map_err(|e| anyhow::anyhow!("creating {name}: {e}"))?;
    }
    Ok(())
}

/// How a row asks for its topics.
#[derive(Clone, Copy)]
enum Way {
    /// One request at a time, this many topics in each.
    OneAtATime(usize),
    /// `in_flight` requests at once, this many topics in each.
    InFlight(usize),
    /// `in_flight` callers of the group commit, this many topics each.
    GroupCommit(usize),
}

impl Way {
    fn label(self, in_flight: usize) -> String {
        match self {
            Way::OneAtATime(n) => format!("one request at a time, {n} topics per request"),
            Way::InFlight(n) => format!("{in_flight} requests in flight, {n} topics per request"),
            Way::GroupCommit(n) => {
                format!("group commit, {in_flight} callers asking for {n} topics each")
            }
        }
    }

    fn per_ask(self) -> usize {
        match self {
            Way::OneAtATime(n) | Way::InFlight(n) | Way::GroupCommit(n) => n,
        }
    }
}

async fn row(world: &World, way: Way, args: &Args, run: &str) -> anyhow::Result<()> {
    let names: Vec<String> = (0..args.topics)
        .map(|i| format!("create-rate-{run}-{i}"))
        .collect();
    let asks: Vec<&[String]> = names.chunks(way.per_ask()).collect();
    let plain: AdminClient<DefaultClientContext> = kafka::base_config(world).create()?;
    let together = Arc::new(Admin::new(kafka::base_config(world).create()?));
    // Connected before the clock starts.
    plain
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    together
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(asks.len());
    match way {
        Way::OneAtATime(_) => {
            for ask in &asks {
                let t = Instant::now();
                create_plain(&plain, ask).await?;
                latencies.push(t.elapsed());
            }
        }
        Way::InFlight(_) | Way::GroupCommit(_) => {
            let plain = &plain;
            let together = &together;
            let mut done = futures::stream::iter(asks.iter().map(|ask| async move {
                let t = Instant::now();
                match way {
                    Way::GroupCommit(_) => create_together(together, ask).await?,
                    _ => create_plain(plain, ask).await?,
                }
                anyhow::Ok(t.elapsed())
            }))
            .buffer_unordered(args.in_flight);
            while let Some(latency) = done.next().await {
                latencies.push(latency?);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "| {} | {:.2} s | {:.0} | {:.0} | {:.0} / {:.0} ms |",
        way.label(args.in_flight),
        elapsed,
        args.topics as f64 / elapsed,
        asks.len() as f64 / elapsed,
        ms(latencies[latencies.len() / 2]),
        ms(latencies[latencies.len() - 1]),
    );
    for chunk in names.chunks(100) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for result in plain.delete_topics(&names, &options()).await? {
            result.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    println!(
        "| {} topics of one partition, asked for by | time | topics/s | asks/s | per ask p50 / max |",
        args.topics
    );
    println!("|---|---|---|---|---|");
    let ways = [
        Way::OneAtATime(1),
        Way::OneAtATime(2),
        Way::OneAtATime(20),
        Way::OneAtATime(100),
        Way::InFlight(1),
        Way::InFlight(2),
        Way::GroupCommit(2),
    ];
    for (i, way) in ways.into_iter().enumerate() {
        row(&world, way, &args, &format!("{}-{i}", std::process::id())).await?;
    }
    Ok(())
}
