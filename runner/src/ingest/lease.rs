//! The pull Lease `NAME-pull-SOURCE`: with several ingest replicas, only its
//! holder pulls, and it records each run in the annotation
//! `millrace.io/last-pull` for the operator's status.
//!
//! The Lease is owned by the StreamPipeline (when the pipeline document
//! names its uid), so it goes when the pipeline does; a Lease made before
//! it had an owner is given one on its next renewal.
//!
//! The runner's Role allows get, create and update on Leases (no patch), so
//! every change is a read-modify-replace guarded by resourceVersion: of two
//! replicas racing for an expired Lease, one gets a conflict and stays idle.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use millrace_api::{
    HttpPullSource, LAST_PULL_ANNOTATION, LastPull, pull_lease_name, pull_lease_owner,
};
use tracing::{debug, info};

use crate::config::Pipeline;

/// A client when the runner is in a cluster (in-cluster config) or has
/// `KUBECONFIG`; `None` when it runs standalone.
pub async fn kube_client() -> anyhow::Result<Option<kube::Client>> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kubeconfig = std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty());
    if !in_cluster && !kubeconfig {
        return Ok(None);
    }
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow::anyhow!("cannot configure the Kubernetes client for the pull Lease: {e}")
    })?;
    Ok(Some(kube::Client::try_from(config)?))
}

pub struct PullLease {
    api: Api<Lease>,
    name: String,
    owner: Option<OwnerReference>,
    holder: String,
    duration: Duration,
}

impl PullLease {
    pub fn new(
        client: kube::Client,
        pipeline: &Pipeline,
        source: &str,
        spec: &HttpPullSource,
    ) -> Self {
        let holder = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("millrace-runner-{}", std::process::id()));
        // Long enough to cover one run with all its retries, so the holder
        // keeps the Lease while it pulls.
        let run = u64::try_from(spec.timeout_seconds).unwrap_or(30)
            * (u64::try_from(spec.max_retries).unwrap_or(3) + 1);
        let duration = Duration::from_secs((run + 30).max(60));
        Self {
            api: Api::namespaced(client, &pipeline.namespace),
            name: pull_lease_name(&pipeline.name, source),
            owner: pipeline
                .uid
                .as_deref()
                .map(|uid| pull_lease_owner(&pipeline.name, uid)),
            holder,
            duration,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes or renews the Lease; `Ok(false)` when another replica holds it.
    pub async fn acquire(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let duration_secs = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    owner_references: self.owner.clone().map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.holder.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    info!(lease = %self.name, holder = %self.holder, "created the pull Lease");
                    Ok(true)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.holder.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => {
                let until = renewed
                    .checked_add(jiff::SignedDuration::from_secs(i64::from(secs)))
                    .unwrap_or(*renewed);
                until < now
            }
            _ => true,
        };
        if !mine && !expired {
            debug!(lease = %self.name, holder = ?spec.holder_identity, "another replica holds the pull Lease");
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.holder.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            info!(lease = %self.name, holder = %self.holder, "took over the pull Lease");
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_secs);
        self.adopt(&mut lease);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives a Lease made without an owner (by an older runner) its
    /// pipeline as owner; the caller writes it.
    fn adopt(&self, lease: &mut Lease) {
        let Some(owner) = &self.owner else {
            return;
        };
        let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
        if !owners.iter().any(|o| o.uid == owner.uid) {
            owners.push(owner.clone());
        }
    }

    /// Records a run in the annotation, if this replica still holds the
    /// Lease.
    pub async fn record(&self, last: &LastPull) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return Ok(());
        }
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        let text = serde_json::to_string(last).unwrap_or_default();
        lease
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(LAST_PULL_ANNOTATION.to_owned(), text);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
