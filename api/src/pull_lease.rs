//! The pull Lease `NAME-pull-SOURCE`: with several ingest replicas only its
//! holder runs a pull source, and it records each run in the Lease's
//! annotation `millrace.io/last-pull`, which the operator reports in the
//! pipeline's status. The operator also grants the runner access to the
//! Lease by this name. The Lease is owned by its StreamPipeline
//! ([`pull_lease_owner`]), so it is collected with the pipeline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde::{Deserialize, Serialize};

use crate::StreamPipeline;

/// The annotation holding a [`LastPull`] as JSON.
pub const LAST_PULL_ANNOTATION: &str = "millrace.io/last-pull";

/// `NAME-pull-SOURCE`.
pub fn pull_lease_name(pipeline: &str, source: &str) -> String {
    format!("{pipeline}-pull-{source}")
}

/// The owner reference a pull Lease carries: the pipeline `name` with `uid`
/// (the pipeline document the runner reads holds both). Not a controller
/// reference, and it does not block the owner's deletion (which would need
/// rights on the pipeline the runner does not have).
pub fn pull_lease_owner(pipeline: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: StreamPipeline::api_version(&()).into_owned(),
        kind: StreamPipeline::kind(&()).into_owned(),
        name: pipeline.to_owned(),
        uid: uid.to_owned(),
        controller: None,
        block_owner_deletion: None,
    }
}

/// What the last run of a pull source did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastPull {
    /// When the run started, RFC 3339.
    pub time: String,
    /// Records produced to Kafka.
    #[serde(default)]
    pub records: u64,
    /// [`LastPull::SUCCEEDED`] or [`LastPull::FAILED`]. Kept as text so
    /// that a reader does not drop a record with an outcome it does not know.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl LastPull {
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";

    pub fn succeeded(&self) -> bool {
        self.outcome == Self::SUCCEEDED
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_named_after_pipeline_and_source() {
        assert_eq!(pull_lease_name("randomuser", "api"), "randomuser-pull-api");
    }

    #[test]
    fn the_lease_is_owned_by_its_pipeline() {
        let owner = pull_lease_owner("randomuser", "0b5a6f0e");
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("millrace.io/v1alpha1", "StreamPipeline")
        );
        assert_eq!(
            (owner.name.as_str(), owner.uid.as_str()),
            ("randomuser", "0b5a6f0e")
        );
        assert_eq!((owner.controller, owner.block_owner_deletion), (None, None));
    }

    #[test]
    fn a_run_is_recorded_as_the_annotation_has_always_held_it() {
        let last = LastPull {
            time: "2026-01-01T00:00:00Z".into(),
            records: 3,
            outcome: LastPull::SUCCEEDED.into(),
            message: Some("3 records produced".into()),
        };
        let text = serde_json::to_string(&last).unwrap();
        assert_eq!(
            text,
            r#"{"time":"2026-01-01T00:00:00Z","records":3,"outcome":"Succeeded","message":"3 records produced"}"#
        );
        assert_eq!(serde_json::from_str::<LastPull>(&text).unwrap(), last);
        assert!(last.succeeded());

        let sparse: LastPull =
            serde_json::from_str(r#"{"time":"2026-01-01T00:00:00Z","outcome":"Failed"}"#).unwrap();
        assert_eq!((sparse.records, sparse.message), (0, None));
        assert!(!sparse.outcome.is_empty() && sparse.outcome == LastPull::FAILED);
    }
}
