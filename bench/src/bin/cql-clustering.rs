//! Unlogged batches against single inserts, on a clustering table: what
//! grouping the rows of one partition into one request would buy a sink.
//!
//! The table is `(id uuid, at timestamp, seq int, email text, body text,
//! PRIMARY KEY ((id), at, seq))`: `--rows-per-partition` rows per id, the
//! shape of an events-by-user table fed by a keyed topic. Each row's body is
//! one randomuser-shaped JSON record (about 1 KB, as the other measurements
//! write). The rows are built before the clock starts and sent partition
//! after partition, in the same order in both modes:
//!
//! - `single`: one prepared INSERT per row;
//! - `batched`: the rows of a partition as one unlogged batch of that
//!   prepared INSERT (a single-partition batch: one replica set, one
//!   mutation, none of the cost of a logged or multi-partition batch).
//!
//! Both keep `--in-flight` rows in flight (a batch holds as many permits as
//! it has rows), LOCAL_QUORUM, idempotent, as the runner writes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use millrace_api::cql as statements;
use millrace_bench::users::Users;
use millrace_bench::{Outcome, World, cpu_seconds, cql, failed_writes, secs};
use scylla::statement::Consistency;
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlTimestamp;
use serde_json::json;
use tokio::sync::Semaphore;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Single,
    Batched,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    keyspace: String,
    /// Created here; it must not exist.
    #[arg(long)]
    table: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// Rows in all; a multiple of --rows-per-partition.
    #[arg(long, default_value_t = 200_000)]
    rows: u64,
    /// Rows per partition, and so per batch.
    #[arg(long, default_value_t = 10)]
    rows_per_partition: u64,
    /// Rows in flight at once: the runner's default maxInFlight.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    #[arg(long, default_value_t = 17)]
    seed: u64,
}

type Row = (uuid::Uuid, CqlTimestamp, i32, String, String);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let per = args.rows_per_partition;
    if per == 0 || args.rows % per != 0 {
        bail!("--rows must be a multiple of --rows-per-partition");
    }
    if args.in_flight < per as usize {
        bail!("--in-flight must hold at least one partition's rows");
    }
    let world = World::from_env()?;
    let session = Arc::new(cql::session(&world).await?);
    let qualified = statements::qualified_table(&args.keyspace, &args.table);
    cql::create_keyspace(&session, &args.keyspace)
        .await
        .context("create the keyspace")?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {qualified} (id uuid, at timestamp, seq int, email text, \
                 body text, PRIMARY KEY ((id), at, seq))"
            ),
            (),
        )
        .await
        .context("create the table")?;
    session.await_schema_agreement().await?;
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {qualified} (id, at, seq, email, body) VALUES (?, ?, ?, ?, ?)"
        ))
        .await
        .context("prepare the insert")?;
    insert.set_consistency(Consistency::LocalQuorum);
    insert.set_is_idempotent(true);

    // Untimed: every partition's rows.
    let mut users = Users::new(args.seed);
    let partitions: Vec<Vec<Row>> = (0..args.rows / per)
        .map(|p| {
            let id = uuid::Uuid::from_u128(0x6d69_6c6c_7261_6365_0000_0000_0000_0000 | p as u128);
            (0..per)
                .map(|i| {
                    let user = users.next_user();
                    let email = user["email"].as_str().unwrap_or_default().to_owned();
                    let at = CqlTimestamp(1_700_000_000_000 + (p * per + i) as i64);
                    (id, at, i as i32, email, user.to_string())
                })
                .collect()
        })
        .collect();

    let mut batch = Batch::new(BatchType::Unlogged);
    for _ in 0..per {
        batch.append_statement(insert.clone());
    }
    batch.set_consistency(Consistency::LocalQuorum);
    batch.set_is_idempotent(true);
    let (insert, batch) = (Arc::new(insert), Arc::new(batch));

    let permits = Arc::new(Semaphore::new(args.in_flight));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for rows in partitions {
        match args.mode {
            Mode::Single => {
                for row in rows {
                    let permit = permits.clone().acquire_owned().await?;
                    let (session, insert) = (session.clone(), insert.clone());
                    tasks.push(tokio::spawn(async move {
                        let r = session.execute_unpaged(&insert, row).await.map(|_| ());
                        drop(permit);
                        r
                    }));
                }
            }
            Mode::Batched => {
                let permit = permits.clone().acquire_many_owned(per as u32).await?;
                let (session, batch) = (session.clone(), batch.clone());
                tasks.push(tokio::spawn(async move {
                    let r = session.batch(&batch, rows).await.map(|_| ());
                    drop(permit);
                    r
                }));
            }
        }
    }
    let requests = tasks.len();
    let failed = failed_writes(tasks).await?;
    let elapsed = started.elapsed();
    let cpu_timed = cpu_seconds() - cpu_before;
    if failed > 0 {
        bail!("{failed} of {requests} requests failed");
    }
    let mode = match args.mode {
        Mode::Single => "single",
        Mode::Batched => "batched",
    };
    Outcome {
        measurement: "cql-clustering",
        records: args.rows,
        bytes: 0,
        seconds: secs(elapsed),
        note: format!(
            "{mode}: {} rows per partition, {} rows in flight, LOCAL_QUORUM; rows built before timing",
            per, args.in_flight
        ),
        extra: json!({
            "mode": mode,
            "rows_per_partition": per,
            "in_flight_rows": args.in_flight,
            "requests": requests,
            "cpu_seconds_timed": cpu_timed,
        }),
    }
    .print();
    Ok(())
}
