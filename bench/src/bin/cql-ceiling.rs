//! The CQL ceiling: a plain scylla-driver loop writing the runner's rows
//! with the runner's statement (prepared INSERT of the table's columns
//! `USING TIMESTAMP ?`, idempotent, LOCAL_QUORUM) and its default
//! concurrency (maxInFlight = 256 writes in flight, bounded by a semaphore).
//!
//! The records are read from the pre-filled topic and mapped to rows before
//! the clock starts, so the timed part is CQL only.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use millrace_api::{RowMapper, cql as statements, cql_value};
use millrace_bench::{Outcome, World, cpu_seconds, cql, example_table, failed_writes, kafka, secs};
use millrace_runner::sink::write_time::WriteClock;
use rdkafka::Message as _;
use scylla::statement::Consistency;
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    keyspace: String,
    /// Created if missing, with the example pipeline's columns.
    #[arg(long)]
    table: String,
    /// Writes in flight at once: the runner's default maxInFlight.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let table = example_table(&args.keyspace, &args.table)?;
    let mapper = RowMapper::new(&table)?;

    // Untimed: read and map every record.
    let mut rows = Vec::new();
    let mut bad = 0u64;
    let w = world.clone();
    let topic = args.topic.clone();
    // The runner's write timestamps: one chain per partition.
    let mut clocks = std::collections::HashMap::<i32, WriteClock>::new();
    let read = tokio::task::spawn_blocking(move || {
        let r = kafka::read_topic(&w, &topic, |m| {
            let row = m
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok())
                .and_then(|v| mapper.map(&v).ok());
            match row {
                Some(row) => {
                    let clock = clocks.entry(m.partition()).or_default();
                    rows.push(cql_value::bind(
                        row,
                        None,
                        clock.next(m.timestamp().to_millis()),
                    ));
                }
                None => bad += 1,
            }
        });
        r.map(|r| (r, rows, bad))
    })
    .await??;
    let (read, rows, bad) = read;
    if bad > 0 {
        bail!("{bad} records did not map to a row");
    }

    let session = Arc::new(cql::session(&world).await?);
    cql::create_table(&session, &args.keyspace, &table).await?;
    let mut insert = session
        .prepare(statements::insert(&args.keyspace, &table))
        .await
        .context("prepare the insert")?;
    insert.set_consistency(Consistency::LocalQuorum);
    insert.set_is_idempotent(true);
    let insert = Arc::new(insert);

    let permits = Arc::new(Semaphore::new(args.concurrency));
    let n = rows.len() as u64;
    // The process's CPU over the timed writes only: what the driver itself
    // costs per row, beside which the sink's own CPU per row is read.
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(rows.len());
    for row in rows {
        let permit = permits.clone().acquire_owned().await?;
        let (session, insert) = (session.clone(), insert.clone());
        tasks.push(tokio::spawn(async move {
            let r = session.execute_unpaged(&insert, row).await;
            drop(permit);
            r
        }));
    }
    let failed = failed_writes(tasks).await?;
    let elapsed = started.elapsed();
    let cpu_timed = cpu_seconds() - cpu_before;
    if failed > 0 {
        bail!("{failed} of {n} writes failed");
    }
    Outcome {
        measurement: "cql-ceiling",
        records: n,
        bytes: read.bytes,
        seconds: secs(elapsed),
        note: format!(
            "rows read and mapped before timing; {} writes in flight, LOCAL_QUORUM",
            args.concurrency
        ),
        extra: json!({"concurrency": args.concurrency, "cpu_seconds_timed": cpu_timed}),
    }
    .print();
    Ok(())
}
