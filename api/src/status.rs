//! What the operator and the runner report about a pipeline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of a StreamPipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamPipelineStatus {
    /// The `metadata.generation` this status describes. Older than the
    /// current generation: the operator has not acted on the latest spec yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Standard conditions: `Ready` sums up the others (`SpecValid`,
    /// `TopicReady`, `TableReady`, `IngestReady`, `SinkReady`). A spec that
    /// cannot be honoured shows `reason: NotSupported` with what to change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The Kafka topic as found on the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicStatus>,

    /// The Cassandra table as found in the cluster's schema; with
    /// `spec.cassandra.tables`, the first (the one that keys the records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableStatus>,

    /// Every table the spec declares, as found in the cluster's schema, in
    /// the spec's order (`table` is the first of them). Only for a spec
    /// with `tables`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableStatus>,

    /// The runner's Deployments and Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerStatus>,

    /// How records are flowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowStatus>,

    /// The last dead-letter replay asked for with the annotation
    /// `millrace.io/replay-dead-letters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_replay: Option<DeadLetterReplayStatus>,

    /// The sink's autoscaler (`spec.runner.autoscale`): its last decision
    /// and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoscaleStatus>,
}

/// What the autoscaler decided last, from the sink's lag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscaleStatus {
    /// Replicas the operator gives the sink Deployment.
    pub replicas: i32,

    /// Replicas the last measured lag asks for, within the bounds: the
    /// sink gets them at once when more, after the cool-down when fewer.
    pub desired_replicas: i32,

    /// When `replicas` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,

    /// Since when the lag has asked for fewer replicas than the sink has,
    /// without a break; empty when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_pending_since: Option<Time>,

    /// The most replicas the lag asked for since `scaleDownPendingSince`:
    /// what the sink is scaled down to once the cool-down has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_to: Option<i32>,

    /// The last decision: `ScaledUp`, `ScaledDown`, `ScaleHeldBack`,
    /// `CoolingDown` (fewer replicas wanted, waiting out the cool-down) or
    /// `Steady`.
    pub reason: String,

    /// The decision with the figures it was made on.
    pub message: String,
}

/// A dead-letter replay, as the sink's replay group has committed it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterReplayStatus {
    /// The token of the replay (the annotation's value).
    pub token: String,

    /// `Running` until every partition of the dead-letter topic is replayed
    /// up to where it ended when the replay began, then `Done`.
    pub state: ReplayState,

    /// Dead letters this replay wrote to the table.
    #[serde(default)]
    pub replayed: i64,

    /// Dead letters that failed again: they are back on the dead-letter
    /// topic, after the replayed part, for a later replay.
    #[serde(default)]
    pub failed_again: i64,

    /// Dead letters this replay has still to read.
    #[serde(default)]
    pub remaining: i64,

    /// Why the annotation's value was refused, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a replay is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReplayState {
    #[default]
    Running,
    Done,
    /// The annotation's value is not a token; nothing is replayed.
    Refused,
}

/// The topic as found on the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// Topic name.
    pub name: String,

    /// Partitions the topic has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,

    /// Topic that receives records that could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,

    /// When the topic or the dead-letter topic was last found deleted
    /// outside millrace and was created again, empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreated: Option<Time>,
}

/// The table as found in the cluster's schema.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    /// Keyspace name.
    pub keyspace: String,

    /// Table name.
    pub name: String,

    /// `keyspace.table`, for display.
    pub qualified_name: String,

    /// The table's columns and their CQL types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnStatus>,

    /// When the table was last found dropped outside millrace and was
    /// created again, empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recreated: Option<Time>,
}

impl TableStatus {
    /// A table status with its qualified name filled in.
    pub fn new(keyspace: &str, name: &str, columns: Vec<ColumnStatus>) -> Self {
        Self {
            keyspace: keyspace.to_owned(),
            name: name.to_owned(),
            qualified_name: format!("{keyspace}.{name}"),
            columns,
            recreated: None,
        }
    }
}

/// A column of the table.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnStatus {
    /// Column name.
    pub name: String,

    /// CQL type, as Cassandra reports it.
    #[serde(rename = "type")]
    pub type_: String,
}

/// The runner's Deployments and Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerStatus {
    /// Name of the ingest Deployment; absent while the pipeline has no
    /// sources (then it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_deployment: Option<String>,

    /// Name of the sink Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_deployment: Option<String>,

    /// Name of the Service that receives pushed records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,

    /// Ready replicas of the ingest Deployment; absent while the pipeline
    /// has no sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_ready_replicas: Option<i32>,

    /// Ready replicas of the sink Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_ready_replicas: Option<i32>,

    /// Replicas of the sink Deployment (its Pods, ready or not): the
    /// scale subresource's current replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_replicas: Option<i32>,

    /// The label selector of the sink's Pods, as text: the scale
    /// subresource's selector, for an HPA's Pod metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_selector: Option<String>,
}

/// How records are flowing, read from Kafka: the topic's high watermarks
/// and the sink's committed offsets, whose metadata counts the records the
/// sink dead-lettered. So the totals are exact, are the same whichever sink
/// replica wrote, and survive restarts and rebalances. Refreshed at most
/// every 30 seconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlowStatus {
    /// Records on the topic the sink has not written yet, summed over
    /// partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_lag: Option<i64>,

    /// Records written to the topic since it was created, by the sources
    /// or any other producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_ingested: Option<i64>,

    /// Records the sink wrote to Cassandra (upserts: a key written twice
    /// counts twice, and is one row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_written: Option<i64>,

    /// Records the sink sent to the dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_failed: Option<i64>,

    /// Records the topic's retention deleted before the sink read them:
    /// lost to the table. Raise the topic's `retention.ms`, or find why
    /// the sink fell that far behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_skipped: Option<i64>,

    /// When `recordsSkipped` last grew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skip: Option<Time>,

    /// Tries of the sink's writes that Cassandra timed out or refused as
    /// overloaded (each was retried), from the sink's commits; empty while
    /// there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_timeouts: Option<i64>,

    /// When, between two refreshes, more than 1 in 100 of the records the
    /// sink handled met such a timeout: Cassandra was the bottleneck, and
    /// the autoscaler adds no replicas for a minute after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_overload: Option<Time>,

    /// Rows written per second between the last two refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_second: Option<i64>,

    /// When the sink last moved its committed offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_progressed: Option<Time>,

    /// The last run of each `httpPull` source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["source"]))]
    pub last_pulls: Vec<PullStatus>,

    /// When these numbers were measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Time>,
}

/// The last run of a pull source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullStatus {
    /// Name of the source.
    pub source: String,

    /// When the run started.
    pub time: Time,

    /// Whether the run fetched and produced its records.
    pub succeeded: bool,

    /// Records the run produced to Kafka.
    #[serde(default)]
    pub records: i64,

    /// Why the run failed, when it did; a run that stopped at `maxPages`
    /// or ran a backfill's windows says so, with the backfill's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Condition types a StreamPipeline reports.
pub mod condition_type {
    /// The pipeline moves records end to end.
    pub const READY: &str = "Ready";
    /// The spec passed the operator's validation.
    pub const SPEC_VALID: &str = "SpecValid";
    /// The topic and the dead-letter topic exist as declared.
    pub const TOPIC_READY: &str = "TopicReady";
    /// The keyspace and the table exist as declared.
    pub const TABLE_READY: &str = "TableReady";
    /// The ingest Deployment is available.
    pub const INGEST_READY: &str = "IngestReady";
    /// The sink Deployment is available.
    pub const SINK_READY: &str = "SinkReady";
    /// Records reach the table: the sink keeps up and writes what it
    /// reads, and pulls succeed.
    pub const FLOWING: &str = "Flowing";
}

/// Reasons of the autoscaler's decisions (`status.autoscale.reason`, and
/// the Events of the decisions that change or hold back the replicas).
pub mod autoscale_reason {
    /// The lag asked for more replicas; the sink got them.
    pub const SCALED_UP: &str = "ScaledUp";
    /// The lag asked for fewer replicas for the whole cool-down.
    pub const SCALED_DOWN: &str = "ScaledDown";
    /// The lag asks for more replicas, but Cassandra is the bottleneck.
    pub const SCALE_HELD_BACK: &str = "ScaleHeldBack";
    /// The lag asks for fewer replicas; the cool-down has not passed.
    pub const COOLING_DOWN: &str = "CoolingDown";
    /// The sink has the replicas the lag asks for.
    pub const STEADY: &str = "Steady";
}

/// Reasons the operator gives in conditions.
pub mod condition_reason {
    /// Everything is as declared.
    pub const RECONCILED: &str = "Reconciled";
    /// The spec asks for something that cannot be done (fewer partitions, a
    /// changed primary key or column type).
    pub const NOT_SUPPORTED: &str = "NotSupported";
    /// The spec failed validation.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The pipeline is suspended.
    pub const SUSPENDED: &str = "Suspended";
    /// Work is under way (creating, scaling, waiting for replicas).
    pub const PROGRESSING: &str = "Progressing";
    /// Kafka, Cassandra or the Kubernetes API could not be reached.
    pub const UNAVAILABLE: &str = "Unavailable";
    /// The topic, dead-letter topic or table belongs to another pipeline.
    pub const RESOURCE_CONFLICT: &str = "ResourceConflict";
    /// The sink has lag and has committed nothing for a while.
    pub const SINK_STALLED: &str = "SinkStalled";
    /// More than a tenth of the records the sink handled went to the
    /// dead-letter topic.
    pub const DEAD_LETTERING: &str = "DeadLettering";
    /// A pull source's last run failed.
    pub const PULL_FAILING: &str = "PullFailing";
    /// Retention deleted records before the sink read them.
    pub const RECORDS_SKIPPED: &str = "RecordsSkipped";
    /// Records reach the table.
    pub const FLOWING: &str = "Flowing";
    /// An Event: a push source accepts pushes without authentication
    /// (`auth.type: None`).
    pub const UNAUTHENTICATED_PUSH: &str = "UnauthenticatedPush";
}
