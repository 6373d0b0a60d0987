//! The desired state, computed by pure functions from the StreamPipeline
//! (and, for the topic and table, from what was observed). Nothing here
//! talks to a cluster, so all of it is unit-tested with plain values.
//! [`runner_objects`] builds the runner's whole set at once.

pub mod autoscale;
pub mod config_map;
pub mod deployment;
pub mod drift;
pub mod finalizer;
pub mod network_policy;
pub mod ownership;
pub mod push_tls;
pub mod push_tokens;
pub mod rbac;
pub mod runner;
pub mod service;
pub mod table;
pub mod topic;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use millrace_api::StreamPipeline;
use serde::Serialize;

use crate::error::{Error, Result};

pub use runner::{RunnerDeployment, RunnerObjects, runner_objects};

pub const FIELD_MANAGER: &str = "millrace-operator";
/// A digest of what the operator last applied; an object whose digest
/// matches is not written again.
pub const DESIRED_HASH_ANNOTATION: &str = "millrace.io/desired-hash";
/// On the Pod template: the digest of the spec as the runner runs it
/// ([`config_map::config_hash`]), so a change of what a Pod does rolls the
/// Pods and a change of how many run does not.
pub const CONFIG_HASH_ANNOTATION: &str = "millrace.io/config-hash";
/// On the runner's Pod template: a digest of the names and
/// resourceVersions of the Secrets the runner reads (never their values).
/// Environment from a Secret is read only when a container starts, so a
/// rewritten Secret (a rotated password or certificate) rolls the Pods.
pub const SECRETS_VERSION_ANNOTATION: &str = "millrace.io/secrets-version";
/// On each runner Deployment: the pipeline generation it was made from, so
/// a reader knows when the Deployment reflects a spec change.
pub const GENERATION_ANNOTATION: &str = "millrace.io/pipeline-generation";

/// The pipeline's identity, checked once: every builder needs it.
#[derive(Clone, Debug)]
pub struct Pipeline<'a> {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: i64,
    pub owner: OwnerReference,
    pub sp: &'a StreamPipeline,
}

impl<'a> Pipeline<'a> {
    pub fn new(sp: &'a StreamPipeline) -> Result<Self> {
        Ok(Self {
            name: sp.name_any(),
            namespace: sp
                .namespace()
                .ok_or(Error::MissingMetadata("metadata.namespace"))?,
            uid: sp.uid().ok_or(Error::MissingMetadata("metadata.uid"))?,
            generation: sp.metadata.generation.unwrap_or_default(),
            owner: sp
                .controller_owner_ref(&())
                .ok_or(Error::MissingMetadata("metadata.uid"))?,
            sp,
        })
    }

    /// This pipeline as the owner of a topic or table.
    pub fn owner_id(&self) -> ownership::Owner {
        ownership::Owner::new(&self.namespace, &self.name)
    }

    pub fn config_map_name(&self) -> String {
        format!("{}-pipeline", self.name)
    }

    pub fn runner_name(&self) -> String {
        format!("{}-runner", self.name)
    }

    pub fn deployment_name(&self, role: deployment::Role) -> String {
        format!("{}-{}", self.name, role.as_str())
    }

    /// Whether the runner pulls (then its ingest holds Leases: it needs a
    /// ServiceAccount and a Role of its own).
    pub fn pulls(&self) -> bool {
        self.sp.spec.sources.iter().any(|s| s.http_pull.is_some())
    }

    /// Whether the pipeline has an ingest role at all: without sources its
    /// records come from producers of the user's own, straight to the
    /// topic, and an idle ingest Deployment would only cost the cluster.
    pub fn ingests(&self) -> bool {
        !self.sp.spec.sources.is_empty()
    }

    /// Whether the runner takes pushed records (then it has a Service).
    pub fn pushes(&self) -> bool {
        self.sp.spec.sources.iter().any(|s| s.http_push.is_some())
    }

    pub fn service_name(&self) -> String {
        self.name.clone()
    }

    pub fn labels(&self, component: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "millrace".to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name.clone()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "millrace-operator".to_owned(),
            ),
        ]);
        if let Some(component) = component {
            labels.insert(
                "app.kubernetes.io/component".to_owned(),
                component.to_owned(),
            );
        }
        labels
    }

    /// Name, namespace, labels and the owner reference.
    pub fn meta(&self, name: String, component: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// FNV-1a, 64 bit: stable across builds, unlike `DefaultHasher`.
/// The [`SECRETS_VERSION_ANNOTATION`] value for Secrets read as
/// `(name, resourceVersion)`, or `None` when the runner reads none.
pub fn secrets_version(read: &[(String, String)]) -> Option<String> {
    if read.is_empty() {
        return None;
    }
    let mut read = read.to_vec();
    read.sort();
    read.dedup();
    let text: Vec<String> = read.iter().map(|(n, v)| format!("{n}={v}")).collect();
    Some(format!("{:016x}", fnv64(text.join("\n").as_bytes())))
}

pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Stamps the object with the digest of its own content.
pub fn with_desired_hash<K: Resource + Serialize>(mut object: K) -> Result<K> {
    let bytes = serde_json::to_vec(&object).map_err(|e| Error::Render {
        what: "object",
        message: e.to_string(),
    })?;
    let digest = format!("{:016x}", fnv64(&bytes));
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESIRED_HASH_ANNOTATION.to_owned(), digest);
    Ok(object)
}

pub fn desired_hash<K: Resource>(object: &K) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(DESIRED_HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
pub(crate) mod fixtures {
    use millrace_api::StreamPipeline;

    /// The seed's pipeline from `examples/`, as the apiserver would hand it
    /// to the operator.
    pub fn seed() -> StreamPipeline {
        let text = include_str!("../../../examples/randomuser.yaml");
        let mut sp: StreamPipeline = serde_yaml::from_str(text).expect("example parses");
        sp.metadata.namespace = Some("data".into());
        sp.metadata.uid = Some("0b5a6f0e-1111-2222-3333-444455556666".into());
        sp.metadata.generation = Some(4);
        sp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn the_secrets_version_follows_each_secrets_version_and_nothing_else() {
        let read = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect();
            secrets_version(&pairs)
        };
        assert_eq!(read(&[]), None, "no annotation without Secrets");
        let first = read(&[("kafka", "10"), ("cassandra", "7")]);
        assert!(first.is_some());
        assert_eq!(read(&[("cassandra", "7"), ("kafka", "10")]), first, "order");
        assert_ne!(
            read(&[("kafka", "11"), ("cassandra", "7")]),
            first,
            "rotated"
        );
        assert_ne!(read(&[("kafka", "10")]), first, "one Secret fewer");
    }

    #[test]
    fn every_object_is_owned_by_the_pipeline_and_labelled() {
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("complete metadata");
        let meta = p.meta(p.deployment_name(deployment::Role::Sink), Some("sink"));
        assert_eq!(meta.name.as_deref(), Some("randomuser-sink"));
        let owner = &meta.owner_references.expect("owner")[0];
        assert_eq!(owner.kind, "StreamPipeline");
        assert_eq!(owner.controller, Some(true));
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["app.kubernetes.io/instance"], "randomuser");
        assert_eq!(labels["app.kubernetes.io/component"], "sink");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "millrace-operator");
    }

    #[test]
    fn the_digest_changes_with_the_content_only() {
        let a = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let h1 = desired_hash(&with_desired_hash(a.clone()).expect("hash")).map(str::to_owned);
        let h2 = desired_hash(&with_desired_hash(a.clone()).expect("hash")).map(str::to_owned);
        let mut b = a;
        b.data = Some([("k".to_owned(), "v".to_owned())].into());
        let h3 = desired_hash(&with_desired_hash(b).expect("hash")).map(str::to_owned);
        assert_eq!(h1, h2);
        assert_ne!(h1, h3);
    }
}
