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
        let (_, server) = http::serve(&run.listen, router, stop_rx.clone()).await?;
        sink::run(pipeline, connections, metrics, ready, stop_rx)
            .await
            .context("sink")?;
        server.abort();
    } else {
        let ingest = ingest::Ingest::new(pipeline, &connections, metrics.clone())?;
        let producer = ingest.producer.clone();
        let router = http::router(metrics, Arc::new(move || producer.ready()));
        let router = ingest::push::routes(router, &ingest);
        let (_, server) = http::serve(&run.listen, router, stop_rx.clone()).await?;
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
