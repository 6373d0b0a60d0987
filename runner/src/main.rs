//! `millrace-runner`: the data plane of a StreamPipeline.
//!
//! - `ingest`: the pipeline's sources (scheduled pull, push endpoint,
//!   generator) into its Kafka topic ([`ingest`]).
//! - `sink`: the topic into the Cassandra table ([`sink`]).
//! - `check`: validate a pipeline file.
//!
//! The interface with the operator is `docs/runner-contract.md`.

mod backoff;
mod config;
mod http;
mod ingest;
mod kafka;
mod metrics;
mod sink;

// The sink allocates a few small buffers per record on tokio's and
// librdkafka's threads; with the system allocator that was about a third
// of its CPU (bench/REPORT.md, profile) and its per-thread arenas kept
// memory after a backlog drained. mimalloc is measured against it in
// bench/ANALYSIS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::{Parser, Subcommand};
use millrace_api::LogFormat;
use tokio::sync::watch;
use tracing::{Instrument, error, info, info_span};
use tracing_subscriber::EnvFilter;

use crate::config::{Connections, Pipeline};
use crate::metrics::Metrics;

/// millrace runner: the data plane of a StreamPipeline.
#[derive(Parser, Debug)]
#[command(name = "millrace-runner", version, about)]
struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand, Debug)]
enum Role {
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
    /// HTTP address: push endpoint (ingest), /metrics, /healthz, /readyz.
    #[arg(long, env = "MILLRACE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: String,
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
}

impl RunArgs {
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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (is_sink, run) = match args.role {
        Role::Check { pipeline } => {
            let p = Pipeline::load(&pipeline)?;
            println!(
                "{}: pipeline {}/{} is valid",
                pipeline.display(),
                p.namespace,
                p.name
            );
            return Ok(());
        }
        Role::Ingest(run) => (false, run),
        Role::Sink(run) => (true, run),
    };
    // A bad pipeline is reported before anything else, with or without logs.
    let pipeline = Pipeline::load(&run.pipeline)?;
    init_logging(config::log_format(
        run.log_format.as_deref(),
        Some(&pipeline),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let span = info_span!(
        "runner",
        role = if is_sink { "sink" } else { "ingest" },
        namespace = %pipeline.namespace,
        pipeline = %pipeline.name
    );
    let result = runtime.block_on(run_role(is_sink, pipeline, run).instrument(span));
    if let Err(e) = &result {
        error!(error = format!("{e:#}"), "runner failed");
    }
    // Background tasks (metadata watch, HTTP) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn run_role(is_sink: bool, pipeline: Pipeline, run: RunArgs) -> anyhow::Result<()> {
    let connections = Connections::new(
        &pipeline,
        run.kafka_bootstrap.clone(),
        run.cassandra_contact_points.clone(),
    );
    let metrics = Arc::new(Metrics::new());
    let limits = run.http_limits();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: stopping");
        let _ = stop_tx.send(true);
    });

    if is_sink {
        let ready = Arc::new(AtomicBool::new(false));
        let check_ready = ready.clone();
        let router = http::router(
            metrics.clone(),
            Arc::new(move || check_ready.load(Ordering::Relaxed)),
        );
        let (_, server) = http::serve(&run.listen, router, stop_rx.clone(), limits).await?;
        if !wait_for_cassandra_login(&pipeline, &connections, stop_rx.clone()).await? {
            server.abort();
            return Ok(());
        }
        sink::run(pipeline, connections, metrics, ready, stop_rx)
            .await
            .context("sink")?;
        server.abort();
    } else {
        let ingest = ingest::Ingest::new(pipeline, &connections, metrics.clone())?;
        let producer = ingest.producer.clone();
        let router = http::router(metrics, Arc::new(move || producer.ready()));
        let router = ingest::push::routes(router, &ingest, limits);
        let (_, server) = http::serve(&run.listen, router, stop_rx.clone(), limits).await?;
        let tasks = ingest.start(&stop_rx).await?;
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
        // Let the HTTP server finish answering in-flight pushes.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), server).await;
        for task in tasks {
            if tokio::time::timeout(std::time::Duration::from_secs(20), async {
                while !task.is_finished() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
            .await
            .is_err()
            {
                task.abort();
            }
        }
        ingest.producer.flush(std::time::Duration::from_secs(10));
        info!("ingest stopped");
    }
    Ok(())
}

/// Whether a driver error is Cassandra refusing the username or password.
fn is_login_refused(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("authentication failed")
        || e.contains("bad credentials")
        || e.contains("and/or password are incorrect")
}

/// How long the sink waits for Cassandra to accept its credentials before
/// exiting, so that a restarted container reads a fixed Secret.
const LOGIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Waits, not ready, while Cassandra refuses the credentials: restarting
/// every few seconds would only bury the reason in a crash loop. After
/// [`LOGIN_PATIENCE`] it gives up with an error, since credentials from a
/// Secret reach a container only when it starts. Other errors are left to
/// the sink. `Ok(false)` if stopped while waiting.
async fn wait_for_cassandra_login(
    pipeline: &Pipeline,
    connections: &Connections,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_secs(5);
    loop {
        let refused = match connections.cassandra_session(pipeline).await {
            Err(e) if is_login_refused(&e.to_string()) => e,
            _ => return Ok(true),
        };
        if started.elapsed() >= LOGIN_PATIENCE {
            anyhow::bail!(
                "Cassandra refused the credentials for {} s: {refused}",
                LOGIN_PATIENCE.as_secs()
            );
        }
        error!(
            error = %refused,
            retry_in_seconds = pause.as_secs(),
            "Cassandra refused the credentials (MILLRACE_CASSANDRA_USERNAME / MILLRACE_CASSANDRA_PASSWORD, from the pipeline's Secret): not ready"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(60));
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn refused_logins_are_told_from_other_errors() {
        assert!(super::is_login_refused(
            "Control connection pool error: Authentication failed - bad credentials"
        ));
        assert!(super::is_login_refused(
            "Provided username cassandra and/or password are incorrect"
        ));
        assert!(!super::is_login_refused(
            "Connection refused (os error 111)"
        ));
    }
}
