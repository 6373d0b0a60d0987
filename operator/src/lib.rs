//! The millrace operator: turns a StreamPipeline into a Kafka topic (and
//! its dead-letter topic), a Cassandra keyspace and table, and the runner's
//! Deployments and Service, and keeps them as declared.
//!
//! A reconcile reads as a chain, one module per step:
//! [`observe`] → validate ([`millrace_api::validate_pipeline`]) →
//! [`desired`] (pure builders) → [`apply`] (Kubernetes, Kafka, Cassandra) →
//! [`status`]. [`controller`] wires it to kube-rs; [`leader`] and
//! [`metrics`] serve the binary.

pub mod apply;
pub mod controller;
pub mod desired;
pub mod error;
pub mod flow;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod status;

pub use error::{Error, ErrorClass};
