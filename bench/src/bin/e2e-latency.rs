//! End-to-end latency at a fixed rate: records POSTed to the runner's push
//! endpoint until their rows are readable in Cassandra.
//!
//! Every `--interval-ms` one NDJSON request carries the records due at
//! `--rate`; its first record is a probe. When the request is answered
//! `202` (Kafka acknowledged every record), the probe's id is read back
//! with `SELECT ... WHERE id = ?` (consistency ONE) until the row is there:
//! every 2 ms, the interval growing to 5% of the time waited
//! ([`poll_interval`]). Latency = row first seen - 202 received
//! ("accepted"), and also from the request being sent. The poll adds up to
//! max(2 ms, 5%); the reads add a little load on Cassandra (one probe per
//! request). A request answered 429/503 is sent again every 50 ms. The
//! records are built before the first request, so the client's own work
//! while it measures is sending, and reading probes back.

use std::sync::atomic::{AtomicU64, Ordering};
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

/// Requests out at once, and records in one (~1.1 KB each: well inside the
/// push source's default 1 MiB maxBodyBytes).
const MAX_OUTSTANDING: usize = 64;
const MAX_RECORDS_PER_REQUEST: u64 = 800;

/// A refused push is sent again this often, for at most this long.
const RETRY_EVERY: Duration = Duration::from_millis(50);
const RETRY_FOR: Duration = Duration::from_secs(60);

/// How long to wait before reading a probe's row again: 2 ms, growing to
/// 5% of the time already waited. A fixed 2 ms made every lagging probe a
/// 500 reads/s load on Cassandra, competing with the sink it measures
/// once the sink fell behind; this keeps each reading within 5% (or 2 ms)
/// of the truth at a few dozen reads per probe.
fn poll_interval(waited: Duration) -> Duration {
    (waited / 20).max(Duration::from_millis(2))
}

/// One probe: when its request was sent, answered, and its row seen.
struct Probe {
    sent_unix: f64,
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

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The slowest probes, with when each was sent, so that a stall can be
/// matched with what the broker's and Cassandra's logs say at that time.
fn slowest(probes: &[Probe], n: usize) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut slow: Vec<&Probe> = probes.iter().filter(|p| p.seen.is_some()).collect();
    slow.sort_by(|a, b| {
        let total = |p: &Probe| p.seen.map_or(Duration::ZERO, |s| s.duration_since(p.sent));
        total(b).cmp(&total(a))
    });
    slow.iter()
        .take(n)
        .map(|p| {
            json!({
                "sent_unix": p.sent_unix,
                "push_ms": ms(p.accepted.duration_since(p.sent)),
                "accepted_to_row_ms": p.seen.map(|s| ms(s.duration_since(p.accepted))),
            })
        })
        .collect()
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
    // Requests answered 429/503 or cut off, and sent again: at a rate above
    // what the endpoint takes, latency is then the client's retry loop.
    let retried = Arc::new(AtomicU64::new(0));
    let outstanding = Arc::new(tokio::sync::Semaphore::new(MAX_OUTSTANDING));
    // Every record is built before the clock starts, as push-load builds
    // its bodies: generating users is the client's biggest CPU cost, and on
    // a shared two-core box it would be taken from the pipeline measured.
    let mut users = Users::new(args.seed);
    let total = (args.rate * args.seconds).ceil() as u64 + MAX_RECORDS_PER_REQUEST;
    let records: Vec<(Option<uuid::Uuid>, Vec<u8>)> = (0..total)
        .map(|_| {
            let user = users.next_user();
            let id = user["login"]["uuid"]
                .as_str()
                .and_then(|s| s.parse::<uuid::Uuid>().ok());
            let mut line = user.to_string().into_bytes();
            line.push(b'\n');
            (id, line)
        })
        .collect();
    let mut next = records.iter();
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
        // Above what the pipeline takes, requests would pile up without
        // bound (each retrying every 50 ms on a connection of its own): at
        // most MAX_OUTSTANDING are out at once; the records due wait for
        // the next tick, and the "sent" rate reports the shortfall.
        let Ok(slot) = outstanding.clone().try_acquire_owned() else {
            continue;
        };
        let n = (due - sent).min(MAX_RECORDS_PER_REQUEST);
        let mut body = Vec::with_capacity(n as usize * 1100);
        let mut probe_id = None;
        let mut taken = 0;
        for (id, line) in next.by_ref().take(n as usize) {
            probe_id = probe_id.or(*id);
            body.extend_from_slice(line);
            taken += 1;
        }
        if taken == 0 {
            break;
        }
        sent += taken;
        requests += 1;
        let probe_id = probe_id.context("a generated user without a uuid")?;
        let (pool, probes, url) = (pool.clone(), probes.clone(), url.clone());
        let (session, select) = (session.clone(), select.clone());
        let retried = retried.clone();
        tasks.spawn(async move {
            let slot = slot;
            let mut client = pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_else(|| Client::new(url));
            let t_sent = Instant::now();
            let sent_unix = unix_now();
            loop {
                // A refused or closed connection (the endpoint closes one it
                // refuses before reading the body) is retried like a 503.
                match client.post("application/x-ndjson", &body).await {
                    Ok(202) => break,
                    Ok(429 | 503) | Err(_) if t_sent.elapsed() < RETRY_FOR => {
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                    Ok(status) => bail!("the push endpoint answered {status}"),
                    Err(e) => return Err(e.context(format!("refused for {RETRY_FOR:?}"))),
                }
            }
            let t_accepted = Instant::now();
            drop(slot);
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
                tokio::time::sleep(poll_interval(t_accepted.elapsed())).await;
            }
            probes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Probe {
                    sent_unix,
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
            "one NDJSON request every {} ms at {} records/s; probe = first record of each request, read back every max(2 ms, 5% of the wait)",
            args.interval_ms, args.rate
        ),
        extra: json!({
            "target_rate": args.rate,
            "requests": requests,
            "retried": retried.load(Ordering::Relaxed),
            "probes": probes.len(),
            "accepted_to_row": summary(from_accept),
            "sent_to_row": summary(from_send),
            "push_request": summary(push),
            "slowest": slowest(&probes, 10),
        }),
    }
    .print();
    Ok(())
}
