//! Running a role: the sink or ingest with its HTTP servers (/metrics,
//! /healthz and /readyz on one port, the push endpoint on another), until
//! SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use millrace_api::auth_failure::{cassandra_refused_login, cassandra_tls_failure};
use tokio::sync::watch;
use tracing::{error, info};

use crate::config::{CassandraConnectError, Connections, Pipeline};
use crate::http::{self, HttpLimits};
use crate::kafka_health::ClientHealth;
use crate::metrics::Metrics;
use crate::{ingest, sink};

/// What a runner process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Pull, accept and generate records into the pipeline's Kafka topic.
    Ingest,
    /// Write the pipeline's Kafka topic into its Cassandra table.
    Sink,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Sink => "sink",
        }
    }
}

/// How a role is run, from the command line or environment.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of the push endpoint (ingest with an httpPush source).
    pub listen: String,
    /// Address of /metrics, /healthz and /readyz.
    pub metrics_listen: String,
    /// Kafka bootstrap servers, instead of spec.kafka.bootstrapServers.
    pub kafka_bootstrap: Option<String>,
    /// Cassandra contact points (comma-separated), instead of
    /// spec.cassandra.contactPoints.
    pub cassandra_contact_points: Option<String>,
    pub limits: HttpLimits,
    /// How long a Kafka client may know no broker before the runner is not
    /// live ([`crate::kafka_health`]).
    pub kafka_lost_after: std::time::Duration,
}

/// Runs `role` for `pipeline` until SIGTERM or Ctrl-C.
pub async fn run(role: Role, pipeline: Pipeline, options: Options) -> anyhow::Result<()> {
    let connections = Connections::new(
        &pipeline,
        options.kafka_bootstrap,
        options.cassandra_contact_points,
    );
    let metrics = Arc::new(Metrics::new());
    // The liveness probe's view of the Kafka clients (kafka_health).
    let health = Arc::new(ClientHealth::new(options.kafka_lost_after));
    let live: http::LiveCheck = {
        let health = health.clone();
        Arc::new(move || health.check())
    };
    let limits = options.limits;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: stopping");
        let _ = stop_tx.send(true);
    });

    if role == Role::Sink {
        let ready = Arc::new(AtomicBool::new(false));
        let check_ready = ready.clone();
        let router = http::router(
            metrics.clone(),
            Arc::new(move || check_ready.load(Ordering::Relaxed)),
            live,
        );
        let (_, server) = http::serve(
            &options.metrics_listen,
            router,
            stop_rx.clone(),
            limits,
            None,
        )
        .await?;
        if !wait_for_cassandra_login(&pipeline, &connections, stop_rx.clone()).await? {
            server.abort();
            return Ok(());
        }
        sink::run(pipeline, connections, metrics, ready, &health, stop_rx)
            .await
            .context("sink")?;
        server.abort();
    } else {
        let ingest = ingest::Ingest::new(pipeline, &connections, metrics.clone(), &health)?;
        let producer = ingest.producer.clone();
        let router = http::router(metrics, Arc::new(move || producer.ready()), live);
        let (_, metrics_server) = http::serve(
            &options.metrics_listen,
            router,
            stop_rx.clone(),
            limits,
            None,
        )
        .await?;
        // Only a pipeline with a push source opens the push port: a port
        // nobody should call is better not listening at all.
        let push_server = if ingest.push_sources.is_empty() {
            None
        } else {
            let tokens_dir = std::env::var_os(millrace_api::push_auth::TOKENS_DIR_ENV).map_or_else(
                || std::path::PathBuf::from(millrace_api::push_auth::TOKENS_DIR),
                std::path::PathBuf::from,
            );
            let router =
                ingest::push::routes(axum::Router::new(), &ingest, limits, &tokens_dir, &stop_rx)?;
            let tls = match &ingest.pipeline.spec.runner.push_tls {
                Some(spec) => {
                    let dir = std::env::var_os(millrace_api::push_auth::TLS_DIR_ENV).map_or_else(
                        || std::path::PathBuf::from(millrace_api::push_auth::TLS_DIR),
                        std::path::PathBuf::from,
                    );
                    let files = millrace_api::push_auth::TlsFiles::under(
                        &dir,
                        spec.client_ca_secret_ref.is_some(),
                    );
                    let tls = ingest::push_tls::PushTls::load(files)?;
                    tls.keep_current(stop_rx.clone());
                    Some(tls.current())
                }
                None => None,
            };
            Some(
                http::serve(&options.listen, router, stop_rx.clone(), limits, tls)
                    .await?
                    .1,
            )
        };
        let tasks = ingest.start(&stop_rx).await?;
        let mut stop = stop_rx.clone();
        let _ = stop.wait_for(|s| *s).await;
        // Let the push server finish answering in-flight pushes.
        if let Some(server) = push_server {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(20), server).await;
        }
        metrics_server.abort();
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

/// How long the sink waits for Cassandra to accept its credentials (and its
/// TLS material) before exiting, so that a restarted container reads a
/// fixed Secret.
const LOGIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

const LOGIN_REFUSED: &str = "Cassandra refused the credentials (MILLRACE_CASSANDRA_USERNAME / MILLRACE_CASSANDRA_PASSWORD, from the pipeline's Secret)";
const TLS_REFUSED: &str =
    "TLS to Cassandra failed (spec.cassandra.tls: the CA, the client certificate, verifyHostname)";

/// Waits, not ready, while Cassandra refuses the credentials or the TLS
/// handshake fails (or the TLS material cannot be used): restarting
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
        let (refused, what) = match connections.cassandra_session(pipeline).await {
            Err(e @ CassandraConnectError::Tls(_)) => (e.to_string(), TLS_REFUSED),
            Err(e) => {
                let text = e.to_string();
                if let Some(seen) = cassandra_tls_failure(&text) {
                    (seen, TLS_REFUSED)
                } else if cassandra_refused_login(&text) {
                    (text, LOGIN_REFUSED)
                } else {
                    return Ok(true);
                }
            }
            Ok(_) => return Ok(true),
        };
        if started.elapsed() >= LOGIN_PATIENCE {
            anyhow::bail!("{what} for {} s: {refused}", LOGIN_PATIENCE.as_secs());
        }
        error!(
            error = %refused,
            retry_in_seconds = pause.as_secs(),
            "{what}: not ready"
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
