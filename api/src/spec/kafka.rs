//! Where records are buffered: the Kafka cluster and the pipeline's topic.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tls::{CaSecretRef, ClientCertSecretRef};
use super::{limits, patterns};

/// The Kafka cluster and the topic that buffers records between ingest and sink.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.securityProtocol) || self.credentialsSecretRef.securityProtocol in ['SASL_SSL', 'SASL_PLAINTEXT']")
        .message("credentialsSecretRef holds a SASL login, so its securityProtocol is SASL_SSL or SASL_PLAINTEXT; for TLS without a login, set spec.kafka.tls and no credentialsSecretRef")
        .field_path(".credentialsSecretRef.securityProtocol"),
    validation = Rule::new("!has(self.tls) || !has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.securityProtocol) || self.credentialsSecretRef.securityProtocol != 'SASL_PLAINTEXT'")
        .message("spec.kafka.tls asks for TLS, but credentialsSecretRef.securityProtocol is SASL_PLAINTEXT; use SASL_SSL")
        .field_path(".credentialsSecretRef.securityProtocol"),
    validation = Rule::new("!has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.caKey) || !has(self.tls) || !has(self.tls.caSecretRef)")
        .message("the CA is given twice: set tls.caSecretRef or credentialsSecretRef.caKey, not both")
        .field_path(".credentialsSecretRef.caKey"),
    validation = Rule::new("!has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.caKey) || !has(self.credentialsSecretRef.securityProtocol) || self.credentialsSecretRef.securityProtocol != 'SASL_PLAINTEXT'")
        .message("caKey names a CA for TLS, which SASL_PLAINTEXT does not use; use SASL_SSL or remove caKey")
        .field_path(".credentialsSecretRef.caKey"),
)]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of Kafka brokers to bootstrap from,
    /// for example `kafka.kafka.svc:9092`.
    #[schemars(length(min = 1, max = 1024), pattern(patterns::BOOTSTRAP_SERVERS))]
    pub bootstrap_servers: String,

    /// TLS to the brokers: `SSL`, or `SASL_SSL` with `credentialsSecretRef`.
    /// Every client of the cluster uses it: the operator's and both runner
    /// roles'. Without it (and without `credentialsSecretRef`), millrace
    /// connects in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,

    /// Secret holding the SASL login for the brokers. Without it, millrace
    /// does not authenticate with SASL (a client certificate in `tls` may
    /// still identify it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<KafkaCredentials>,

    /// The topic records are written to. The operator creates it if it is
    /// missing and keeps its partitions and configuration as declared.
    pub topic: TopicSpec,
}

/// TLS to the Kafka brokers. The brokers' names are checked against their
/// certificates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// The CA bundle that signed the brokers' certificates. Unset: the
    /// system's trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaSecretRef>,

    /// A client certificate and key for mutual TLS, such as the Secret
    /// Strimzi writes for a KafkaUser with `tls` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<ClientCertSecretRef>,
}

/// A Secret with the SASL username and password millrace uses for Kafka.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaCredentials {
    /// Name of the Secret, in the StreamPipeline's namespace.
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key in the Secret whose value is the SASL username. When this is
    /// `username` (the default) and the Secret has no such key, the user
    /// name is the Secret's name: the Secret Strimzi writes for a KafkaUser
    /// with `scram-sha-512` is named after the user and holds `password`.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub username_key: String,

    /// Key in the Secret whose value is the SASL password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub password_key: String,

    /// Key in the same Secret whose value is a PEM bundle of CA
    /// certificates to trust for `SASL_SSL` (or use `tls.caSecretRef`).
    /// When neither is set, the system's trust store is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub ca_key: Option<String>,

    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(default)]
    pub mechanism: SaslMechanism,

    /// `SASL_SSL` (default) or `SASL_PLAINTEXT`. (`SSL` and `PLAINTEXT`
    /// carry no login, so they are refused here: for TLS without a login,
    /// set `spec.kafka.tls` instead.)
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
}

/// The default `usernameKey`, the only one that may be missing from the
/// Secret (the user name is then the Secret's name).
pub const DEFAULT_USERNAME_KEY: &str = "username";

fn default_username_key() -> String {
    DEFAULT_USERNAME_KEY.to_owned()
}

impl KafkaCredentials {
    /// Whether the Secret may lack `usernameKey`.
    pub fn username_key_optional(&self) -> bool {
        self.username_key == DEFAULT_USERNAME_KEY
    }

    /// The SASL user name: the Secret's value under `usernameKey`, else
    /// (only for the default key) the Secret's name, as Strimzi names a
    /// KafkaUser's Secret after the user.
    pub fn username(&self, value: Option<String>) -> Option<String> {
        value
            .filter(|v| !v.is_empty())
            .or_else(|| self.username_key_optional().then(|| self.name.clone()))
    }
}

impl KafkaSpec {
    /// The protocol every client of the cluster uses: the login's, else
    /// `SSL` with `tls`, else `PLAINTEXT`.
    pub fn security_protocol(&self) -> SecurityProtocol {
        match (&self.credentials_secret_ref, &self.tls) {
            (Some(creds), _) => creds.security_protocol,
            (None, Some(_)) => SecurityProtocol::Ssl,
            (None, None) => SecurityProtocol::Plaintext,
        }
    }

    /// Where the CA bundle to trust is: `tls.caSecretRef`, else the
    /// login Secret's `caKey`.
    pub fn ca_ref(&self) -> Option<CaSecretRef> {
        if let Some(ca) = self.tls.as_ref().and_then(|t| t.ca_secret_ref.clone()) {
            return Some(ca);
        }
        let creds = self.credentials_secret_ref.as_ref()?;
        Some(CaSecretRef {
            name: creds.name.clone(),
            key: creds.ca_key.clone()?,
        })
    }

    /// Every Secret the Kafka clients read: the login's, the CA's and the
    /// client certificate's.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        if let Some(r) = &self.credentials_secret_ref {
            names.push(&r.name);
        }
        if let Some(tls) = &self.tls {
            names.extend(tls.ca_secret_ref.as_ref().map(|r| r.name.as_str()));
            names.extend(tls.client_cert_secret_ref.as_ref().map(|r| r.name.as_str()));
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The client certificate for mutual TLS, if any.
    pub fn client_cert_ref(&self) -> Option<&ClientCertSecretRef> {
        self.tls.as_ref()?.client_cert_secret_ref.as_ref()
    }
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
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

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
#[x_kube(
    validation = Rule::new("!has(self.managed) || self.managed || !has(self.config) || size(self.config) == 0")
        .message("config is what millrace sets on a topic it manages; with managed: false the topic is used as it is, so set its config where it is managed (for example its Strimzi KafkaTopic)")
        .field_path(".config")
)]
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

    /// Whether millrace manages the topic and its dead-letter topic
    /// (default): creates them, adds partitions, sets `config`, and deletes
    /// them with `deletionPolicy: Delete`. With `false` both must exist and
    /// are used as they are, as with a topic another operator (Strimzi's
    /// Topic Operator) owns: millrace checks and reports them (`partitions`
    /// and `replicationFactor` are then expectations, a difference is
    /// reported) and never creates, alters or deletes them.
    #[serde(default = "default_managed")]
    pub managed: bool,
}

fn default_managed() -> bool {
    true
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
            managed: default_managed(),
        }
    }
}
