//! `millrace-runner`: the command line of the runner library.
//!
//! - `ingest`: the pipeline's sources (scheduled pull, push endpoint,
//!   generator) into its Kafka topic.
//! - `sink`: the topic into the Cassandra table.
//! - `check`: validate a pipeline file.

// The sink allocates a few small buffers per record on tokio's and
// librdkafka's threads; with the system allocator that was about a third
// of its CPU (bench/REPORT.md, profile) and its per-thread arenas kept
// memory after a backlog drained. mimalloc is measured against it in
// bench/ANALYSIS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mi_option_e` in mimalloc.h), for
/// which the Rust bindings have no constant; a unit test checks it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The ingest role's memory comes in bursts: while Kafka stalls, request
/// bodies and records waiting for acknowledgement pile up. mimalloc keeps
/// freed pages for a second before returning them, so one burst stacked
/// on the last and the ingest peaked at 47-60 MiB end to end; returned at
/// once, 38-40, for about 3% of its push throughput. The sink's memory is
/// steady, and purging at once cost it 1.5-2 µs of CPU per row, so it
/// keeps the default (bench/ANALYSIS.md).
#[allow(unsafe_code)]
fn return_freed_memory_at_once() {
    // SAFETY: sets a process-wide option, which mimalloc reads at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use millrace_api::{LogFormat, ports};
use millrace_runner::config::{self, Pipeline};
use millrace_runner::http;
use millrace_runner::roles::{self, Role};
use tracing::{Instrument, error, info_span};
use tracing_subscriber::EnvFilter;

/// millrace runner: the data plane of a StreamPipeline.
#[derive(Parser, Debug)]
#[command(name = "millrace-runner", version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pull, accept and generate records into the pipeline's Kafka topic.
    Ingest(RunArgs),
    /// Write the pipeline's Kafka topic into its Cassandra table.
    Sink(RunArgs),
    /// Validate a pipeline file and exit (0 = valid).
    Check {
        /// The StreamPipeline document (YAML or JSON).
        #[arg(long, env = "MILLRACE_PIPELINE_FILE")]
        pipeline: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The StreamPipeline document (YAML or JSON).
    #[arg(long, env = "MILLRACE_PIPELINE_FILE")]
    pipeline: PathBuf,
    /// Address of the push endpoint (an ingest runner with an httpPush
    /// source); nothing else is served there.
    #[arg(long, env = ports::LISTEN_ENV, default_value_t = format!("0.0.0.0:{}", ports::PUSH))]
    listen: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = ports::METRICS_LISTEN_ENV, default_value_t = format!("0.0.0.0:{}", ports::METRICS))]
    metrics_listen: String,
    /// Kafka bootstrap servers, instead of spec.kafka.bootstrapServers.
    #[arg(long, env = "MILLRACE_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// Cassandra contact points (comma-separated), instead of
    /// spec.cassandra.contactPoints.
    #[arg(long, env = "MILLRACE_CASSANDRA_CONTACT_POINTS")]
    cassandra_contact_points: Option<String>,
    /// `json` or `text`; default spec.runner.logFormat.
    #[arg(long, env = "MILLRACE_LOG_FORMAT", value_parser = ["json", "text"])]
    log_format: Option<String>,
    /// Seconds a client has to send a request's headers before the
    /// connection is closed.
    #[arg(long, env = "MILLRACE_HTTP_HEADER_TIMEOUT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_header_timeout_seconds: u64,
    /// Seconds a client has to send a push request's body (else 408).
    #[arg(long, env = "MILLRACE_HTTP_BODY_TIMEOUT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_body_timeout_seconds: u64,
    /// HTTP connections served at once; more are answered 503 and closed.
    #[arg(long, env = "MILLRACE_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    http_max_connections: u64,
    /// Push requests handled at once; more are answered 503 (Retry-After).
    #[arg(long, env = "MILLRACE_PUSH_MAX_CONCURRENT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    push_max_concurrent: u64,
    /// Push body bytes held in memory at once, across all requests.
    #[arg(long, env = "MILLRACE_PUSH_MAX_BUFFERED_BYTES", default_value_t = 8 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=4 * 1024 * 1024 * 1024))]
    push_max_buffered_bytes: u64,
    /// Seconds one of the runner's Kafka clients may know no broker of its
    /// cluster before /healthz fails and the kubelet restarts the runner
    /// (librdkafka can lose every broker for good, confluentinc/librdkafka#5301).
    #[arg(long, env = "MILLRACE_KAFKA_LOST_AFTER_SECONDS", default_value_t = 360, value_parser = clap::value_parser!(u64).range(10..=86400))]
    kafka_lost_after_seconds: u64,
}

impl RunArgs {
    fn options(&self) -> roles::Options {
        roles::Options {
            listen: self.listen.clone(),
            metrics_listen: self.metrics_listen.clone(),
            kafka_bootstrap: self.kafka_bootstrap.clone(),
            cassandra_contact_points: self.cassandra_contact_points.clone(),
            limits: self.http_limits(),
            kafka_lost_after: std::time::Duration::from_secs(self.kafka_lost_after_seconds),
        }
    }

    fn http_limits(&self) -> http::HttpLimits {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        http::HttpLimits {
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_seconds),
            body_timeout: std::time::Duration::from_secs(self.http_body_timeout_seconds),
            max_connections: size(self.http_max_connections),
            max_concurrent_pushes: size(self.push_max_concurrent),
            max_buffered_body_bytes: size(self.push_max_buffered_bytes),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The sink's work is waiting on Cassandra: one worker thread carries it
/// with the consumer, the writes and the driver's connections on one run
/// queue, and spends less CPU handing records and wake-ups between threads
/// (bench/ANALYSIS.md, "One tokio worker for the sink"). A sink scales out
/// by replicas, one per partition at most, not by threads. Ingest parses
/// and checks pushed bodies in parallel, so it keeps a worker per core.
/// `TOKIO_WORKER_THREADS` overrides both, as it does for any tokio program.
fn runtime(role: Role) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if role == Role::Sink && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.build()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (role, run) = match args.command {
        Command::Check { pipeline } => {
            let p = Pipeline::load(&pipeline)?;
            println!(
                "{}: pipeline {}/{} is valid",
                pipeline.display(),
                p.namespace,
                p.name
            );
            return Ok(());
        }
        Command::Ingest(run) => {
            return_freed_memory_at_once();
            (Role::Ingest, run)
        }
        Command::Sink(run) => (Role::Sink, run),
    };
    // A bad pipeline is reported before anything else, with or without logs.
    let pipeline = Pipeline::load(&run.pipeline)?;
    init_logging(config::log_format(
        run.log_format.as_deref(),
        Some(&pipeline),
    ));
    let runtime = runtime(role)?;
    let span = info_span!(
        "runner",
        role = role.as_str(),
        namespace = %pipeline.namespace,
        pipeline = %pipeline.name
    );
    // Spawned rather than run by `block_on` itself: on the runtime's worker
    // the role's own loop and the tasks it spawns share one run queue, and a
    // spawn is not a wake-up of another thread.
    let result = runtime.block_on(async move {
        match tokio::spawn(roles::run(role, pipeline, run.options()).instrument(span)).await {
            Ok(result) => result,
            Err(e) => Err(anyhow::anyhow!("the runner's main task failed: {e}")),
        }
    });
    if let Err(e) = &result {
        error!(error = format!("{e:#}"), "runner failed");
    }
    // Background tasks (metadata watch, HTTP) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index is mimalloc's purge delay: the only option whose
    /// default is 1,000 (ms), and the one `MIMALLOC_PURGE_DELAY` sets.
    #[test]
    #[allow(unsafe_code)]
    fn the_option_set_for_ingest_is_the_purge_delay() {
        // SAFETY: reads a process-wide option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        let configured = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        assert_eq!(get(), configured);
        return_freed_memory_at_once();
        assert_eq!(get(), 0);
    }
}
