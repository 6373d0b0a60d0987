//! Events to publish about a pipeline, as data: the steps that decide them
//! hand them back, and only the controller sends them to the apiserver.

use kube::runtime::events::EventType;

/// One Event about the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub type_: EventType,
    pub reason: String,
    pub note: String,
}

impl Notice {
    pub fn normal(reason: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.to_owned(),
            note: note.into(),
        }
    }

    pub fn warning(reason: &str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: note.into(),
        }
    }
}
