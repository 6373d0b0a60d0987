//! The node agent: a kubelet stand-in for machines without a container
//! runtime.
//!
//! It registers a Node, keeps it Ready with status and Lease heartbeats, and
//! runs each Pod bound to it as local processes (see [`process`]), with its
//! own loopback address as `status.podIP`. What it cannot do faithfully is
//! reported on the Pod (condition reason `Unsupported` and a Warning event),
//! never silently skipped.

pub mod node;
pub mod pod;
pub mod probe;
pub mod process;
pub mod spec;
pub mod status;
pub mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use nix::sys::signal::Signal;
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

pub use spec::ImageMap;

/// What every Pod supervisor shares.
pub struct AgentCtx {
    pub client: kube::Client,
    pub node_name: String,
    pub host_ip: String,
    pub images: ImageMap,
    pub state_dir: PathBuf,
    pub apiserver_host: String,
    pub apiserver_port: u16,
    pub ips: Mutex<IpPool>,
    recorder: Recorder,
}

impl AgentCtx {
    pub fn log_path(&self, ns: &str, pod: &str, container: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(format!("{ns}_{pod}_{container}.log"))
    }

    /// Remembered so a restarted agent can stop processes it no longer owns.
    fn record_pid(&self, pod_dir: &Path, container: &str, pid: u32) {
        let _ = std::fs::create_dir_all(pod_dir.join("pids"));
        let _ = std::fs::write(pod_dir.join("pids").join(container), pid.to_string());
    }

    pub async fn event(&self, pod: &Pod, warning: bool, reason: &str, note: &str) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &pod.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// The second octet of Pod addresses unless configured otherwise.
pub const DEFAULT_POD_IP_OCTET: u8 = 10;

/// Loopback addresses for Pods: 127.N.0.2 upwards (N = 10 by default), one
/// per Pod, kept in the Pod's directory so a restarted agent gives a Pod the
/// same address. A second world on the same machine uses another N, so its
/// Pods never bind the addresses (and ports) of the first world's Pods.
pub struct IpPool {
    octet: u8,
    by_uid: HashMap<String, Ipv4Addr>,
}

impl Default for IpPool {
    fn default() -> Self {
        Self::new(DEFAULT_POD_IP_OCTET)
    }
}

impl IpPool {
    pub fn new(octet: u8) -> Self {
        Self {
            octet,
            by_uid: HashMap::new(),
        }
    }

    pub fn allocate(&mut self, uid: &str, pod: &Pod, pod_dir: &Path) -> String {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return "127.0.0.1".into();
        }
        if let Some(ip) = self.by_uid.get(uid) {
            return ip.to_string();
        }
        let file = pod_dir.join("ip");
        let remembered = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        let used: HashSet<Ipv4Addr> = self.by_uid.values().copied().collect();
        let octet = self.octet;
        let ip = remembered
            .filter(|ip| ip.octets()[1] == octet && !used.contains(ip))
            .unwrap_or_else(|| {
                (2u32..=0xffff)
                    .map(|n| Ipv4Addr::new(127, octet, (n >> 8) as u8, (n & 0xff) as u8))
                    .find(|ip| !used.contains(ip))
                    .unwrap_or(Ipv4Addr::new(127, octet, 255, 254))
            });
        let _ = std::fs::create_dir_all(pod_dir);
        let _ = std::fs::write(&file, ip.to_string());
        self.by_uid.insert(uid.to_string(), ip);
        ip.to_string()
    }

    pub fn release(&mut self, uid: &str) {
        self.by_uid.remove(uid);
    }
}

pub struct AgentConfig {
    pub node_name: String,
    pub images: ImageMap,
    pub state_dir: PathBuf,
    pub apiserver_host: String,
    pub apiserver_port: u16,
    /// N in the Pods' loopback addresses 127.N.x.y.
    pub pod_ip_octet: u8,
}

/// Runs the agent until `shutdown` resolves; then stops every container
/// (the Pods stay, as when a kubelet stops) and returns.
pub async fn run(
    client: kube::Client,
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(cfg.state_dir.join("pods"))?;
    std::fs::create_dir_all(cfg.state_dir.join("logs"))?;
    kill_orphans(&cfg.state_dir.join("pods"));
    let reporter = Reporter {
        controller: "millrace-node-agent".into(),
        instance: Some(cfg.node_name.clone()),
    };
    let ctx = Arc::new(AgentCtx {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        node_name: cfg.node_name.clone(),
        host_ip: "127.0.0.1".into(),
        images: cfg.images,
        state_dir: cfg.state_dir,
        apiserver_host: cfg.apiserver_host,
        apiserver_port: cfg.apiserver_port,
        ips: Mutex::new(IpPool::new(cfg.pod_ip_octet)),
    });
    node::register(&client, &ctx.node_name).await?;
    let heartbeat = tokio::spawn(node::heartbeat(client.clone(), ctx.node_name.clone()));
    info!(node = %ctx.node_name, images = ?ctx.images.names(), "node agent ready");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut pods: HashMap<String, (watch::Sender<Option<Pod>>, tokio::task::JoinHandle<()>)> =
        HashMap::new();
    let api: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut stream = watcher(api, wc).boxed();
    let mut seen_in_relist: HashSet<String> = HashSet::new();
    tokio::pin!(shutdown);
    loop {
        let event = tokio::select! {
            _ = &mut shutdown => break,
            ev = stream.next() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                warn!(error = %e, "pod watch error; the watcher retries");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut upsert = |pod: Pod| {
            let uid = pod.uid().unwrap_or_default();
            pods.retain(|_, (_, handle)| !handle.is_finished());
            match pods.get(&uid) {
                Some((tx, _)) => {
                    let _ = tx.send(Some(pod));
                }
                None => {
                    let (tx, rx) = watch::channel(Some(pod));
                    let handle = tokio::spawn(pod::supervise(ctx.clone(), rx, shutdown_rx.clone()));
                    pods.insert(uid, (tx, handle));
                }
            }
        };
        match event {
            watcher::Event::Init => seen_in_relist.clear(),
            watcher::Event::InitApply(pod) => {
                seen_in_relist.insert(pod.uid().unwrap_or_default());
                upsert(pod);
            }
            watcher::Event::InitDone => {
                // Pods deleted while the watch was down.
                for (uid, (tx, _)) in &pods {
                    if !seen_in_relist.contains(uid) {
                        let _ = tx.send(None);
                    }
                }
            }
            watcher::Event::Apply(pod) => upsert(pod),
            watcher::Event::Delete(pod) => {
                if let Some((tx, _)) = pods.get(&pod.uid().unwrap_or_default()) {
                    let _ = tx.send(None);
                }
            }
        }
    }
    info!("node agent stopping; stopping containers");
    let _ = shutdown_tx.send(true);
    for (_, (_, handle)) in pods {
        let _ = handle.await;
    }
    heartbeat.abort();
    Ok(())
}

/// Processes left by an agent that died: their Pods will be started again.
fn kill_orphans(pods_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pods_dir) else {
        return;
    };
    for pod in entries.flatten() {
        let Ok(pids) = std::fs::read_dir(pod.path().join("pids")) else {
            continue;
        };
        for f in pids.flatten() {
            if let Some(pid) = std::fs::read_to_string(f.path())
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                warn!(pid, "stopping a process left by a previous agent");
                process::signal_group(pid, Signal::SIGKILL);
            }
            let _ = std::fs::remove_file(f.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_use_the_configured_octet_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(crate::unique_name("ip-pool"));
        let pod = Pod::default();
        let mut pool = IpPool::new(11);
        let a = pool.allocate("uid-a", &pod, &dir.join("a"));
        let b = pool.allocate("uid-b", &pod, &dir.join("b"));
        assert_eq!((a.as_str(), b.as_str()), ("127.11.0.2", "127.11.0.3"));
        // A restarted agent gives a Pod its remembered address, but never
        // one of another world's range.
        assert_eq!(IpPool::new(11).allocate("uid-b", &pod, &dir.join("b")), b);
        assert_eq!(
            IpPool::new(10).allocate("uid-b", &pod, &dir.join("b")),
            "127.10.0.2"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
