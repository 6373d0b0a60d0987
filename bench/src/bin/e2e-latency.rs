//! End-to-end latency at a fixed rate: records POSTed to the runner's push
//! endpoint until their rows are readable in Cassandra.
//!
//! Every `--interval-ms` one NDJSON request carries the records due at
//! `--rate`; its first record is a probe. When the request is answered
//! `202` (Kafka acknowledged every record), the probe's id is read back
//! with `SELECT ... WHERE id = ?` (consistency ONE) every 2 ms until the row
//! is there. Latency = row first seen - 202 received ("accepted"), and also
//! from the request being sent. The 2 ms poll adds up to 2 ms; the reads
//! add a little load on Cassandra (one probe per request).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use millrace_api::cql as statements;
use millrace_bench::http::{Client, Url};
use millrace_bench::users::Users;
use millrace_bench::{Outcome, World, cql, secs};
use scylla::statement::Consistency;
use serde_json::json;
use tokio::task::JoinSet;

#[derive(Parser)]
struct Args {
    /// The push endpoint, e.g. http://127.0.0.1:8080/v1/records.
    #[arg(long)]
    url: String,
    #[arg(long)]
    keyspace: String,
    #[arg(long)]
    table: String,
    /// Records per second.
    #[arg(long)]
    rate: f64,
    /// How long to send.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// One request (and one probe) every this many milliseconds.
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    #[arg(long, default_value_t = 11)]
    seed: u64,
}

/// One probe: when its request was sent, answered, and its row seen.
struct Probe {
    sent: Instant,
    accepted: Instant,
    seen: Option<Instant>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "p50_ms": percentile(&ms, 0.50),
        "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms.last().copied().unwrap_or(f64::NAN),
        "n": ms.len(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let world = World::from_env()?;
    let url = Url::parse(&args.url)?;
    let session = Arc::new(cql::session(&world).await?);
    let mut select = session
        .prepare(format!(
            "SELECT id FROM {} WHERE id = ?",
            statements::qualified_table(&args.keyspace, &args.table)
        ))
        .await
        .context("prepare the probe read")?;
    select.set_consistency(Consistency::One);
    let select = Arc::new(select);

    let pool: Arc<Mutex<Vec<Client>>> = Arc::default();
    let probes: Arc<Mutex<Vec<Probe>>> = Arc::default();
    let mut users = Users::new(args.seed);
    let mut tasks = JoinSet::new();
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut ticker = tokio::time::interval(interval);
    let started = Instant::now();
    let mut sent = 0u64;
    let mut requests = 0u64;
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed >= args.seconds {
            break;
        }
        let due = ((elapsed + interval.as_secs_f64()) * args.rate) as u64;
        if due <= sent {
            continue;
        }
        let n = due - sent;
        let mut body = Vec::with_capacity(n as usize * 1100);
        let mut probe_id = None;
        for _ in 0..n {
            let user = users.next_user();
            if probe_id.is_none() {
                probe_id = user["login"]["uuid"]
                    .as_str()
                    .and_then(|s| s.parse::<uuid::Uuid>().ok());
            }
            body.extend_from_slice(user.to_string().as_bytes());
            body.push(b'\n');
        }
        sent += n;
        requests += 1;
        let probe_id = probe_id.context("a generated user without a uuid")?;
        let (pool, probes, url) = (pool.clone(), probes.clone(), url.clone());
        let (session, select) = (session.clone(), select.clone());
        tasks.spawn(async move {
            let mut client = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_else(|| Client::new(url));
            let t_sent = Instant::now();
            let mut tries = 0;
            loop {
                // A refused or closed connection is retried like a 503.
                match client.post("application/x-ndjson", &body).await {
                    Ok(202) => break,
                    Ok(429 | 503) | Err(_) if tries < 500 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(status) => bail!("the push endpoint answered {status}"),
                    Err(e) => return Err(e),
                }
            }
            let t_accepted = Instant::now();
            pool.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(client);
            let deadline = t_accepted + Duration::from_secs(30);
            let mut seen = None;
            while Instant::now() < deadline {
                let found = session
                    .execute_unpaged(&select, (probe_id,))
                    .await?
                    .into_rows_result()?
                    .rows_num()
                    > 0;
                if found {
                    seen = Some(Instant::now());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            probes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Probe {
                    sent: t_sent,
                    accepted: t_accepted,
                    seen,
                });
            Ok(())
        });
        // Reap finished requests as we go so errors surface early.
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    let sending = started.elapsed();
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let probes = std::mem::take(&mut *probes.lock().unwrap_or_else(PoisonError::into_inner));
    let missing = probes.iter().filter(|p| p.seen.is_none()).count();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let from_accept: Vec<f64> = probes
        .iter()
        .filter_map(|p| p.seen.map(|s| ms(s.duration_since(p.accepted))))
        .collect();
    let from_send: Vec<f64> = probes
        .iter()
        .filter_map(|p| p.seen.map(|s| ms(s.duration_since(p.sent))))
        .collect();
    let push: Vec<f64> = probes
        .iter()
        .map(|p| ms(p.accepted.duration_since(p.sent)))
        .collect();
    if missing > 0 {
        bail!(
            "{missing} of {} probe rows never appeared within 30 s",
            probes.len()
        );
    }
    Outcome {
        measurement: "e2e-latency",
        records: sent,
        bytes: 0,
        seconds: secs(sending),
        note: format!(
            "one NDJSON request every {} ms at {} records/s; probe = first record of each request, read back every 2 ms",
            args.interval_ms, args.rate
        ),
        extra: json!({
            "target_rate": args.rate,
            "requests": requests,
            "probes": probes.len(),
            "accepted_to_row": summary(from_accept),
            "sent_to_row": summary(from_send),
            "push_request": summary(push),
        }),
    }
    .print();
    Ok(())
}
