//! The Node object and its heartbeats (a Lease renewed every 10 s, the
//! Ready condition every minute), as the kubelet keeps them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tracing::warn;

use super::status::rfc3339;

const LEASE_NS: &str = "kube-node-lease";
const LEASE_SECONDS: i32 = 40;

fn memory_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(4 * 1024 * 1024)
}

fn node_status() -> serde_json::Value {
    let now = rfc3339(&chrono::Utc::now());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let resources = json!({ "cpu": cpus.to_string(), "memory": format!("{}Ki", memory_kib()), "pods": "110", "ephemeral-storage": "50Gi" });
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        })
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "the agent does not measure memory pressure"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "the agent does not measure disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "the agent does not measure PID pressure"),
            cond("Ready", "True", "KubeletReady", "millrace node agent is posting ready status (Pods run as local processes)"),
        ],
        "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }, { "type": "Hostname", "address": "localhost" }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 0 } },
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel, "osImage": "local processes", "containerRuntimeVersion": "process://millrace-node-agent",
            "kubeletVersion": concat!("millrace-node-agent/", env!("CARGO_PKG_VERSION")), "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
        },
    })
}

/// Creates the Node if needed and marks it Ready.
pub async fn register(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    if nodes.get_opt(name).await?.is_none() {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "labels": {
                "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH,
                "millrace.io/node-agent": "process",
            }},
        }))?;
        nodes.create(&PostParams::default(), &node).await?;
    }
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": node_status() })),
        )
        .await?;
    Ok(())
}

pub async fn heartbeat(client: kube::Client, name: String) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NS);
    let nodes: Api<Node> = Api::all(client.clone());
    let mut tick: u32 = 0;
    loop {
        if let Err(e) = renew_lease(&leases, &nodes, &name).await {
            warn!(error = %e, "node lease renewal failed");
            // A deleted Node is registered again, as the kubelet does.
            if matches!(nodes.get_opt(&name).await, Ok(None))
                && let Err(e) = register(&client, &name).await
            {
                warn!(error = %e, "registering the node again failed");
            }
        }
        if tick % 6 == 5
            && let Err(e) = nodes
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": node_status() })),
                )
                .await
        {
            warn!(error = %e, "node status update failed");
        }
        tick = tick.wrapping_add(1);
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

async fn renew_lease(leases: &Api<Lease>, nodes: &Api<Node>, name: &str) -> anyhow::Result<()> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let spec =
        json!({ "holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now });
    if leases.get_opt(name).await?.is_some() {
        leases
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
    } else {
        let node = nodes.get(name).await?;
        let lease: Lease = serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": name, "namespace": LEASE_NS, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid,
            }]},
            "spec": spec,
        }))?;
        leases.create(&PostParams::default(), &lease).await?;
    }
    Ok(())
}
