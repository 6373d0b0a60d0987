//! How the data plane runs: the ingest and sink Deployments.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits;
use super::sources::SecretReference;
use super::tls::CaSecretRef;

/// The runner Deployments the operator manages for the pipeline: ingest
/// (sources to Kafka) and sink (Kafka to Cassandra).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// `kubectl scale` and an HPA write `sinkReplicas` through the scale
// subresource; with `autoscale` set the operator decides the replicas, and
// a second decider would only fight it.
#[x_kube(
    validation = Rule::new("!has(self.autoscale) || !has(oldSelf.autoscale) || self.sinkReplicas == oldSelf.sinkReplicas")
        .message("spec.runner.autoscale is set, so the operator scales the sink: sinkReplicas (and kubectl scale, an HPA or KEDA) cannot change it; remove autoscale first")
        .field_path(".sinkReplicas")
        .reason(Reason::FieldValueForbidden)
)]
pub struct RunnerSpec {
    /// Runner container image. Unset: the image the operator was released
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// When the kubelet pulls the image: `Always`, `IfNotPresent` or `Never`.
    /// Unset: the Kubernetes default for the image's tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Replicas of the ingest Deployment (sources to Kafka). Pull and
    /// generator sources are shared between replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = limits::REPLICAS.0, max = limits::REPLICAS.1))]
    pub ingest_replicas: i32,

    /// Replicas of the sink Deployment (Kafka to Cassandra). More replicas
    /// than topic partitions leaves some idle. The scale subresource
    /// (`kubectl scale`, an HPA, KEDA) sets this field. Ignored while
    /// `autoscale` is set, and then it cannot be changed.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = limits::REPLICAS.0, max = limits::REPLICAS.1))]
    pub sink_replicas: i32,

    /// Scale the sink by its lag, between `minReplicas` and `maxReplicas`
    /// and never past the topic's partitions. Set, it replaces
    /// `sinkReplicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleSpec>,

    /// CPU and memory for each runner container. Unset: requests of 100m
    /// CPU and 64Mi of memory, and a memory limit of 256Mi (no CPU limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Writes each sink replica keeps in flight to Cassandra at once.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = limits::MAX_IN_FLIGHT.0, max = limits::MAX_IN_FLIGHT.1))]
    pub max_in_flight: i32,

    /// Group the rows of one Cassandra partition into unlogged batches.
    /// Unset: every row is its own write. Worth it for tables whose
    /// partitions hold many rows (a clustering key) when a partition's
    /// records arrive close together; rows of different partitions are
    /// never batched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSpec>,

    /// Log format of the runner: `json` (default) or `text`.
    #[serde(default)]
    pub log_format: LogFormat,

    /// The NetworkPolicy the operator makes for the runner's Pods (unless
    /// it runs with `--network-policies=false`). Unset: made, with pushes
    /// allowed from the pipeline's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,

    /// TLS on the push port: one setting for the pipeline, since all its
    /// `httpPush` sources share one listener. Unset: plain HTTP (put a
    /// TLS-terminating proxy, ingress or service mesh in front, or set
    /// this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_tls: Option<PushTlsSpec>,
}

/// The push endpoint's TLS: its certificate, and the CA that issues the
/// client certificates of `ClientCertificate` push sources. The runner
/// reads both again every few seconds, so a renewed certificate (say, by
/// cert-manager) is served to new connections without a restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushTlsSpec {
    /// A Secret of type `kubernetes.io/tls` in the pipeline's namespace:
    /// `tls.crt` (PEM, the server certificate first, then its chain) and
    /// `tls.key` (PEM, unencrypted), as cert-manager writes them.
    pub certificate_secret_ref: SecretReference,

    /// The CAs (PEM bundle) a client certificate must chain to. Needed by
    /// `ClientCertificate` push sources; with it, clients of other sources
    /// may present a certificate too, and one that does not chain to these
    /// CAs fails the handshake. Unset: no client certificate is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_secret_ref: Option<CaSecretRef>,
}

/// Who may reach the runner's Pods, and what they may reach. A
/// NetworkPolicy is enforced only where the cluster's network plugin
/// enforces NetworkPolicies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Make the NetworkPolicy (default). `false` removes the one the
    /// operator made.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Who may reach the push port, as NetworkPolicy peers (Pods,
    /// namespaces, IP blocks). Unset: every Pod in the pipeline's
    /// namespace. The metrics port is reached only from the operator's
    /// monitoring namespace (`--monitoring-namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub push_from: Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>>,
}

fn default_true() -> bool {
    true
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            push_from: None,
        }
    }
}

fn default_replicas() -> i32 {
    1
}

fn default_max_in_flight() -> i32 {
    256
}

impl Default for RunnerSpec {
    fn default() -> Self {
        Self {
            image: None,
            image_pull_policy: None,
            ingest_replicas: default_replicas(),
            sink_replicas: default_replicas(),
            autoscale: None,
            resources: None,
            max_in_flight: default_max_in_flight(),
            batch: None,
            log_format: LogFormat::default(),
            network_policy: None,
            push_tls: None,
        }
    }
}

/// How the operator scales the sink by its lag: it wants
/// `ceil(lag / targetLagPerReplica)` replicas, within `minReplicas` and
/// `maxReplicas` and at most the topic's partitions. It scales up at once,
/// and down only once the lag has asked for fewer replicas for
/// `cooldownSeconds` (then to the most it asked for in that time). While
/// Cassandra times out writes it does not scale up: more writers would only
/// add load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("minReplicas must not exceed maxReplicas")
    .field_path(".minReplicas"))]
pub struct AutoscaleSpec {
    /// Fewest sink replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = limits::AUTOSCALE_REPLICAS.0, max = limits::AUTOSCALE_REPLICAS.1))]
    pub min_replicas: i32,

    /// Most sink replicas (the topic's partitions cap it too: a replica
    /// past them would have nothing to read).
    #[schemars(range(min = limits::AUTOSCALE_REPLICAS.0, max = limits::AUTOSCALE_REPLICAS.1))]
    pub max_replicas: i32,

    /// Records of lag one sink replica is expected to work off: the sink
    /// wants one replica per this many records of lag.
    #[schemars(range(min = limits::TARGET_LAG.0, max = limits::TARGET_LAG.1))]
    pub target_lag_per_replica: i64,

    /// How long the lag must ask for fewer replicas before the sink is
    /// scaled down, and the least time between a change and a scale-down,
    /// in seconds.
    #[serde(default = "default_cooldown_seconds")]
    #[schemars(range(min = limits::COOLDOWN_SECONDS.0, max = limits::COOLDOWN_SECONDS.1))]
    pub cooldown_seconds: i32,
}

fn default_cooldown_seconds() -> i32 {
    300
}

/// When the kubelet pulls the runner image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The value a container's `imagePullPolicy` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// How the sink groups rows into unlogged batches. A batch holds rows of
/// one table and one partition only (one replica set, one mutation), so
/// it never makes a coordinator do another node's work.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Most records the sink reads before it groups their rows: a batch
    /// has at most this many rows of each table. At most `maxInFlight`,
    /// since every record read holds one of its writes.
    #[serde(default = "default_batch_max_records")]
    #[schemars(range(min = limits::BATCH_MAX_RECORDS.0, max = limits::BATCH_MAX_RECORDS.1))]
    pub max_records: i32,

    /// Longest the sink waits for more records to group with the ones it
    /// has read, in milliseconds. 0 (the default) groups only records that
    /// are already there, adding no latency; a higher value groups more
    /// rows when the topic is not busy, at that much latency per record.
    #[serde(default)]
    #[schemars(range(min = limits::BATCH_MAX_DELAY_MS.0, max = limits::BATCH_MAX_DELAY_MS.1))]
    pub max_delay_ms: i32,
}

fn default_batch_max_records() -> i32 {
    64
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_batch_max_records(),
            max_delay_ms: 0,
        }
    }
}

/// Log format of the runner.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}
