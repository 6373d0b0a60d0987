//! Clients kept across reconciles, one per cluster and identity: Kafka
//! admin clients, CQL sessions, and the consumers that read a sink's lag.
//! Making one costs connections and threads, so they are cached here, below
//! every step that uses them.

pub mod cassandra;
pub mod create_topics;
pub mod kafka;
pub mod lag;
pub mod native;
