//! The pull Lease `NAME-pull-SOURCE`: with several ingest replicas, only its
//! holder pulls, and it records each run in the annotation
//! `millrace.io/last-pull` for the operator's status.
//!
//! The Lease is owned by the StreamPipeline (when the pipeline document
//! names its uid), so it goes when the pipeline does; a Lease made before
//! it had an owner is given one on its next renewal.
//!
//! The Lease is held through [`millrace_api::lease`], the mechanism the
//! operator's leader election uses too: every change is a read-modify-
//! replace guarded by resourceVersion (the runner's Role allows get, create
//! and update, no patch), so of two replicas racing for an expired Lease one
//! gets a conflict and stays idle; and a replica judges a Lease expired by
//! how long it has seen it unchanged, not by the holder's clock.

use std::time::Duration;

use kube::api::Api;
use millrace_api::lease::{Attempt, LeaseError, LeaseLock, Timing, annotate};
use millrace_api::{
    HttpPullSource, LAST_PULL_ANNOTATION, LastPull, PULL_STATE_ANNOTATION, PullState,
    pull_lease_name, pull_lease_owner,
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

/// A pull Lease lasts one run with all its retries and some margin; its
/// holder stops a run whose Lease it could not renew within this much less
/// than that (the margin for two machines' clocks and latencies).
const PULL_LEASE_MARGIN: Duration = Duration::from_secs(15);

pub struct PullLease {
    lock: LeaseLock,
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
        let lock = LeaseLock::new(
            Api::namespaced(client, &pipeline.namespace),
            &pull_lease_name(&pipeline.name, source),
            &holder,
            timing(spec),
        )
        .with_owner(
            pipeline
                .uid
                .as_deref()
                .map(|uid| pull_lease_owner(&pipeline.name, uid)),
        );
        Self { lock }
    }

    pub fn name(&self) -> &str {
        self.lock.name()
    }

    /// Takes or renews the Lease; `Ok(false)` when another replica holds
    /// it. A replica takes the Lease of another only when it has seen it
    /// unchanged for the Lease's whole duration (its schedule's slots are
    /// when it looks).
    pub async fn acquire(&self) -> Result<bool, LeaseError> {
        let attempt = self.lock.try_acquire_or_renew().await?;
        if let Attempt::HeldBy(holder) = &attempt {
            debug!(lease = %self.lock.name(), %holder, "another replica holds the pull Lease");
        }
        Ok(attempt.is_held())
    }

    /// Whether this replica may go on with its run: it renewed the Lease
    /// within the renew deadline and saw no other holder since.
    pub fn held(&self) -> bool {
        self.lock.gate().is_open()
    }

    /// The watermark, unfinished window and backfill progress the last
    /// holder recorded. A record that cannot be read is an error, not an
    /// empty state: starting over from `initialStart` could skip a window.
    pub async fn state(&self) -> Result<PullState, StateError> {
        match self.lock.annotation(PULL_STATE_ANNOTATION).await? {
            None => Ok(PullState::default()),
            Some(text) => serde_json::from_str(&text).map_err(StateError::Unreadable),
        }
    }

    /// Records a run and the state after it in the annotations (a renewal
    /// too), if this replica still holds the Lease.
    pub async fn record(&self, last: &LastPull, state: &PullState) -> Result<(), LeaseError> {
        let text = serde_json::to_string(last).unwrap_or_default();
        let state = serde_json::to_string(state).unwrap_or_default();
        let attempt = self
            .lock
            .renew_with(|lease| {
                annotate(lease, LAST_PULL_ANNOTATION, text);
                annotate(lease, PULL_STATE_ANNOTATION, state);
            })
            .await?;
        if !attempt.is_held() {
            info!(lease = %self.lock.name(), "the pull Lease is no longer ours: the run is not recorded");
        }
        Ok(())
    }
}

/// Why the pull state on the Lease cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("the annotation {PULL_STATE_ANNOTATION} is not a pull state: {0}")]
    Unreadable(serde_json::Error),
}

/// Long enough to cover one run with all its retries, so the holder keeps
/// the Lease while it pulls.
fn timing(spec: &HttpPullSource) -> Timing {
    let run = u64::try_from(spec.timeout_seconds).unwrap_or(30)
        * (u64::try_from(spec.max_retries).unwrap_or(3) + 1);
    let duration = Duration::from_secs((run + 30).max(60));
    let renew_deadline = duration - PULL_LEASE_MARGIN;
    Timing::new(duration, renew_deadline, Duration::from_secs(5)).unwrap_or(Timing::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_lease_covers_a_run_and_its_holder_stops_before_it_can_be_taken() {
        let spec = HttpPullSource::new("http://example.invalid/", "*/5 * * * *");
        let t = timing(&spec);
        assert_eq!(t.duration, Duration::from_secs(150));
        assert_eq!(t.renew_deadline, Duration::from_secs(135));
        assert!(t.renew_deadline >= Duration::from_secs(120), "a whole run");
    }
}
