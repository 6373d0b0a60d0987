//! What a failed check reports: each problem with the field it is about.

use std::fmt;

use crate::cql_type::CqlTypeError;
use crate::json_pointer::JsonPointerError;
use crate::schedule::ScheduleError;
use crate::template::TemplateError;

/// Everything wrong with a spec, each problem with the field it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    /// The problems, in the order of the spec's fields.
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid StreamPipeline: {one}"),
            many => {
                write!(f, "invalid StreamPipeline ({} problems): ", many.len())?;
                for (i, problem) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

/// One problem, and the field it is about (`spec.cassandra.table.name`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecProblem {
    /// Path of the field, as `kubectl explain` spells it.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("set table (one table) or tables (one or more), not both")]
    TableAndTables,
    #[error("set table (one table) or tables (one or more): the pipeline has nowhere to write")]
    NoTable,
    #[error("table {0} is listed more than once")]
    DuplicateTable(String),
    #[error(
        "table {table} takes its write time differently from the first table, {first}: a record has one write time, so every table must declare the same writeTime (or none)"
    )]
    WriteTimeDiffers { table: String, first: String },
    #[error(
        "format.type avro takes no sources: httpPush, httpPull and generator produce JSON, which the sink would not read; let Avro producers write the topic, or use format json"
    )]
    SourcesWithAvro,
    #[error("format.type avro needs format.schemaRegistry, where the writer schemas are")]
    AvroWithoutRegistry,
    #[error("format.schemaRegistry is only read for format.type avro")]
    RegistryWithoutAvro,
    #[error(
        "{0:?} is not a CQL identifier: it must start with a letter and have only letters, digits and underscores, at most 48 characters"
    )]
    CqlIdentifier(String),
    #[error(
        "{0:?} is not a Kafka topic name: it must be 1 to 249 letters, digits, '.', '_' or '-', and not '.' or '..'"
    )]
    TopicName(String),
    #[error(
        "{0:?} is not a valid name: use lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
    )]
    DnsLabel(String),
    #[error(
        "{0:?} is not a valid StreamPipeline name: it must start with a letter, have only lower-case letters, digits and '-', and be at most 50 characters"
    )]
    PipelineName(String),
    #[error("{0:?} is not a valid Secret name")]
    SecretName(String),
    #[error("{0:?} is not a valid key of a Secret: use letters, digits, '-', '_' and '.'")]
    SecretKey(String),
    #[error(
        "{0:?} is not a valid Kafka configuration name: use lower-case letters, digits and '.'"
    )]
    TopicConfigName(String),
    #[error(
        "credentialsSecretRef holds a SASL login, so its securityProtocol is SASL_SSL or SASL_PLAINTEXT, not {0}; for TLS without a login, set spec.kafka.tls and no credentialsSecretRef"
    )]
    LoginWithoutSasl(String),
    #[error(
        "spec.kafka.tls asks for TLS, but credentialsSecretRef.securityProtocol is SASL_PLAINTEXT; use SASL_SSL"
    )]
    TlsWithPlaintextLogin,
    #[error("the CA is given twice: set tls.caSecretRef or credentialsSecretRef.caKey, not both")]
    CaGivenTwice,
    #[error(
        "caKey names a CA for TLS, which SASL_PLAINTEXT does not use; use SASL_SSL or remove caKey"
    )]
    CaWithoutTls,
    #[error(
        "config is what millrace sets on a topic it manages; with managed: false the topic is used as it is, so set its config where it is managed (for example its Strimzi KafkaTopic)"
    )]
    ConfigOfUnmanagedTopic,
    #[error("must differ from kafka.topic.name ({0:?})")]
    DeadLetterIsTopic(String),
    #[error(
        "{0:?} is not a comma-separated list of host:port, such as kafka-0.kafka:9092,kafka-1.kafka:9092"
    )]
    BootstrapServers(String),
    #[error("{0:?} is not host or host:port, such as cassandra.db.svc:9042")]
    ContactPoint(String),
    #[error("{0:?} is not a datacenter name: use letters, digits, '.', '_' and '-'")]
    Datacenter(String),
    #[error("SimpleStrategy takes replicationFactor and not dataCenters")]
    SimpleStrategyFields,
    #[error(
        "NetworkTopologyStrategy takes dataCenters (a replication factor per datacenter) and not replicationFactor"
    )]
    NetworkTopologyFields,
    #[error("column {0:?} is declared more than once")]
    DuplicateColumn(String),
    #[error("{0:?} is not the name of a column in columns")]
    UnknownColumn(String),
    #[error("partitionKey must name at least one column")]
    NoPartitionKey,
    #[error("column {0:?} appears more than once in the primary key")]
    RepeatedKeyColumn(String),
    #[error("column {column:?} is {cql_type}; primary key columns cannot be list, set or map")]
    CollectionInKey { column: String, cql_type: String },
    #[error(transparent)]
    CqlType(#[from] CqlTypeError),
    #[error(
        "set exactly one of from, template, wholeRecord: true, fromKafka or fromHeader ({0} are set)"
    )]
    ColumnSourceCount(usize),
    #[error(
        "fromKafka: timestamp is always milliseconds since the epoch (Kafka's own unit); remove unit"
    )]
    UnitOfKafkaTimestamp,
    #[error(
        "fromKafka: timestamp gives milliseconds since the epoch, for a timestamp, bigint or text column, not {0}"
    )]
    KafkaTimestampType(String),
    #[error(
        "{0:?} is not a Kafka header name: it must be 1 to 249 characters, none of them control characters"
    )]
    KafkaHeaderName(String),
    #[error(
        "partition key column {0:?} reads the Kafka record ({1}), but this pipeline's sources key each record by its partition key, which they read from the record's value; take it from the value (from or template)"
    )]
    PartitionKeyFromKafka(String, &'static str),
    #[error(
        "writeTime reads a field of the record before the sink writes it, which it can do for JSON records only; remove writeTime, or use format json"
    )]
    WriteTimeWithAvro,
    #[error(
        "keyOnly deletes a record that has no value for any column but the key; every Avro record has every field, so use a marker with format avro"
    )]
    KeyOnlyWithAvro,
    #[error(
        "keyOnly cannot tell a key-only record in a table whose column {0:?} holds the whole record; use a marker"
    )]
    KeyOnlyWithWholeRecord(String),
    #[error(
        "keyOnly would delete every record: no column outside the primary key reads the record's value"
    )]
    KeyOnlyWithoutValueColumns,
    #[error(transparent)]
    Pointer(#[from] JsonPointerError),
    #[error("from must point into the record; use wholeRecord: true for the whole record")]
    RootPointer,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("a wholeRecord column holds JSON text, so its type must be text, not {0}")]
    WholeRecordNotText(String),
    #[error(
        "unit says how numbers are read into a timestamp, so it needs a timestamp column (or a collection of timestamps), not {0}"
    )]
    UnitWithoutTimestamp(String),
    #[error("set exactly one of httpPull, httpPush or generator ({0} are set)")]
    SourceKindCount(usize),
    #[error("source name {0:?} is used more than once")]
    DuplicateSource(String),
    #[error("path {0:?} is used by more than one httpPush source")]
    DuplicatePushPath(String),
    #[error(
        "{0:?} is not an HTTP path: it must start with '/' and have only letters, digits and / . _ ~ -"
    )]
    PushPath(String),
    #[error(
        "tokensSecretRef is only for auth type BearerToken; type None accepts pushes without tokens, and type ClientCertificate checks the client's certificate instead"
    )]
    TokensWithoutAuthentication,
    #[error("allowedDnsNames is only for auth type ClientCertificate")]
    AllowedNamesWithoutClientCertificate,
    #[error("{0:?} is not a DNS name a client certificate can be checked for")]
    DnsName(String),
    #[error(
        "auth type ClientCertificate needs spec.runner.pushTls with clientCaSecretRef: the CA that issues the clients' certificates"
    )]
    ClientCertificateWithoutCa,
    #[error(
        "pushTls secures the push endpoint, and no source is httpPush: remove it, or add an httpPush source"
    )]
    PushTlsWithoutPush,
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Paging(#[from] crate::pull_paging::PagingError),
    #[error("schemaRegistry.tls is for an https url: the sink would send the registry plain HTTP")]
    RegistryTlsWithoutHttps,
    #[error("no httpPull source is named {0:?}: a backfill annotation names the source it pulls")]
    BackfillAnnotationSource(String),
    #[error(
        "not a backfill ({0}): write {{\"from\": \"2026-01-01T00:00:00Z\", \"to\": \"2026-01-02T00:00:00Z\"}}, optionally with \"windowSize\": \"1h\""
    )]
    BackfillAnnotationValue(String),
    #[error("{0:?} is not an absolute http or https URL")]
    Url(String),
    #[error("{0:?} is not a valid HTTP header name")]
    HeaderName(String),
    #[error("the value of header {0:?} has a line break or control character")]
    HeaderValue(String),
    #[error("{value} is outside the allowed range {min} to {max}")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("has {len} entries; at most {max} are allowed")]
    TooMany { len: usize, max: usize },
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error("minReplicas ({min}) must not exceed maxReplicas ({max})")]
    MinAboveMax { min: i32, max: i32 },
    #[error(
        "maxRecords ({max_records}) must not exceed spec.runner.maxInFlight ({max_in_flight}): every record read for a batch holds one of the writes in flight"
    )]
    BatchAboveInFlight {
        max_records: i32,
        max_in_flight: i32,
    },
    #[error("cannot change from {old:?} to {new:?}: {why}")]
    Immutable {
        old: String,
        new: String,
        why: &'static str,
    },
}
