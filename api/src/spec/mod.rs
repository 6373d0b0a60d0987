//! The `StreamPipeline` custom resource: what a user declares.
//!
//! Admission checks live beside the fields they check (OpenAPI bounds and CEL
//! rules in `x-kubernetes-validations`), so `kubectl apply` refuses a spec the
//! operator could not honour. [`crate::validate`] repeats every rule in Rust.

mod cassandra;
mod format;
mod kafka;
pub mod limits;
mod login;
pub mod patterns;
mod runner;
mod sources;
mod tls;

pub use cassandra::{
    CassandraCredentials, CassandraSpec, CassandraTls, ClusteringColumn, ClusteringOrder,
    ColumnSpec, Consistency, DeleteMarker, DeletesSpec, EpochUnit, KafkaPart, KeyspaceSpec,
    Replication, ReplicationClass, TableSpec, TtlSpec, WriteTimeSpec,
};
pub use format::{FormatSpec, FormatType, RegistryCredentials, RegistryTls, SchemaRegistrySpec};
pub use kafka::{
    DEFAULT_USERNAME_KEY, KafkaCredentials, KafkaSpec, KafkaTls, SaslMechanism, SecurityProtocol,
    TopicSpec,
};
pub use login::LoginSecretRef;
pub use runner::{
    AutoscaleSpec, BatchSpec, ImagePullPolicy, LogFormat, NetworkPolicySpec, PushTlsSpec,
    RunnerSpec,
};
pub use sources::{
    AllowedAddresses, Backfill, CursorPagination, GeneratorProfile, GeneratorSource,
    HttpPullSource, HttpPushSource, NumberedPagination, Pagination, PullWindow, PushAuth,
    PushAuthType, SecretReference, SourceKind, SourceSpec, TimeFormat,
};
pub use tls::{CaSecretRef, ClientCertSecretRef};

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::StreamPipelineStatus;

/// The API group of millrace's resources.
pub const GROUP: &str = "millrace.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// The suffix of a topic's default dead-letter topic.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// A pipeline that ingests JSON records (pulled from an HTTP API, pushed to
/// an endpoint, or generated), buffers them in a Kafka topic and writes them
/// as rows of a Cassandra table.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "millrace.io",
    version = "v1alpha1",
    kind = "StreamPipeline",
    plural = "streampipelines",
    shortname = "sp",
    category = "millrace",
    namespaced,
    status = "StreamPipelineStatus",
    derive = "PartialEq",
    doc = "A StreamPipeline ingests JSON records (pulled from an HTTP API, pushed to an endpoint, or generated), buffers them in a Kafka topic, and writes them as rows of a Cassandra table.",
    selectable = ".spec.kafka.topic.name",
    // `kubectl scale sp/NAME --replicas=N`, an HPA or KEDA set the sink's
    // replicas; the operator fills the status paths from the sink
    // Deployment.
    scale(
        spec_replicas_path = ".spec.runner.sinkReplicas",
        status_replicas_path = ".status.runner.sinkReplicas",
        label_selector_path = ".status.runner.sinkSelector"
    ),
    // The operator names the runner's Deployments and Service after the
    // pipeline with a suffix, and a Service name must be a DNS-1035 label.
    validation = Rule::new(format!(
        "self.metadata.name.matches('{}') && size(self.metadata.name) <= {}",
        patterns::DNS_1035_LABEL,
        limits::PIPELINE_NAME_MAX
    ))
    .message("the StreamPipeline's name must start with a letter, contain only lower-case letters, digits and '-', and be at most 50 characters (the runner's Service and Deployments are named after it)"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the pipeline moves records end to end"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why the pipeline is or is not ready"
    ),
    printcolumn(
        name = "Topic",
        type_ = "string",
        json_path = ".status.topic.name",
        description = "The Kafka topic that buffers records"
    ),
    printcolumn(
        name = "Table",
        type_ = "string",
        json_path = ".status.table.qualifiedName",
        description = "The Cassandra table rows are written to, as keyspace.table"
    ),
    printcolumn(
        name = "Sink lag",
        type_ = "integer",
        json_path = ".status.flow.sinkLag",
        description = "Records in the topic the sink has not written yet"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Rows",
        type_ = "integer",
        json_path = ".status.flow.rowsWritten",
        description = "Rows written to Cassandra",
        priority = 1
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.flow.rowsFailed",
        description = "Records sent to the dead-letter topic",
        priority = 1
    ),
    printcolumn(
        name = "Ingest",
        type_ = "integer",
        json_path = ".status.runner.ingestReadyReplicas",
        description = "Ready ingest replicas",
        priority = 1
    ),
    printcolumn(
        name = "Sink",
        type_ = "integer",
        json_path = ".status.runner.sinkReadyReplicas",
        description = "Ready sink replicas",
        priority = 1
    ),
    printcolumn(
        name = "Suspended",
        type_ = "boolean",
        json_path = ".spec.suspend",
        description = "Whether ingest and sink are stopped",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].message"#,
        description = "Details of the Ready condition",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.deadLetter) || !has(self.deadLetter.topic) || self.deadLetter.topic != self.kafka.topic.name"
    )
    .message("deadLetter.topic must differ from kafka.topic.name")
    .field_path(".deadLetter.topic"),
    validation = Rule::new(
        "(has(self.deadLetter) && has(self.deadLetter.topic)) || size(self.kafka.topic.name) <= 245"
    )
    .message("kafka.topic.name is too long to append '.dlq' for the dead-letter topic: shorten it or set deadLetter.topic")
    .field_path(".kafka.topic.name"),
    // Every source produces JSON: on a topic the sink reads as Avro, each
    // record a source produced would be dead-lettered.
    validation = Rule::new(
        "!has(self.format) || !has(self.format.type) || self.format.type != 'avro' || !has(self.sources) || size(self.sources) == 0"
    )
    .message("format.type avro takes no sources: httpPush, httpPull and generator produce JSON, which the sink would not read; let Avro producers write the topic, or use format json")
    .field_path(".sources")
)]
pub struct StreamPipelineSpec {
    /// Stops ingest and sink (their Deployments scale to zero) while keeping
    /// the topic, the table and their data.
    #[serde(default)]
    pub suspend: bool,

    /// What happens to the topic and the table when the StreamPipeline is
    /// deleted: `Retain` (default) keeps them and their data, `Delete` drops
    /// them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// The Kafka cluster and the topic that buffers records.
    pub kafka: KafkaSpec,

    /// How the records on the topic are encoded: JSON (default) or Avro
    /// with a Schema Registry. The column mapping reads either alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatSpec>,

    /// The Cassandra cluster, keyspace and table rows are written to.
    pub cassandra: CassandraSpec,

    /// Where records come from. Names are unique. A pipeline without
    /// sources writes whatever other producers put on its topic.
    #[serde(default)]
    #[schemars(length(max = limits::SOURCES_MAX))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    // Unique names are the list's map key, refused by the apiserver itself
    // (as for a table's columns).
    #[x_kube(
        validation = Rule::new(
            "self.all(s, !has(s.httpPush) || self.exists_one(t, has(t.httpPush) && t.httpPush.path == s.httpPush.path))"
        )
        .message("two httpPush sources cannot share a path")
    )]
    pub sources: Vec<SourceSpec>,

    /// The runner Deployments: image, replicas, resources and tuning.
    #[serde(default)]
    pub runner: RunnerSpec,

    /// Where records that cannot be written go, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
}

/// What happens to the topic and the table when the StreamPipeline goes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// Where records that cannot be written go.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSpec {
    /// Dead-letter topic. Unset: the pipeline's topic name followed by
    /// `.dlq`. The operator creates it with the topic's partitions and
    /// replication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::TOPIC_NAME_MAX))]
    #[x_kube(validation = Rule::new(format!(
        "self.matches('{}') && self != '.' && self != '..'",
        patterns::KAFKA_TOPIC
    ))
    .message("must be a Kafka topic name: letters, digits, '.', '_' or '-', and neither '.' nor '..'"))]
    pub topic: Option<String>,
}

impl StreamPipelineSpec {
    /// The dead-letter topic: the declared one, or the topic's name followed
    /// by `.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .as_ref()
            .and_then(|dl| dl.topic.clone())
            .unwrap_or_else(|| format!("{}{DEAD_LETTER_SUFFIX}", self.kafka.topic.name))
    }

    /// The Schema Registry of an Avro pipeline; `None` for JSON.
    pub fn avro_registry(&self) -> Option<&SchemaRegistrySpec> {
        self.format.as_ref().and_then(FormatSpec::avro_registry)
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&SourceSpec> {
        self.sources.iter().find(|s| s.name == name)
    }
}

impl TableSpec {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Names of the primary key's columns: partition key, then clustering key.
    pub fn primary_key(&self) -> impl Iterator<Item = &str> {
        self.partition_key
            .iter()
            .map(String::as_str)
            .chain(self.clustering_key.iter().map(|c| c.name.as_str()))
    }
}
