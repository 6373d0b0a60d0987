//! The operator's HTTP endpoint: `/metrics`, `/healthz` and `/readyz`, on
//! millrace-api's bounded server (header timeout, connection cap).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use millrace_api::serve::{
    Refusal, ServeError, ServeLimits, StatusCode, serve as serve_on, service_fn, text,
};

use crate::metrics::Metrics;

const LIMITS: ServeLimits = ServeLimits {
    header_timeout: Duration::from_secs(10),
    // Prometheus and the kubelet's probes: a few at a time.
    max_connections: 64,
    refusal: Refusal {
        content_type: TEXT,
        body: "too many connections; retry later\n",
    },
};

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `listen` and serves until the process ends; returns the bound
/// address.
pub async fn serve(listen: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, ServeError> {
    let service = service_fn(move |request| match request.uri().path() {
        "/metrics" => text(StatusCode::OK, OPENMETRICS, metrics.render()),
        "/healthz" => text(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" if metrics.ready() => text(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    });
    let (addr, _task) =
        serve_on(&listen.to_string(), service, std::future::pending(), LIMITS).await?;
    Ok(addr)
}
