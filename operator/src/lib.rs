//! The millrace operator: turns a StreamPipeline into a Kafka topic (and
//! its dead-letter topic), a Cassandra keyspace and table, and the runner's
//! Deployments and Service, and keeps them as declared.
//!
//! A reconcile reads as a chain, one module per step:
//! [`credentials`] (observe) → validate ([`millrace_api::validate_pipeline`])
//! → [`desired`] (pure builders) → [`apply`] (Kubernetes, Kafka, Cassandra)
//! → [`status`] (report). [`controller`] wires it to kube-rs and publishes
//! the [`events`] the steps hand back. Below the steps: [`context`] (what
//! reconciles share), [`cache`] (the watch caches of owned objects) and
//! [`clients`] (cached Kafka, CQL and lag-reader clients), [`slots`]
//! (which waiting reconcile runs next) and [`hold`] (a new pipeline's first
//! status, held back for the rollout that ends it). [`leader`], [`metrics`] and [`serve`] serve the binary.

pub mod apply;
pub mod cache;
pub mod clients;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod desired;
pub mod error;
pub mod events;
pub mod hold;
pub mod leader;
pub mod metrics;
pub mod serve;
pub mod slots;
pub mod status;
pub mod wake;

pub use error::{Error, ErrorClass};
