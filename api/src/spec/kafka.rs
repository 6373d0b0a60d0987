//! Where records are buffered: the Kafka cluster and the pipeline's topic.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{limits, patterns};

/// The Kafka cluster and the topic that buffers records between ingest and sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of Kafka brokers to bootstrap from,
    /// for example `kafka.kafka.svc:9092`.
    #[schemars(length(min = 1, max = 1024), pattern(patterns::BOOTSTRAP_SERVERS))]
    pub bootstrap_servers: String,

    /// Secret holding SASL credentials (and optionally a CA certificate) for
    /// the brokers. Without it, millrace connects in plaintext without
    /// authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<KafkaCredentials>,

    /// The topic records are written to. The operator creates it if it is
    /// missing and keeps its partitions and configuration as declared.
    pub topic: TopicSpec,
}

/// A Secret with the SASL username and password millrace uses for Kafka.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaCredentials {
    /// Name of the Secret, in the StreamPipeline's namespace.
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key in the Secret whose value is the SASL username.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub username_key: String,

    /// Key in the Secret whose value is the SASL password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub password_key: String,

    /// Key in the Secret whose value is a PEM bundle of CA certificates to
    /// trust for TLS. When unset, the system's trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub ca_key: Option<String>,

    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default)]
    pub mechanism: SaslMechanism,

    /// Kafka security protocol: `SASL_SSL` (default), `SASL_PLAINTEXT`,
    /// `SSL` or `PLAINTEXT`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
}

fn default_username_key() -> String {
    "username".to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}

/// SASL mechanism used to authenticate to Kafka.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka and the Kafka protocol use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How the connection to Kafka is secured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[default]
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The name librdkafka's `security.protocol` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// The Kafka topic between ingest and sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name: letters, digits, `.`, `_` and `-`, at most 249
    /// characters, and neither `.` nor `..`.
    #[schemars(length(min = 1, max = limits::TOPIC_NAME_MAX))]
    #[x_kube(validation = Rule::new(format!(
        "self.matches('{}') && self != '.' && self != '..'",
        patterns::KAFKA_TOPIC
    ))
    .message("must be a Kafka topic name: letters, digits, '.', '_' or '-', and neither '.' nor '..'"))]
    pub name: String,

    /// Number of partitions. It bounds how many sink replicas can work in
    /// parallel. Kafka can add partitions but never remove them, so a lower
    /// number than the topic has is reported as not supported.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = limits::PARTITIONS.0, max = limits::PARTITIONS.1))]
    pub partitions: i32,

    /// Number of copies of each partition across brokers. Only used when the
    /// topic is created.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = limits::TOPIC_REPLICATION_FACTOR.0, max = limits::TOPIC_REPLICATION_FACTOR.1))]
    pub replication_factor: i32,

    /// Topic configuration entries, for example `retention.ms: "604800000"`.
    /// The operator sets these on the topic and leaves other entries alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = limits::TOPIC_CONFIG_MAX))]
    pub config: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

impl TopicSpec {
    /// A topic with the defaults for everything but its name.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            config: BTreeMap::new(),
        }
    }
}
