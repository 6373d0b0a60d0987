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

/// The reason of the one Event that tells what a new pipeline's first
/// apply made.
pub const CREATED: &str = "Created";

/// A new pipeline's first apply, told as one Event: its topic, table and
/// runner are made together, one transition, so at a thousand pipelines
/// they are a thousand Events rather than four thousand. The note keeps
/// each step's own words, in order. Warnings stay Events of their own.
pub fn created(notices: Vec<Notice>) -> Vec<Notice> {
    let (normal, mut out): (Vec<Notice>, Vec<Notice>) = notices
        .into_iter()
        .partition(|n| n.type_ == EventType::Normal);
    if !normal.is_empty() {
        let note = normal
            .iter()
            .map(|n| n.note.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        out.insert(0, Notice::normal(CREATED, note));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_apply_is_one_event_and_its_warnings_their_own() {
        let out = created(vec![
            Notice::normal("TopicCreated", "created topic t"),
            Notice::warning("UnauthenticatedPush", "open"),
            Notice::normal("TableCreated", "created table ks.t"),
            Notice::normal("RunnerApplied", "created ConfigMap p-pipeline"),
        ]);
        assert_eq!(
            out,
            [
                Notice::normal(
                    CREATED,
                    "created topic t; created table ks.t; created ConfigMap p-pipeline"
                ),
                Notice::warning("UnauthenticatedPush", "open"),
            ]
        );
        assert!(created(Vec::new()).is_empty());
    }
}
