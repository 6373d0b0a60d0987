//! The records of which pipeline owns a Kafka topic: one ConfigMap per
//! cluster and topic in the operator's claims namespace
//! ([`crate::desired::ownership`] says why there). Creating a ConfigMap is
//! atomic, so of two pipelines (or two operator replicas) racing for one
//! topic exactly one records itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use millrace_api::KafkaSpec;

use crate::clients::kafka::{Admin, unavailable};
use crate::context::Context;
use crate::desired::ownership::{
    self, CLAIM_KIND_LABEL, Claim, KAFKA_CLUSTER_ANNOTATION, OWNER_ANNOTATION, Owner,
    TOPIC_ANNOTATION,
};
use crate::error::{Error, Result};
use crate::metrics::Target;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka cluster's id: the same cluster whatever bootstrap address a
/// pipeline names.
pub async fn cluster_id(admin: &Arc<Admin>, spec: &KafkaSpec) -> Result<String> {
    let client = admin.clone();
    tokio::task::spawn_blocking(move || client.inner().fetch_cluster_id(TIMEOUT))
        .await
        .map_err(|e| unavailable(spec, e))?
        .ok_or_else(|| unavailable(spec, "could not read the cluster id"))
}

fn api(ctx: &Context) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), &ctx.config.claims_namespace)
}

fn recorded_owner(cm: &ConfigMap) -> Option<Owner> {
    cm.metadata
        .annotations
        .as_ref()?
        .get(OWNER_ANNOTATION)
        .and_then(|o| Owner::parse(o))
}

/// The pipeline recorded as the owner of `topic`, if any.
pub async fn topic_owner(ctx: &Context, cluster: &str, topic: &str) -> Result<Option<Owner>> {
    let name = ownership::topic_claim_name(cluster, topic);
    Ok(api(ctx)
        .get_opt(&name)
        .await?
        .as_ref()
        .and_then(recorded_owner))
}

/// Records `owner` as the owner of `topic` unless another pipeline is
/// recorded; says which it is.
pub async fn claim_topic(
    ctx: &Context,
    owner: &Owner,
    cluster: &str,
    topic: &str,
) -> Result<Claim> {
    let name = ownership::topic_claim_name(cluster, topic);
    // The watch cache answers the common case (the record is this
    // pipeline's) without a read. A record the cache shows as another's is
    // read afresh, so one removed a moment ago never shows as another's.
    // No record at all in a cache that holds the claims namespace: the
    // create below decides (a record made meanwhile refuses it), and a new
    // topic costs no read.
    let cache = ctx.cache();
    let cached = cache.get::<ConfigMap>(&ctx.config.claims_namespace, &name);
    if cached
        .as_ref()
        .is_some_and(|cm| ownership::claim(owner, recorded_owner(cm)) == Claim::Ours)
    {
        return Ok(Claim::Ours);
    }
    let watched = ctx
        .config
        .namespace
        .as_deref()
        .is_none_or(|ns| ns == ctx.config.claims_namespace);
    let api = api(ctx);
    if (cached.is_some() || !watched || !cache.listed::<ConfigMap>())
        && let Some(cm) = api.get_opt(&name).await?
    {
        return Ok(match ownership::claim(owner, recorded_owner(&cm)) {
            // A record nobody can read is someone's: never taken over.
            Claim::Free => Claim::Theirs(Owner::new("unknown", "unknown")),
            other => other,
        });
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ctx.config.claims_namespace.clone()),
            labels: Some(BTreeMap::from([
                (CLAIM_KIND_LABEL.to_owned(), "topic".to_owned()),
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "millrace-operator".to_owned(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (OWNER_ANNOTATION.to_owned(), owner.to_string()),
                (TOPIC_ANNOTATION.to_owned(), topic.to_owned()),
                (KAFKA_CLUSTER_ANNOTATION.to_owned(), cluster.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "README".to_owned(),
            format!(
                "The Kafka topic {topic} (cluster {cluster}) belongs to StreamPipeline {owner}. Deleting this ConfigMap hands the topic to the next pipeline that names it."
            ),
        )])),
        ..ConfigMap::default()
    };
    match api.create(&PostParams::default(), &cm).await {
        Ok(_) => {
            ctx.metrics.write(Target::Kubernetes);
            Ok(Claim::Free)
        }
        // Another claimant was first: its record decides.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let cm = api.get(&name).await?;
            Ok(match ownership::claim(owner, recorded_owner(&cm)) {
                Claim::Ours => Claim::Ours,
                Claim::Theirs(other) => Claim::Theirs(other),
                Claim::Free => Claim::Theirs(Owner::new("unknown", "unknown")),
            })
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

/// Removes `owner`'s record of `topic` once the topic is deleted.
pub async fn release_topic(ctx: &Context, owner: &Owner, cluster: &str, topic: &str) -> Result<()> {
    let name = ownership::topic_claim_name(cluster, topic);
    let api = api(ctx);
    let Some(cm) = api.get_opt(&name).await? else {
        return Ok(());
    };
    if recorded_owner(&cm).as_ref() != Some(owner) {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            ctx.metrics.write(Target::Kubernetes);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

/// The name of the record, for messages.
pub fn record_name(ctx: &Context, cluster: &str, topic: &str) -> String {
    format!(
        "ConfigMap {}/{}",
        ctx.config.claims_namespace,
        ownership::topic_claim_name(cluster, topic)
    )
}
