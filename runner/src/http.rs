//! The runner's HTTP servers: `/metrics`, `/healthz` and `/readyz` on
//! `--metrics-listen` ([`router`]), and the push endpoint on `--listen`
//! ([`crate::ingest::push::routes`]), both served by [`serve`].
//!
//! The push server is exposed to any client that can reach the Service, so
//! what a client can hold is bounded: [`millrace_api::serve`] enforces
//! [`HttpLimits::header_timeout`], the header buffer
//! ([`millrace_api::serve::MAX_HEADER_BUFFER`]) and
//! [`HttpLimits::max_connections`]. What a push request may hold (its body,
//! its records) is bounded in [`crate::ingest::push`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::service::TowerToHyperService;
use millrace_api::serve::{CurrentTls, Refusal, ServeLimits};
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Whether the role is ready to serve (`/readyz`).
pub type ReadyCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Whether the runner is live (`/healthz`); `Err` says why not.
pub type LiveCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What a connection over [`HttpLimits::max_connections`] is told.
const REFUSAL: Refusal = Refusal {
    content_type: "application/json",
    body: r#"{"accepted": 0, "error": "too many connections to this runner; retry later"}"#,
};

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

/// The metrics and health routes both roles serve.
pub fn router(metrics: Arc<Metrics>, ready: ReadyCheck, live: LiveCheck) -> Router {
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
        .route(
            "/healthz",
            get(move || {
                let live = live.clone();
                async move {
                    match live() {
                        Ok(()) => (StatusCode::OK, "ok".to_owned()).into_response(),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
                    }
                }
            }),
        )
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
/// stops accepting and lets open requests finish; over TLS with `tls`.
/// Returns the bound address (useful with port 0) and the server's task.
pub async fn serve(
    listen: &str,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    limits: HttpLimits,
    tls: Option<CurrentTls>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let limits = ServeLimits {
        header_timeout: limits.header_timeout,
        max_connections: limits.max_connections,
        refusal: REFUSAL,
    };
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    Ok(
        millrace_api::serve::serve_tls(listen, TowerToHyperService::new(router), stop, limits, tls)
            .await?,
    )
}
