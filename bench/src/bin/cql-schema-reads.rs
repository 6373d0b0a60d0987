//! What the operator's schema reads cost Cassandra: the three
//! `system_schema` reads each reconcile makes of its table
//! (`millrace_operator::apply::cassandra::SELECT_*`), sent as unprepared
//! statements with bound values (a PREPARE and an EXECUTE each, as before
//! the operator kept a `CachingSession`) and as statements prepared once.
//!
//!     cargo run --release -p millrace-bench --bin cql-schema-reads -- --rounds 3000
//!
//! Cassandra's CPU is read from `/proc` (every `CassandraDaemon` process on
//! the box: the world's second, TLS-only node idles meanwhile). The two
//! ways alternate, twice each, so a change in the box's load shows as a
//! difference between the two runs of one way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use millrace_api::process_metrics::ProcessSample;
use millrace_bench::{World, cql};
use millrace_operator::apply::cassandra::{
    SELECT_KEYSPACE_REPLICATION, SELECT_TABLE_COLUMNS, SELECT_TABLE_COMMENT,
};
use scylla::client::caching_session::CachingSession;
use scylla::client::session::Session;

#[derive(Parser)]
struct Args {
    /// Reconciles' worth of reads (three statements each) per run.
    #[arg(long, default_value_t = 3000)]
    rounds: usize,
    /// Tables in the keyspace besides the one read (as many pipelines'
    /// tables share a keyspace).
    #[arg(long, default_value_t = 0)]
    other_tables: usize,
    /// Metadata refreshes per session kind.
    #[arg(long, default_value_t = 20)]
    refreshes: usize,
    /// Reads in flight, as the operator's 16 reconciles at once.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
}

#[derive(Clone, Copy, Debug)]
enum Way {
    Unprepared,
    Prepared,
}

/// CPU seconds of every Cassandra node process on this box.
fn cassandra_cpu_seconds() -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&cmdline).contains("CassandraDaemon") {
            continue;
        }
        if let Some(sample) = ProcessSample::read_pid(pid) {
            total += sample.cpu_seconds;
        }
    }
    anyhow::ensure!(total > 0.0, "no CassandraDaemon process found on this box");
    Ok(total)
}

async fn read_once(
    way: Way,
    plain: &Session,
    caching: &CachingSession,
    ks: &str,
    table: &str,
) -> anyhow::Result<()> {
    match way {
        Way::Unprepared => {
            plain
                .query_unpaged(SELECT_KEYSPACE_REPLICATION, (ks,))
                .await?;
            plain
                .query_unpaged(SELECT_TABLE_COLUMNS, (ks, table))
                .await?;
            plain
                .query_unpaged(SELECT_TABLE_COMMENT, (ks, table))
                .await?;
        }
        Way::Prepared => {
            caching
                .execute_unpaged(SELECT_KEYSPACE_REPLICATION, (ks,))
                .await?;
            caching
                .execute_unpaged(SELECT_TABLE_COLUMNS, (ks, table))
                .await?;
            caching
                .execute_unpaged(SELECT_TABLE_COMMENT, (ks, table))
                .await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let plain = Arc::new(cql::session(&world).await?);
    let caching = Arc::new(CachingSession::from(cql::session(&world).await?, 16));
    let ks = "cql_schema_reads";
    let table = "users";
    cql::create_table(&plain, ks, &millrace_bench::example_table(ks, table)?).await?;
    for i in 0..args.other_tables {
        let other = millrace_bench::example_table(ks, &format!("t{i:04}"))?;
        plain
            .query_unpaged(millrace_api::cql::create_table(ks, &other)?, ())
            .await?;
    }
    plain.await_schema_agreement().await?;
    println!(
        "| way | rounds | seconds | Cassandra CPU ms per round (3 reads) | rounds/s |\n|---|---|---|---|---|"
    );
    for way in [
        Way::Unprepared,
        Way::Prepared,
        Way::Unprepared,
        Way::Prepared,
    ] {
        let next = Arc::new(AtomicUsize::new(0));
        let cpu0 = cassandra_cpu_seconds()?;
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..args.in_flight {
            let (next, plain, caching) = (next.clone(), plain.clone(), caching.clone());
            let rounds = args.rounds;
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < rounds {
                    read_once(way, &plain, &caching, ks, table).await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let seconds = t0.elapsed().as_secs_f64();
        let cpu = cassandra_cpu_seconds()? - cpu0;
        println!(
            "| {way:?} | {} | {seconds:.2} | {:.2} | {:.0} |",
            args.rounds,
            cpu * 1000.0 / args.rounds as f64,
            args.rounds as f64 / seconds
        );
    }
    // What a session's refresh of the cluster's metadata costs, with the
    // whole schema (the driver's default) and with only what routing needs.
    println!("\n| session metadata | refreshes | Cassandra CPU ms per refresh |\n|---|---|---|");
    for full in [true, false, true, false] {
        let session = cql::session_builder(&world)
            .fetch_full_schema_metadata(full)
            .build()
            .await
            .context("cassandra session")?;
        let cpu0 = cassandra_cpu_seconds()?;
        for _ in 0..args.refreshes {
            session.refresh_metadata().await?;
        }
        let cpu = cassandra_cpu_seconds()? - cpu0;
        println!(
            "| {} | {} | {:.1} |",
            if full {
                "whole schema"
            } else {
                "keyspaces only"
            },
            args.refreshes,
            cpu * 1000.0 / args.refreshes as f64
        );
    }
    plain
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await?;
    Ok(())
}
