//! The HTTP server on `--listen`: `/metrics`, `/healthz`, `/readyz`, and the
//! routes a role adds (the push endpoint).
//!
//! The server is exposed to any client that can reach the Service, so what a
//! client can hold is bounded: a connection must send its request headers
//! within [`HttpLimits::header_timeout`] (or it is closed), headers and the
//! read buffer are at most [`MAX_HEADER_BUFFER`] bytes, and at most
//! [`HttpLimits::max_connections`] connections are served at once; beyond
//! that a new connection is answered 503 with `Retry-After` and closed,
//! without reading its request. What a push request may hold (its body, its
//! records) is bounded in [`crate::ingest::push`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// Whether the role is ready to serve (`/readyz`).
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// The largest request head (request line and headers) and read buffer a
/// connection may use; a larger head is answered 431.
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// How long a refused connection may take to receive its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's bounds against slow or numerous clients.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// A request's line and headers must arrive within this time of the
    /// connection opening (or of the previous response, on a kept-alive
    /// connection); otherwise the connection is closed.
    pub header_timeout: Duration,
    /// A push request's body must arrive within this time of its headers;
    /// otherwise it is answered 408.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Push requests handled at once (reading, checking, waiting for
    /// Kafka); more are answered 503 with `Retry-After`.
    pub max_concurrent_pushes: usize,
    /// Push body bytes held in memory at once, across all requests; a
    /// request whose body does not fit is answered 503 with `Retry-After`.
    pub max_buffered_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_concurrent_pushes: 256,
            max_buffered_body_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The routes both roles serve.
pub fn router(metrics: Arc<Metrics>, ready: ReadyCheck) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ready").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
                    }
                }
            }),
        )
}

/// Binds `listen` and serves `router` until `shutdown` turns true; then
/// stops accepting and lets open requests finish. Returns the bound address
/// (useful with port 0) and the server's task.
pub async fn serve(
    listen: &str,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    limits: HttpLimits,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    info!(%addr, "listening");
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        let service = TowerToHyperService::new(router);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(MAX_HEADER_BUFFER);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!(%peer, "too many connections: refusing");
                tokio::spawn(refuse(stream));
                continue;
            };
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(%peer, error = %e, "connection ended");
                }
                drop(slot);
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    });
    Ok((addr, task))
}

/// Answers a connection over the limit without reading its request.
async fn refuse(mut stream: tokio::net::TcpStream) {
    const BODY: &str =
        r#"{"accepted": 0, "error": "too many connections to this runner; retry later"}"#;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
