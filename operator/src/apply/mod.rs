//! Apply: bring Kubernetes objects, the Kafka topic and the Cassandra table
//! to the desired state, writing only what differs. Each part returns how
//! it came out and the Events its writes call for; it publishes nothing.

pub mod cassandra;
pub mod kafka;
pub mod kubernetes;
pub mod ownership;

use crate::error::Error;
use crate::events::Notice;
use crate::status::reasons;

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
    pub error: Option<Error>,
    /// Events for what was written, in order (kept on failure too: what
    /// was done before it still happened).
    pub events: Vec<Notice>,
}

impl<S> PartOutcome<S> {
    fn usable(ready: bool, reason: &str, message: String, status: S) -> Self {
        Self {
            ready,
            reason: reason.to_owned(),
            message,
            usable: true,
            status: Some(status),
            error: None,
            events: Vec::new(),
        }
    }

    /// As declared, and ready.
    pub fn ready(message: String, status: S) -> Self {
        Self::usable(true, reasons::RECONCILED, message, status)
    }

    /// Exists, but something declared cannot be done (retrying cannot help).
    pub fn not_supported(unsupported: &[String], status: S) -> Self {
        Self::usable(
            false,
            reasons::NOT_SUPPORTED,
            unsupported.join("; "),
            status,
        )
    }

    /// Applied; waiting for it to become ready.
    pub fn progressing(message: String, status: S) -> Self {
        Self::usable(false, reasons::PROGRESSING, message, status)
    }

    /// Applied and scaled to zero by `spec.suspend`.
    pub fn suspended(message: String, status: S) -> Self {
        Self::usable(false, reasons::SUSPENDED, message, status)
    }

    /// Not made yet: it waits for the parts it needs.
    pub fn waiting(message: &str, status: S) -> Self {
        Self {
            usable: false,
            ..Self::usable(
                false,
                reasons::WAITING_FOR_DEPENDENCIES,
                message.into(),
                status,
            )
        }
    }

    /// Not attempted, for a reason reported elsewhere (its credentials
    /// could not be read; that error is retried on its own).
    pub fn not_attempted(reason: &str, message: String) -> Self {
        Self {
            ready: false,
            reason: reason.to_owned(),
            message,
            usable: false,
            status: None,
            error: None,
            events: Vec::new(),
        }
    }

    /// Another pipeline owns it: nothing of it was touched, and the runner
    /// must not use it.
    pub fn conflict(message: String) -> Self {
        Self::not_attempted(reasons::RESOURCE_CONFLICT, message)
    }

    /// Whether another pipeline owns it.
    pub fn is_conflict(&self) -> bool {
        self.reason == reasons::RESOURCE_CONFLICT
    }

    /// Failed while `what`; retried with back-off.
    pub fn failed(error: Error, what: &str) -> Self {
        let mut outcome = Self::not_attempted(error.reason(), format!("{what}: {error}"));
        outcome.error = Some(error);
        outcome
    }

    /// With the Events for what was written.
    pub fn with_events(mut self, events: Vec<Notice>) -> Self {
        self.events = events;
        self
    }
}
