//! Load for the runner's push endpoint: POSTs N randomuser-shaped records
//! in NDJSON batches over several keep-alive connections, as fast as the
//! endpoint answers `202` (every record acknowledged by Kafka, acks=all).
//!
//! The bodies are built before the clock starts, so the timed part is from
//! the first request sent to the last `202` received. A `429` or `503` is
//! retried after 20 ms, as the contract asks of clients; retries are
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use millrace_bench::http::{Client, Url};
use millrace_bench::users::Users;
use millrace_bench::{Outcome, secs};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The push endpoint, e.g. http://127.0.0.1:8080/v1/records.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = Url::parse(&args.url)?;

    // Untimed: every body, NDJSON.
    let mut users = Users::new(args.seed);
    let mut bodies = Vec::new();
    let mut bytes = 0u64;
    let mut left = args.records;
    while left > 0 {
        let n = left.min(args.batch as u64);
        let mut body = Vec::with_capacity(n as usize * 1100);
        for _ in 0..n {
            body.extend_from_slice(&users.next_record().1);
            body.push(b'\n');
        }
        bytes += body.len() as u64;
        bodies.push((n, body));
        left -= n;
    }
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (bodies, next, retries) = (bodies.clone(), next.clone(), retries.clone());
        let mut client = Client::new(url.clone());
        workers.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((n, body)) = bodies.get(i) else {
                    return Ok::<u64, anyhow::Error>(accepted);
                };
                let mut tries = 0u32;
                loop {
                    // A refused or closed connection is retried like a 503.
                    match client.post("application/x-ndjson", body).await {
                        Ok(202) => break,
                        Ok(429 | 503) | Err(_) if tries < 3000 => {
                            tries += 1;
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(status) => bail!("the push endpoint answered {status}"),
                        Err(e) => return Err(e),
                    }
                }
                accepted += n;
            }
        }));
    }
    let mut accepted = 0u64;
    for w in workers {
        accepted += w.await??;
    }
    let elapsed = started.elapsed();
    if accepted != args.records {
        bail!("{accepted} of {} records accepted", args.records);
    }
    Outcome {
        measurement: "runner-ingest-push",
        records: accepted,
        bytes,
        seconds: secs(elapsed),
        note: format!(
            "NDJSON bodies of {} records built before timing; {} connections; first request to last 202",
            args.batch, args.concurrency
        ),
        extra: json!({
            "batch": args.batch,
            "concurrency": args.concurrency,
            "requests": bodies.len(),
            "retries": retries.load(Ordering::Relaxed),
            // When the timed part began, for bench/harness.py's end-to-end
            // figure (first request to the sink's last row).
            "started_unix": started_unix,
        }),
    }
    .print();
    Ok(())
}
