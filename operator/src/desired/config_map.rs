//! `NAME-pipeline`: the pipeline document the runner reads from
//! `/etc/millrace/pipeline.yaml`. It holds the spec only; credentials stay
//! in their Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::Pipeline;
use crate::error::{Error, Result};

pub const PIPELINE_KEY: &str = "pipeline.yaml";

/// The StreamPipeline as the runner's `--pipeline` file.
pub fn pipeline_document(p: &Pipeline<'_>) -> Result<String> {
    let doc = json!({
        "apiVersion": "millrace.io/v1alpha1",
        "kind": "StreamPipeline",
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "uid": p.uid,
            "generation": p.generation,
        },
        "spec": p.sp.spec,
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
        assert_eq!(back.metadata.generation, Some(4));
    }
}
