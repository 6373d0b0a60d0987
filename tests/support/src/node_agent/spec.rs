//! Pure decisions about a Pod: which binary an image stands for, the
//! container's environment, what the agent cannot honour, and when to
//! restart. No I/O here, so all of it is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// Maps container images to locally built binaries.
///
/// An image matches an entry when its repository's last path segment (no
/// registry, tag or digest) equals the entry's key:
/// `localhost/millrace-runner:dev` and `ghcr.io/x/millrace-runner@sha256:…`
/// both match `millrace-runner`.
#[derive(Debug, Clone, Default)]
pub struct ImageMap {
    entries: HashMap<String, PathBuf>,
}

impl ImageMap {
    /// Parses `name=path` entries.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut map = HashMap::new();
        for entry in entries {
            let (name, path) = entry
                .split_once('=')
                .ok_or_else(|| format!("image map entry {entry:?} is not NAME=PATH"))?;
            map.insert(name.trim().to_string(), PathBuf::from(path.trim()));
        }
        Ok(Self { entries: map })
    }

    pub fn resolve(&self, image: &str) -> Option<&PathBuf> {
        self.entries.get(image_key(image))
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The last path segment of an image's repository.
pub fn image_key(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    // A ':' in the last segment is a tag; a registry port never reaches here.
    last.split(':').next().unwrap_or(last)
}

/// Expands `$(VAR)` references as the kubelet does: known variables are
/// replaced, unknown ones are left as written, and `$$` is a literal `$`.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Values a `fieldRef` may read, as the kubelet resolves them.
pub fn field_ref(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => {
            if let Some(key) = map_key("metadata.labels['") {
                Some(
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(&key).cloned())
                        .unwrap_or_default(),
                )
            } else if let Some(key) = map_key("metadata.annotations['") {
                Some(
                    meta.annotations
                        .as_ref()
                        .and_then(|a| a.get(&key).cloned())
                        .unwrap_or_default(),
                )
            } else {
                return Err(format!(
                    "fieldRef {path:?} is not supported by the node agent"
                ));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// Everything in a Pod that the process-mode agent cannot do faithfully.
/// Each entry is a sentence for a Pod condition and an Event; a Pod with any
/// of them is not started, so nothing is silently ignored.
pub fn unsupported(pod: &Pod) -> Vec<String> {
    let mut out = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return vec!["the Pod has no spec".into()];
    };
    for v in spec.volumes.iter().flatten() {
        if let Some(kind) = unsupported_volume(v) {
            out.push(format!("volume {:?} of kind {kind} is not supported (configMap, secret, projected, downwardAPI and emptyDir are)", v.name));
        }
    }
    if spec.host_pid == Some(true) || spec.host_ipc == Some(true) {
        out.push("hostPID/hostIPC are not supported".into());
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        out.push("ephemeral containers are not supported".into());
    }
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        let name = &c.name;
        for (kind, probe) in [
            ("readiness", &c.readiness_probe),
            ("liveness", &c.liveness_probe),
            ("startup", &c.startup_probe),
        ] {
            if let Some(p) = probe
                && (p.exec.is_some() || p.grpc.is_some())
            {
                out.push(format!("container {name:?}: {kind} probe by exec/grpc is not supported (httpGet and tcpSocket are)"));
            }
        }
        if c.lifecycle
            .as_ref()
            .is_some_and(|l| l.post_start.is_some() || l.pre_stop.is_some())
        {
            out.push(format!(
                "container {name:?}: lifecycle hooks are not supported"
            ));
        }
        for m in c.volume_mounts.iter().flatten() {
            if m.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                out.push(format!(
                    "container {name:?}: mount propagation {:?} is not supported",
                    m.mount_propagation
                ));
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(src) = &e.value_from
                && src.resource_field_ref.is_some()
            {
                out.push(format!(
                    "container {name:?}: env {:?} from resourceFieldRef is not supported",
                    e.name
                ));
            }
        }
    }
    out
}

fn unsupported_volume(v: &Volume) -> Option<&'static str> {
    if v.config_map.is_some()
        || v.secret.is_some()
        || v.empty_dir.is_some()
        || v.downward_api.is_some()
    {
        return None;
    }
    if let Some(p) = &v.projected {
        let ok = p.sources.iter().flatten().all(|s| {
            s.service_account_token.is_some()
                || s.config_map.is_some()
                || s.secret.is_some()
                || s.downward_api.is_some()
        });
        return if ok {
            None
        } else {
            Some("projected (with an unsupported source)")
        };
    }
    Some(if v.host_path.is_some() {
        "hostPath"
    } else if v.persistent_volume_claim.is_some() {
        "persistentVolumeClaim"
    } else if v.csi.is_some() {
        "csi"
    } else if v.ephemeral.is_some() {
        "ephemeral"
    } else {
        "other"
    })
}

/// Whether a container that exited with `code` runs again.
pub fn should_restart(policy: Option<&str>, code: i32) -> bool {
    match policy.unwrap_or("Always") {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// Delay before restart number `restarts + 1`: 1 s doubling to 30 s.
/// Shorter than the kubelet's 10 s to 5 min so tests of crashes stay quick;
/// the shape (exponential, capped, reset after a good run) is the same.
pub fn restart_backoff(restarts: u32) -> Duration {
    let secs = 1u64 << restarts.min(5);
    Duration::from_secs(secs.min(30))
}

/// A run this long resets the back-off, as the kubelet does after 10 min.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// The user and group a container runs as: the container's securityContext
/// over the Pod's.
pub fn run_as(pod: &Pod, c: &Container) -> (Option<i64>, Option<i64>) {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();
    let user = csc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|s| s.run_as_user));
    let group = csc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|s| s.run_as_group))
        .or(user);
    (user, group)
}

pub fn read_only_root(c: &Container) -> bool {
    c.security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        .unwrap_or(false)
}

/// Items of a configMap/secret volume: which keys go to which file names.
pub fn volume_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    match items {
        None => Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v.clone()))
                    .ok_or_else(|| format!("key {:?} not found", i.key))
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, HostPathVolumeSource, PodSpec, Probe};

    #[test]
    fn image_keys_ignore_registry_tag_and_digest() {
        assert_eq!(image_key("millrace-runner"), "millrace-runner");
        assert_eq!(
            image_key("localhost/millrace-runner:dev"),
            "millrace-runner"
        );
        assert_eq!(
            image_key("localhost:5000/org/millrace-runner:1.2"),
            "millrace-runner"
        );
        assert_eq!(
            image_key("ghcr.io/x/millrace-runner@sha256:abcd"),
            "millrace-runner"
        );
    }

    #[test]
    fn image_map_resolves_and_refuses_bad_entries() {
        let m = ImageMap::parse(["millrace-runner=/b/runner", "busybox=/bin/busybox"]).unwrap();
        assert_eq!(
            m.resolve("docker.io/library/busybox:1.36").unwrap(),
            &PathBuf::from("/bin/busybox")
        );
        assert!(m.resolve("nginx").is_none());
        assert!(ImageMap::parse(["nonsense"]).is_err());
    }

    #[test]
    fn expansion_follows_the_kubelet() {
        let env = vec![("POD_IP".to_string(), "127.10.0.3".to_string())];
        assert_eq!(
            expand("--listen=$(POD_IP):8080", &env),
            "--listen=127.10.0.3:8080"
        );
        assert_eq!(expand("$(UNKNOWN) stays", &env), "$(UNKNOWN) stays");
        assert_eq!(
            expand("$$(POD_IP) is literal", &env),
            "$(POD_IP) is literal"
        );
        assert_eq!(expand("cost $5 and $(", &env), "cost $5 and $(");
    }

    #[test]
    fn field_refs() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.labels = Some([("app".to_string(), "x".to_string())].into());
        assert_eq!(
            field_ref(&pod, "metadata.name", "127.10.0.2", "127.0.0.1").unwrap(),
            "p"
        );
        assert_eq!(
            field_ref(&pod, "status.podIP", "127.10.0.2", "127.0.0.1").unwrap(),
            "127.10.0.2"
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']", "", "").unwrap(),
            "x"
        );
        assert!(field_ref(&pod, "spec.bogus", "", "").is_err());
    }

    #[test]
    fn unsupported_features_are_named() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    liveness_probe: Some(Probe {
                        exec: Some(ExecAction::default()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/x".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = unsupported(&pod);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("hostPath"));
        assert!(found[1].contains("exec"));
    }

    #[test]
    fn restart_policy_and_backoff() {
        assert!(should_restart(None, 0));
        assert!(should_restart(Some("OnFailure"), 1));
        assert!(!should_restart(Some("OnFailure"), 0));
        assert!(!should_restart(Some("Never"), 137));
        assert_eq!(restart_backoff(0), Duration::from_secs(1));
        assert_eq!(restart_backoff(3), Duration::from_secs(8));
        assert_eq!(restart_backoff(40), Duration::from_secs(30));
    }
}
