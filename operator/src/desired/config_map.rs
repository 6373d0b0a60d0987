//! `NAME-pipeline`: the pipeline document the runner reads from
//! `/etc/millrace/pipeline.yaml`. It holds the spec only; credentials stay
//! in their Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use millrace_api::{RunnerSpec, StreamPipelineSpec};
use serde_json::json;

use super::{Pipeline, fnv64};
use crate::error::{Error, Result};

pub const PIPELINE_KEY: &str = "pipeline.yaml";

/// The spec as a runner Pod runs it. How many Pods run (replica counts,
/// autoscaling, suspension) is the Deployments' business: left out, a
/// scale change (`kubectl scale`, an HPA, the autoscaler) changes neither
/// the document nor [`config_hash`], so it rolls no Pod.
pub fn runner_spec(spec: &StreamPipelineSpec) -> StreamPipelineSpec {
    let defaults = RunnerSpec::default();
    let mut spec = spec.clone();
    spec.runner.ingest_replicas = defaults.ingest_replicas;
    spec.runner.sink_replicas = defaults.sink_replicas;
    spec.runner.autoscale = None;
    spec.suspend = false;
    spec
}

/// The digest of what a runner Pod runs, for the Pod template's
/// [`super::CONFIG_HASH_ANNOTATION`]: any change of it rolls the Pods.
pub fn config_hash(spec: &StreamPipelineSpec) -> String {
    // A spec always serializes (string keys only); an empty digest input
    // would still be stable.
    let bytes = serde_json::to_vec(&runner_spec(spec)).unwrap_or_default();
    format!("{:016x}", fnv64(&bytes))
}

/// The StreamPipeline as the runner's `--pipeline` file.
pub fn pipeline_document(p: &Pipeline<'_>) -> Result<String> {
    let doc = json!({
        "apiVersion": "millrace.io/v1alpha1",
        "kind": "StreamPipeline",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
        },
        "spec": runner_spec(&p.sp.spec),
    });
    serde_yaml::to_string(&doc).map_err(|e| Error::Render {
        what: "the pipeline document",
        message: e.to_string(),
    })
}

pub fn config_map(p: &Pipeline<'_>) -> Result<ConfigMap> {
    Ok(ConfigMap {
        metadata: p.meta(p.config_map_name(), None),
        data: Some(BTreeMap::from([(
            PIPELINE_KEY.to_owned(),
            pipeline_document(p)?,
        )])),
        ..ConfigMap::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use millrace_api::StreamPipeline;

    #[test]
    fn the_document_round_trips_to_the_same_spec() {
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        let cm = config_map(&p).expect("config map");
        assert_eq!(cm.metadata.name.as_deref(), Some("randomuser-pipeline"));
        let text = &cm.data.expect("data")[PIPELINE_KEY];
        let back: StreamPipeline = serde_yaml::from_str(text).expect("parses as a StreamPipeline");
        assert_eq!(back.spec, sp.spec);
        assert_eq!(back.metadata.namespace.as_deref(), Some("data"));
    }

    #[test]
    fn scaling_changes_neither_the_document_nor_the_hash_and_anything_else_does() {
        let sp = fixtures::seed();
        let document = |sp: &millrace_api::StreamPipeline| {
            pipeline_document(&Pipeline::new(sp).expect("pipeline")).expect("document")
        };
        let mut scaled = sp.clone();
        scaled.spec.runner.sink_replicas = 4;
        scaled.spec.runner.ingest_replicas = 2;
        scaled.spec.runner.autoscale = Some(millrace_api::AutoscaleSpec {
            min_replicas: 1,
            max_replicas: 8,
            target_lag_per_replica: 1000,
            cooldown_seconds: 60,
        });
        scaled.spec.suspend = true;
        scaled.metadata.generation = Some(9);
        assert_eq!(document(&scaled), document(&sp));
        assert_eq!(config_hash(&scaled.spec), config_hash(&sp.spec));

        let mut changed = sp.clone();
        changed.spec.runner.max_in_flight = 64;
        assert_ne!(config_hash(&changed.spec), config_hash(&sp.spec));
        assert_ne!(document(&changed), document(&sp));
        let mut changed = sp.clone();
        changed.spec.cassandra.tables_mut()[0].columns.pop();
        assert_ne!(config_hash(&changed.spec), config_hash(&sp.spec));
    }
}
