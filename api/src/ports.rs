//! The runner's two HTTP ports, as the operator exposes and probes them and
//! the runner binds them by default.
//!
//! Two ports so a NetworkPolicy can tell the callers apart: clients that
//! push records reach only [`PUSH`], Prometheus and the kubelet only
//! [`METRICS`] (`/metrics`, `/healthz`, `/readyz`). A client allowed to
//! push cannot read the pipeline's metrics, and a scraper cannot push.

/// The push endpoint of an ingest runner with an `httpPush` source.
pub const PUSH: u16 = 8080;
/// The container and Service port name of [`PUSH`].
pub const PUSH_NAME: &str = "push";

/// `/metrics`, `/healthz` and `/readyz`, on every runner.
pub const METRICS: u16 = 9090;
/// The container port name of [`METRICS`].
pub const METRICS_NAME: &str = "metrics";

/// The runner's variable holding the push endpoint's address.
pub const LISTEN_ENV: &str = "MILLRACE_LISTEN";
/// The runner's variable holding the metrics and health address.
pub const METRICS_LISTEN_ENV: &str = "MILLRACE_METRICS_LISTEN";
