//! Apply: bring Kubernetes objects, the Kafka topic and the Cassandra table
//! to the desired state, writing only what differs.

pub mod cassandra;
pub mod kafka;
pub mod kubernetes;

/// How one part of the pipeline (topic, table, runner) came out: its
/// condition, and whether the runner can use it.
#[derive(Debug)]
pub struct PartOutcome<S> {
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// Exists and can be used, even if not exactly as declared.
    pub usable: bool,
    pub status: Option<S>,
    /// A failure to retry with back-off.
    pub error: Option<crate::error::Error>,
}

impl<S> PartOutcome<S> {
    pub fn failed(error: crate::error::Error, what: &str) -> Self {
        Self {
            ready: false,
            reason: error.reason().to_owned(),
            message: format!("{what}: {error}"),
            usable: false,
            status: None,
            error: Some(error),
        }
    }
}
