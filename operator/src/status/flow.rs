//! Report the data flow: the sink's lag, from its consumer group's
//! committed offsets (`millrace.NS.NAME`) and the topic's high watermarks,
//! and the last run of each pull source, from the annotation its Lease
//! holder writes (`millrace.io/last-pull`). Best effort: a failure here
//! leaves the previous figures and never fails a reconcile.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use millrace_api::{
    FlowStatus, LAST_PULL_ANNOTATION, LastPull, PullStatus, StreamPipelineSpec, consumer_group,
    pull_lease_name,
};

use crate::clients::lag::{LagReaders, lag};
use crate::credentials::KafkaAuth;

/// Flow figures are refreshed at most this often: on a busy pipeline they
/// change all the time, and each status write sets off another reconcile.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The last run of each pull source, as its Lease records it.
pub async fn last_pulls(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: &StreamPipelineSpec,
) -> Vec<PullStatus> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    for source in spec.sources.iter().filter(|s| s.http_pull.is_some()) {
        let Ok(Some(lease)) = leases.get_opt(&pull_lease_name(name, &source.name)).await else {
            continue;
        };
        let Some(text) = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LAST_PULL_ANNOTATION))
        else {
            continue;
        };
        let Ok(last) = serde_json::from_str::<LastPull>(text) else {
            continue;
        };
        let Ok(time) = last.time.parse::<Timestamp>() else {
            continue;
        };
        out.push(PullStatus {
            source: source.name.clone(),
            time: Time(time),
            succeeded: last.succeeded(),
            records: i64::try_from(last.records).unwrap_or(i64::MAX),
            message: last.message,
        });
    }
    out
}

/// The flow status: the new figures, with `updated` moved only when they
/// changed (so an idle pipeline's status is not rewritten).
#[allow(clippy::too_many_arguments)]
pub async fn flow(
    readers: &LagReaders,
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: &StreamPipelineSpec,
    partitions: Option<i32>,
    auth: Option<&KafkaAuth>,
    old: Option<&FlowStatus>,
) -> Option<FlowStatus> {
    if let Some(updated) = old.and_then(|o| o.updated.as_ref()) {
        let age = Timestamp::now().duration_since(updated.0);
        if age.is_positive() && age.unsigned_abs() < REFRESH {
            return old.cloned();
        }
    }
    let mut new = old.cloned().unwrap_or_default();
    if let Some(partitions) = partitions {
        let (consumer, evicted) = readers.get(&spec.kafka, &consumer_group(namespace, name), auth);
        if let Some(evicted) = evicted {
            tokio::task::spawn_blocking(move || drop(evicted));
        }
        if let Some(consumer) = consumer {
            let topic = spec.kafka.topic.name.clone();
            if let Ok(Some(lag)) =
                tokio::task::spawn_blocking(move || lag(&consumer, &topic, partitions)).await
            {
                new.sink_lag = Some(lag);
            }
        }
    }
    new.last_pulls = last_pulls(client, namespace, name, spec).await;
    let mut unchanged = new.clone();
    unchanged.updated = old.and_then(|o| o.updated.clone());
    if old == Some(&unchanged) {
        return old.cloned();
    }
    if new == FlowStatus::default() {
        return None;
    }
    new.updated = Some(Time(Timestamp::now()));
    Some(new)
}
