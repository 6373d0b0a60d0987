//! The data plane of a StreamPipeline, as a library: the `millrace-runner`
//! binary parses its command line and calls [`roles::run`]; the benchmarks
//! use the same generator and configuration.
//!
//! - [`ingest`]: the pipeline's sources (scheduled pull, push endpoint,
//!   generator) into its Kafka topic.
//! - [`sink`]: the topic into the Cassandra table.
//! - [`config`]: the pipeline file, with the overrides and credentials from
//!   the environment; [`kafka`]: the producer; [`http`]: the HTTP server;
//!   [`metrics`]; [`backoff`].
//!
//! The interface with the operator is `docs/runner-contract.md`; the names
//! and records both sides use are in `millrace-api`.

pub mod backoff;
pub mod config;
pub mod http;
pub mod ingest;
pub mod kafka;
pub mod kafka_health;
pub mod metrics;
pub mod roles;
pub mod sink;
