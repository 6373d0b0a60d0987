//! Small Kubernetes helpers for tests: a throwaway namespace per test, and
//! reading Pods' state.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use crate::names::unique_name;

/// A namespace that is deleted when the test is done with it, also when
/// the test fails or panics (unless the apiserver cannot be reached).
pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
    deleted: bool,
}

/// The NetworkPolicy each test namespace gets on a cluster whose network
/// plugin enforces NetworkPolicies ([`HARNESS_POLICY`]).
pub const HARNESS_POLICY: &str = "millrace-test-harness";

/// On a cluster that enforces NetworkPolicies (`MILLRACE_TEST_CLIENT_CIDR`
/// set, by `tests/kind/test`): a policy that lets this machine, where the
/// tests run, reach the runner Pods of a test namespace (the tests' pushes
/// and metrics reads), as a user's own clients outside the cluster would be
/// let in by `pushFrom`. It selects only the operator's Pods, and only
/// their ingress: policies add up, so the operator's rules still decide
/// who else gets in and where the runners may go; a test of those rules
/// deletes it from its namespace.
fn harness_policy() -> anyhow::Result<Option<k8s_openapi::api::networking::v1::NetworkPolicy>> {
    let Ok(client_cidr) = std::env::var("MILLRACE_TEST_CLIENT_CIDR") else {
        return Ok(None);
    };
    Ok(Some(serde_json::from_value(json!({
        "metadata": {"name": HARNESS_POLICY},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "millrace-operator"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"ipBlock": {"cidr": client_cidr}}]}],
        }
    }))?))
}

impl TestNamespace {
    /// Creates `prefix-<random>`. The namespace enforces the `restricted`
    /// Pod Security Standard, as production namespaces should. On a cluster
    /// that enforces NetworkPolicies it also gets [`HARNESS_POLICY`].
    pub async fn create(client: &kube::Client, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": {
                "millrace.io/test": "true",
                "pod-security.kubernetes.io/enforce": "restricted",
            }}
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await?;
        let this = Self {
            name,
            client: client.clone(),
            deleted: false,
        };
        if let Some(policy) = harness_policy()? {
            this.api::<k8s_openapi::api::networking::v1::NetworkPolicy>()
                .create(&PostParams::default(), &policy)
                .await?;
        }
        Ok(this)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl TestNamespace {
    /// Deletes the namespace (and so everything in it).
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.deleted = true;
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::background())
            .await?;
        Ok(())
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let name = self.name.clone();
        // A test that fails drops this as its runtime shuts down, and a task
        // spawned there never runs: the delete goes from a thread with a
        // runtime and a client of its own (the test's client's connections
        // belong to the dying runtime), and the test waits for the answer.
        let deleted = std::thread::spawn(move || -> anyhow::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(15), async {
                    // The cluster the tests use, found as they find it (the
                    // world's env file, or KUBECONFIG on kind).
                    let client = crate::world::World::discover()?.kube_client().await?;
                    Api::<Namespace>::all(client)
                        .delete(&name, &DeleteParams::background())
                        .await?;
                    anyhow::Ok(())
                })
                .await?
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("namespace {} left behind: {e:#}", self.name),
            Err(_) => eprintln!("namespace {} left behind: the delete panicked", self.name),
        }
    }
}

/// Pods matching a label selector.
pub async fn pods(api: &Api<Pod>, selector: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

/// Whether a runner Pod is ready and runs the spec whose digest is `hash`
/// (the `millrace.io/config-hash` the operator puts on the Pod template).
pub fn pod_ready_with_config(pod: &Pod, hash: &str) -> bool {
    pod_ready(pod)
        && pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("millrace.io/config-hash"))
            .is_some_and(|h| h == hash)
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref().and_then(|s| s.pod_ip.clone())
}

pub fn restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// The logs of every container of every Pod in `api`'s namespace, through
/// the kubelet (`kubectl logs`), as ("container log NS/POD/CONTAINER",
/// text): where a world without node-agent log files (a kind cluster)
/// keeps them. Previous instances of restarted containers included.
pub async fn container_logs(api: &Api<Pod>) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pod in api.list(&ListParams::default()).await? {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default();
        for status in statuses {
            let mut runs = vec![false];
            if status.restart_count > 0 {
                runs.push(true);
            }
            for previous in runs {
                let params = kube::api::LogParams {
                    container: Some(status.name.clone()),
                    previous,
                    ..Default::default()
                };
                // A container that never started has no log; that is not
                // a place a secret could be.
                if let Ok(text) = api.logs(&name, &params).await {
                    out.push((format!("container log {ns}/{name}/{}", status.name), text));
                }
            }
        }
    }
    Ok(out)
}
