//! The operator's own check of a StreamPipeline spec.
//!
//! Admission (the CRD's OpenAPI schema and CEL rules) should already have
//! refused everything checked here. This module checks it all again, without
//! trusting that the CRD installed in the cluster is the current one or that
//! admission ran at all, because its names end up in CQL statements and
//! Kafka admin requests. Identifiers are restricted to letters, digits and
//! underscores, and are still quoted by [`quote_cql_identifier`] wherever
//! they are written into CQL, so a reserved word such as `select` is a valid,
//! safely quoted column name.
//!
//! A few checks go further than admission can: cron fields that cannot
//! fire (`0 0 31 2 *`), backwards ranges, header values and topic
//! configuration names.

use std::collections::BTreeSet;
use std::fmt;

use crate::cql_type::{CqlType, CqlTypeError};
use crate::json_pointer::{JsonPointer, JsonPointerError};
use crate::schedule::{Schedule, ScheduleError};
use crate::spec::{
    CassandraSpec, ColumnSpec, HttpPullSource, KafkaSpec, ReplicationClass, RunnerSpec, SourceSpec,
    StreamPipelineSpec, TableSpec, limits,
};
use crate::template::{Template, TemplateError};

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
    #[error("set exactly one of from, template or wholeRecord: true ({0} are set)")]
    ColumnSourceCount(usize),
    #[error(transparent)]
    Pointer(#[from] JsonPointerError),
    #[error("from must point into the record; use wholeRecord: true for the whole record")]
    RootPointer,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("a wholeRecord column holds JSON text, so its type must be text, not {0}")]
    WholeRecordNotText(String),
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
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
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
    #[error("cannot change from {old:?} to {new:?}: {why}")]
    Immutable {
        old: String,
        new: String,
        why: &'static str,
    },
}

/// Checks a spec, returning every problem found.
pub fn validate_spec(spec: &StreamPipelineSpec) -> Result<(), InvalidSpec> {
    let mut v = Problems::default();
    check_kafka(&mut v, &spec.kafka);
    if let Some(topic) = spec.dead_letter.as_ref().and_then(|dl| dl.topic.as_ref()) {
        let field = "spec.deadLetter.topic";
        if !is_topic_name(topic) {
            v.push(field, Problem::TopicName(topic.clone()));
        } else if *topic == spec.kafka.topic.name {
            v.push(field, Problem::DeadLetterIsTopic(topic.clone()));
        }
    } else if is_topic_name(&spec.kafka.topic.name) && !is_topic_name(&spec.dead_letter_topic()) {
        v.push(
            "spec.kafka.topic.name",
            Problem::TopicName(spec.dead_letter_topic()),
        );
    }
    check_cassandra(&mut v, &spec.cassandra);
    check_sources(&mut v, &spec.sources);
    check_runner(&mut v, &spec.runner);
    v.finish()
}

/// Checks a spec and its pipeline's name, which names the runner's objects.
pub fn validate_pipeline(name: &str, spec: &StreamPipelineSpec) -> Result<(), InvalidSpec> {
    let name_problem = (!is_pipeline_name(name)).then(|| SpecProblem {
        field: "metadata.name".to_owned(),
        problem: Problem::PipelineName(name.to_owned()),
    });
    match (name_problem, validate_spec(spec)) {
        (None, result) => result,
        (Some(problem), Ok(())) => Err(InvalidSpec {
            problems: vec![problem],
        }),
        (Some(problem), Err(mut invalid)) => {
            invalid.problems.insert(0, problem);
            Err(invalid)
        }
    }
}

/// Checks a changed spec: the new spec on its own, and that nothing that
/// cannot change after creation (keyspace and table names, primary key)
/// has changed.
pub fn validate_update(
    old: &StreamPipelineSpec,
    new: &StreamPipelineSpec,
) -> Result<(), InvalidSpec> {
    let mut v = Problems::default();
    let (old_c, new_c) = (&old.cassandra, &new.cassandra);
    const RENAME: &str =
        "Cassandra cannot rename it; create a new StreamPipeline to write elsewhere";
    const REKEY: &str = "Cassandra cannot change a table's primary key";
    if old_c.keyspace.name != new_c.keyspace.name {
        v.push(
            "spec.cassandra.keyspace.name",
            Problem::Immutable {
                old: old_c.keyspace.name.clone(),
                new: new_c.keyspace.name.clone(),
                why: RENAME,
            },
        );
    }
    if old_c.table.name != new_c.table.name {
        v.push(
            "spec.cassandra.table.name",
            Problem::Immutable {
                old: old_c.table.name.clone(),
                new: new_c.table.name.clone(),
                why: RENAME,
            },
        );
    }
    if old_c.table.partition_key != new_c.table.partition_key {
        v.push(
            "spec.cassandra.table.partitionKey",
            Problem::Immutable {
                old: old_c.table.partition_key.join(", "),
                new: new_c.table.partition_key.join(", "),
                why: REKEY,
            },
        );
    }
    if old_c.table.clustering_key != new_c.table.clustering_key {
        let show = |t: &TableSpec| {
            t.clustering_key
                .iter()
                .map(|c| format!("{} {}", c.name, c.order.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        v.push(
            "spec.cassandra.table.clusteringKey",
            Problem::Immutable {
                old: show(&old_c.table),
                new: show(&new_c.table),
                why: REKEY,
            },
        );
    }
    let immutables = v.finish();
    match (immutables, validate_spec(new)) {
        (Ok(()), result) => result,
        (Err(invalid), Ok(())) => Err(invalid),
        (Err(mut invalid), Err(more)) => {
            invalid.problems.extend(more.problems);
            Err(invalid)
        }
    }
}

/// Problems in a table's columns and keys; the row mapper compiles only a
/// table without any.
pub(crate) fn table_problems(table: &TableSpec, at: &str) -> Vec<SpecProblem> {
    let mut v = Problems::default();
    check_table(&mut v, table, at);
    v.problems
}

/// Quotes a CQL identifier: wraps it in double quotes and doubles any double
/// quote inside, so it is read as one identifier whatever it holds, and its
/// case is kept.
pub fn quote_cql_identifier(identifier: &str) -> String {
    let mut quoted = String::with_capacity(identifier.len() + 2);
    quoted.push('"');
    for c in identifier.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// Whether `name` is a CQL identifier millrace accepts: a letter, then up to
/// 47 letters, digits or underscores.
pub fn is_cql_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && name.len() <= limits::CQL_IDENTIFIER_MAX
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is a Kafka topic name.
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::TOPIC_NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_dns_label(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(inner)
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
}

fn is_pipeline_name(name: &str) -> bool {
    is_dns_label(name, limits::PIPELINE_NAME_MAX)
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

fn is_secret_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(|label| is_dns_label(label, 63))
}

fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

fn is_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn split_host_port(address: &str) -> Option<(&str, Option<&str>)> {
    // A bracketed IPv6 address has colons of its own.
    let host_end = if address.starts_with('[') {
        address.find(']')? + 1
    } else {
        address.find(':').unwrap_or(address.len())
    };
    let (host, rest) = address.split_at(host_end);
    match rest {
        "" => Some((host, None)),
        _ => Some((host, Some(rest.strip_prefix(':')?))),
    }
}

fn is_http_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    if url.len() > limits::URL_MAX || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match split_host_port(host_port) {
        Some((host, port)) => is_host(host) && port.is_none_or(is_port),
        None => false,
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[derive(Default)]
struct Problems {
    problems: Vec<SpecProblem>,
}

impl Problems {
    fn push(&mut self, field: impl Into<String>, problem: Problem) {
        self.problems.push(SpecProblem {
            field: field.into(),
            problem,
        });
    }

    fn range(&mut self, field: impl Into<String>, value: i64, (min, max): (i64, i64)) {
        if value < min || value > max {
            self.push(field, Problem::OutOfRange { value, min, max });
        }
    }

    fn count(&mut self, field: impl Into<String>, len: usize, max: usize) {
        if len > max {
            self.push(field, Problem::TooMany { len, max });
        }
    }

    fn identifier(&mut self, field: impl Into<String>, name: &str) {
        if !is_cql_identifier(name) {
            self.push(field, Problem::CqlIdentifier(name.to_owned()));
        }
    }

    fn finish(self) -> Result<(), InvalidSpec> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec {
                problems: self.problems,
            })
        }
    }
}

fn check_kafka(v: &mut Problems, kafka: &KafkaSpec) {
    let servers = &kafka.bootstrap_servers;
    let server_ok = |s: &str| matches!(split_host_port(s), Some((host, Some(port))) if is_host(host) && is_port(port));
    if servers.is_empty() || servers.len() > 1024 || !servers.split(',').all(server_ok) {
        v.push(
            "spec.kafka.bootstrapServers",
            Problem::BootstrapServers(servers.clone()),
        );
    }
    if let Some(creds) = &kafka.credentials_secret_ref {
        let at = "spec.kafka.credentialsSecretRef";
        if !is_secret_name(&creds.name) {
            v.push(
                format!("{at}.name"),
                Problem::SecretName(creds.name.clone()),
            );
        }
        let keys = [
            ("usernameKey", Some(&creds.username_key)),
            ("passwordKey", Some(&creds.password_key)),
            ("caKey", creds.ca_key.as_ref()),
        ];
        for (field, key) in keys {
            if let Some(key) = key.filter(|k| !is_secret_key(k)) {
                v.push(format!("{at}.{field}"), Problem::SecretKey(key.clone()));
            }
        }
    }
    let topic = &kafka.topic;
    if !is_topic_name(&topic.name) {
        v.push(
            "spec.kafka.topic.name",
            Problem::TopicName(topic.name.clone()),
        );
    }
    v.range(
        "spec.kafka.topic.partitions",
        topic.partitions.into(),
        limits::PARTITIONS,
    );
    v.range(
        "spec.kafka.topic.replicationFactor",
        topic.replication_factor.into(),
        limits::TOPIC_REPLICATION_FACTOR,
    );
    v.count(
        "spec.kafka.topic.config",
        topic.config.len(),
        limits::TOPIC_CONFIG_MAX,
    );
    for key in topic.config.keys() {
        let ok = !key.is_empty()
            && key.len() <= 255
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
        if !ok {
            v.push(
                "spec.kafka.topic.config",
                Problem::TopicConfigName(key.clone()),
            );
        }
    }
}

fn check_cassandra(v: &mut Problems, cassandra: &CassandraSpec) {
    let points = &cassandra.contact_points;
    if points.is_empty() {
        v.push("spec.cassandra.contactPoints", Problem::Empty);
    }
    v.count(
        "spec.cassandra.contactPoints",
        points.len(),
        limits::CONTACT_POINTS_MAX,
    );
    for (i, point) in points.iter().enumerate() {
        let ok = matches!(split_host_port(point), Some((host, port)) if is_host(host) && port.is_none_or(is_port));
        if !ok {
            v.push(
                format!("spec.cassandra.contactPoints[{i}]"),
                Problem::ContactPoint(point.clone()),
            );
        }
    }
    if !is_datacenter(&cassandra.local_datacenter) {
        v.push(
            "spec.cassandra.localDatacenter",
            Problem::Datacenter(cassandra.local_datacenter.clone()),
        );
    }
    if let Some(creds) = &cassandra.credentials_secret_ref {
        let at = "spec.cassandra.credentialsSecretRef";
        if !is_secret_name(&creds.name) {
            v.push(
                format!("{at}.name"),
                Problem::SecretName(creds.name.clone()),
            );
        }
        for (field, key) in [
            ("usernameKey", &creds.username_key),
            ("passwordKey", &creds.password_key),
        ] {
            if !is_secret_key(key) {
                v.push(format!("{at}.{field}"), Problem::SecretKey(key.clone()));
            }
        }
    }
    v.identifier("spec.cassandra.keyspace.name", &cassandra.keyspace.name);
    let replication = &cassandra.keyspace.replication;
    let at = "spec.cassandra.keyspace.replication";
    match replication.class {
        ReplicationClass::SimpleStrategy => {
            if replication.replication_factor.is_none() || replication.data_centers.is_some() {
                v.push(at, Problem::SimpleStrategyFields);
            }
        }
        ReplicationClass::NetworkTopologyStrategy => {
            let empty = replication
                .data_centers
                .as_ref()
                .is_none_or(|dcs| dcs.is_empty());
            if empty || replication.replication_factor.is_some() {
                v.push(at, Problem::NetworkTopologyFields);
            }
        }
    }
    if let Some(factor) = replication.replication_factor {
        v.range(
            format!("{at}.replicationFactor"),
            factor.into(),
            limits::KEYSPACE_REPLICATION_FACTOR,
        );
    }
    if let Some(dcs) = &replication.data_centers {
        v.count(
            format!("{at}.dataCenters"),
            dcs.len(),
            limits::DATACENTERS_MAX,
        );
        for (dc, factor) in dcs {
            if !is_datacenter(dc) {
                v.push(format!("{at}.dataCenters"), Problem::Datacenter(dc.clone()));
            }
            v.range(
                format!("{at}.dataCenters.{dc}"),
                (*factor).into(),
                limits::KEYSPACE_REPLICATION_FACTOR,
            );
        }
    }
    check_table(v, &cassandra.table, "spec.cassandra.table");
}

fn is_datacenter(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_table(v: &mut Problems, table: &TableSpec, at: &str) {
    v.identifier(format!("{at}.name"), &table.name);
    if table.columns.is_empty() {
        v.push(format!("{at}.columns"), Problem::Empty);
    }
    v.count(
        format!("{at}.columns"),
        table.columns.len(),
        limits::COLUMNS_MAX,
    );
    let mut seen = BTreeSet::new();
    for (i, column) in table.columns.iter().enumerate() {
        let at = format!("{at}.columns[{i}]");
        if !seen.insert(column.name.as_str()) {
            v.push(
                format!("{at}.name"),
                Problem::DuplicateColumn(column.name.clone()),
            );
        }
        check_column(v, column, &at);
    }

    if table.partition_key.is_empty() {
        v.push(format!("{at}.partitionKey"), Problem::NoPartitionKey);
    }
    v.count(
        format!("{at}.partitionKey"),
        table.partition_key.len(),
        limits::KEY_COLUMNS_MAX,
    );
    v.count(
        format!("{at}.clusteringKey"),
        table.clustering_key.len(),
        limits::KEY_COLUMNS_MAX,
    );
    let key_columns = table
        .partition_key
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("{at}.partitionKey[{i}]"), name))
        .chain(
            table
                .clustering_key
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{at}.clusteringKey[{i}].name"), &c.name)),
        );
    let mut in_key = BTreeSet::new();
    for (field, name) in key_columns {
        if !in_key.insert(name.as_str()) {
            v.push(field, Problem::RepeatedKeyColumn(name.clone()));
            continue;
        }
        match table.column(name) {
            None => v.push(field, Problem::UnknownColumn(name.clone())),
            Some(column) => {
                if let Ok(t) = column.type_.parse::<CqlType>()
                    && t.is_collection()
                {
                    v.push(
                        field,
                        Problem::CollectionInKey {
                            column: name.clone(),
                            cql_type: column.type_.clone(),
                        },
                    );
                }
            }
        }
    }
}

fn check_column(v: &mut Problems, column: &ColumnSpec, at: &str) {
    v.identifier(format!("{at}.name"), &column.name);
    let cql_type = column.type_.parse::<CqlType>();
    if let Err(e) = &cql_type {
        v.push(format!("{at}.type"), e.clone().into());
    }
    let whole_record = column.whole_record == Some(true);
    let sources = usize::from(column.from.is_some())
        + usize::from(column.template.is_some())
        + usize::from(whole_record);
    if sources != 1 {
        v.push(at.to_owned(), Problem::ColumnSourceCount(sources));
    }
    if let Some(from) = &column.from {
        if from.len() > limits::POINTER_MAX {
            v.push(
                format!("{at}.from"),
                Problem::TooLong {
                    max: limits::POINTER_MAX,
                },
            );
        }
        match JsonPointer::parse(from) {
            Ok(p) if p.is_root() => v.push(format!("{at}.from"), Problem::RootPointer),
            Ok(_) => {}
            Err(e) => v.push(format!("{at}.from"), e.into()),
        }
    }
    if let Some(template) = &column.template {
        if template.len() > limits::TEMPLATE_MAX {
            v.push(
                format!("{at}.template"),
                Problem::TooLong {
                    max: limits::TEMPLATE_MAX,
                },
            );
        }
        if let Err(e) = Template::parse(template) {
            v.push(format!("{at}.template"), e.into());
        }
    }
    if whole_record && cql_type.as_ref().is_ok_and(|t| *t != CqlType::Text) {
        v.push(
            format!("{at}.type"),
            Problem::WholeRecordNotText(column.type_.clone()),
        );
    }
}

fn check_sources(v: &mut Problems, sources: &[SourceSpec]) {
    v.count("spec.sources", sources.len(), limits::SOURCES_MAX);
    let mut names = BTreeSet::new();
    let mut push_paths = BTreeSet::new();
    for (i, source) in sources.iter().enumerate() {
        let at = format!("spec.sources[{i}]");
        if !is_dns_label(&source.name, limits::SOURCE_NAME_MAX) {
            v.push(format!("{at}.name"), Problem::DnsLabel(source.name.clone()));
        }
        if !names.insert(source.name.as_str()) {
            v.push(
                format!("{at}.name"),
                Problem::DuplicateSource(source.name.clone()),
            );
        }
        let kinds = usize::from(source.http_pull.is_some())
            + usize::from(source.http_push.is_some())
            + usize::from(source.generator.is_some());
        if kinds != 1 {
            v.push(at.clone(), Problem::SourceKindCount(kinds));
        }
        if let Some(pull) = &source.http_pull {
            check_http_pull(v, pull, &format!("{at}.httpPull"));
        }
        if let Some(push) = &source.http_push {
            let field = format!("{at}.httpPush.path");
            let path_ok = push.path.len() <= 256
                && push.path.starts_with('/')
                && push
                    .path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._~-".contains(&b));
            if !path_ok {
                v.push(field.clone(), Problem::PushPath(push.path.clone()));
            }
            if !push_paths.insert(push.path.as_str()) {
                v.push(field, Problem::DuplicatePushPath(push.path.clone()));
            }
            v.range(
                format!("{at}.httpPush.maxBodyBytes"),
                push.max_body_bytes,
                limits::MAX_BODY_BYTES,
            );
        }
        if let Some(generator) = &source.generator {
            v.range(
                format!("{at}.generator.recordsPerSecond"),
                generator.records_per_second.into(),
                limits::RECORDS_PER_SECOND,
            );
            if let Some(limit) = generator.limit {
                v.range(format!("{at}.generator.limit"), limit, (1, i64::MAX));
            }
        }
    }
}

fn check_http_pull(v: &mut Problems, pull: &HttpPullSource, at: &str) {
    if !is_http_url(&pull.url) {
        v.push(format!("{at}.url"), Problem::Url(pull.url.clone()));
    }
    if pull.schedule.len() > limits::SCHEDULE_MAX {
        v.push(
            format!("{at}.schedule"),
            Problem::TooLong {
                max: limits::SCHEDULE_MAX,
            },
        );
    } else if let Err(e) = Schedule::parse(&pull.schedule) {
        v.push(format!("{at}.schedule"), e.into());
    }
    if !pull.records_path.is_empty()
        && let Err(e) = JsonPointer::parse(&pull.records_path)
    {
        v.push(format!("{at}.recordsPath"), e.into());
    }
    v.count(
        format!("{at}.headers"),
        pull.headers.len(),
        limits::HEADERS_MAX,
    );
    for (name, value) in &pull.headers {
        if !is_header_name(name) {
            v.push(format!("{at}.headers"), Problem::HeaderName(name.clone()));
        }
        // A line break in a value would let the spec write its own headers
        // (or a request) into the HTTP stream.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            v.push(format!("{at}.headers"), Problem::HeaderValue(name.clone()));
        }
    }
    if let Some(secret) = &pull.headers_from_secret
        && !is_secret_name(&secret.name)
    {
        v.push(
            format!("{at}.headersFromSecret.name"),
            Problem::SecretName(secret.name.clone()),
        );
    }
    v.range(
        format!("{at}.timeoutSeconds"),
        pull.timeout_seconds.into(),
        limits::TIMEOUT_SECONDS,
    );
    v.range(
        format!("{at}.maxRetries"),
        pull.max_retries.into(),
        limits::MAX_RETRIES,
    );
}

fn check_runner(v: &mut Problems, runner: &RunnerSpec) {
    let at = "spec.runner";
    v.range(
        format!("{at}.ingestReplicas"),
        runner.ingest_replicas.into(),
        limits::REPLICAS,
    );
    v.range(
        format!("{at}.sinkReplicas"),
        runner.sink_replicas.into(),
        limits::REPLICAS,
    );
    v.range(
        format!("{at}.maxInFlight"),
        runner.max_in_flight.into(),
        limits::MAX_IN_FLIGHT,
    );
    v.range(
        format!("{at}.batch.maxRecords"),
        runner.batch.max_records.into(),
        limits::BATCH_MAX_RECORDS,
    );
    v.range(
        format!("{at}.batch.maxDelayMs"),
        runner.batch.max_delay_ms.into(),
        limits::BATCH_MAX_DELAY_MS,
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::{
        CassandraSpec, ClusteringColumn, ClusteringOrder, Consistency, DeletionPolicy,
        GeneratorSource, HttpPushSource, KeyspaceSpec, Replication, TopicSpec,
    };

    fn spec() -> StreamPipelineSpec {
        StreamPipelineSpec {
            suspend: false,
            deletion_policy: DeletionPolicy::Retain,
            kafka: KafkaSpec {
                bootstrap_servers: "kafka-0.kafka:9092,[::1]:9093".into(),
                credentials_secret_ref: None,
                topic: TopicSpec::named("users_created"),
            },
            cassandra: CassandraSpec {
                contact_points: vec!["cassandra".into(), "10.0.0.2:9042".into()],
                local_datacenter: "datacenter1".into(),
                credentials_secret_ref: None,
                keyspace: KeyspaceSpec {
                    name: "spark_streams".into(),
                    replication: Replication::simple(1),
                },
                table: TableSpec {
                    name: "created_users".into(),
                    columns: vec![
                        ColumnSpec::from_pointer("id", "uuid", "/login/uuid"),
                        ColumnSpec::from_pointer("select", "text", "/name/first"),
                    ],
                    partition_key: vec!["id".into()],
                    clustering_key: vec![],
                },
                consistency: Consistency::LocalQuorum,
            },
            sources: vec![
                SourceSpec {
                    name: "synthetic".into(),
                    http_pull: None,
                    http_push: None,
                    generator: Some(GeneratorSource::default()),
                },
                SourceSpec {
                    name: "api".into(),
                    http_pull: Some(HttpPullSource::new(
                        "https://randomuser.me/api/?results=10",
                        "*/1 * * * *",
                    )),
                    http_push: None,
                    generator: None,
                },
                SourceSpec {
                    name: "events".into(),
                    http_pull: None,
                    http_push: Some(HttpPushSource::default()),
                    generator: None,
                },
            ],
            runner: RunnerSpec::default(),
            dead_letter: None,
        }
    }

    fn problems(spec: &StreamPipelineSpec) -> Vec<SpecProblem> {
        validate_spec(spec)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default()
    }

    #[test]
    fn a_good_spec_passes_and_reserved_words_are_fine() {
        validate_spec(&spec()).unwrap();
        validate_pipeline("randomuser", &spec()).unwrap();
    }

    #[test]
    fn cql_injection_in_every_name_is_refused() {
        let attempts = [
            "users; DROP KEYSPACE prod",
            "users\"; DROP KEYSPACE prod; --",
            "users' OR '1'='1",
            "users -- comment",
            "users/*x*/",
            "user name",
            "users\n",
            "ünïcode",
            "",
            "_leading_underscore",
        ];
        for attempt in attempts {
            let mut s = spec();
            s.cassandra.keyspace.name = attempt.into();
            s.cassandra.table.name = attempt.into();
            s.cassandra.table.columns[1].name = attempt.into();
            let found = problems(&s);
            let identifiers = found
                .iter()
                .filter(|p| matches!(p.problem, Problem::CqlIdentifier(_)))
                .count();
            assert_eq!(identifiers, 3, "{attempt:?}: {found:?}");
        }
    }

    /// Injection attempts (api/testdata/injections.rs); the e2e test
    /// `operator_admission` sends the same table to the apiserver.
    const INJECTIONS: &[(&str, &str)] = include!("../testdata/injections.rs");

    #[test]
    fn identifier_injection_is_refused_in_every_field() {
        for (what, attempt) in INJECTIONS {
            let mut s = spec();
            s.cassandra.keyspace.name = (*attempt).into();
            s.cassandra.table.name = (*attempt).into();
            s.cassandra.table.columns[1].name = (*attempt).into();
            s.kafka.topic.name = (*attempt).into();
            s.sources[0].name = (*attempt).into();
            s.cassandra.local_datacenter = (*attempt).into();
            s.cassandra.credentials_secret_ref = Some(crate::spec::CassandraCredentials {
                name: (*attempt).into(),
                ..serde_json::from_value(serde_json::json!({"name": "x"})).unwrap()
            });
            let found = problems(&s);
            let has = |field: &str, f: fn(&Problem) -> bool| {
                found.iter().any(|p| p.field == field && f(&p.problem))
            };
            let identifier: fn(&Problem) -> bool = |p| matches!(p, Problem::CqlIdentifier(_));
            assert!(
                has("spec.cassandra.keyspace.name", identifier),
                "{what}: {found:?}"
            );
            assert!(
                has("spec.cassandra.table.name", identifier),
                "{what}: {found:?}"
            );
            assert!(
                has("spec.cassandra.table.columns[1].name", identifier),
                "{what}: {found:?}"
            );
            // Some attempts ("1users", "a_very_long…") are fine topic,
            // datacenter and source names: they cannot inject anything there.
            let topic_ok = is_topic_name(attempt);
            assert_eq!(
                has("spec.kafka.topic.name", |p| matches!(
                    p,
                    Problem::TopicName(_)
                )),
                !topic_ok,
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.cassandra.localDatacenter", |p| matches!(
                    p,
                    Problem::Datacenter(_)
                )),
                !is_datacenter(attempt),
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.sources[0].name", |p| matches!(
                    p,
                    Problem::DnsLabel(_)
                )),
                !is_dns_label(attempt, limits::SOURCE_NAME_MAX),
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.cassandra.credentialsSecretRef.name", |p| matches!(
                    p,
                    Problem::SecretName(_)
                )),
                !is_secret_name(attempt),
                "{what}: {found:?}"
            );
            // Whatever passes as a topic, datacenter, source or Secret name
            // is only plain ASCII letters, digits and . _ -.
            for ok in [
                is_topic_name(attempt),
                is_datacenter(attempt),
                is_secret_name(attempt),
            ] {
                assert!(
                    !ok || attempt
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
                    "{what}"
                );
            }
            assert!(
                validate_pipeline(attempt, &spec()).is_err(),
                "{what}: pipeline name"
            );
        }
    }

    #[test]
    fn kafka_topic_injection_is_refused() {
        for attempt in [".", "..", "a b", "a,b", "a\"b", "a/b", "", &"t".repeat(250)] {
            let mut s = spec();
            s.kafka.topic.name = attempt.to_owned();
            assert!(
                problems(&s)
                    .iter()
                    .any(|p| matches!(p.problem, Problem::TopicName(_))),
                "{attempt:?}"
            );
        }
        let mut s = spec();
        s.kafka.topic.name = "t".repeat(246);
        assert_eq!(
            problems(&s)[0].field,
            "spec.kafka.topic.name",
            "no room for the .dlq suffix"
        );
        s.dead_letter = Some(crate::spec::DeadLetterSpec {
            topic: Some("dlq".into()),
        });
        validate_spec(&s).unwrap();
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut s = spec();
        s.kafka.topic.partitions = 0;
        s.cassandra.table.columns[1].type_ = "string".into();
        s.cassandra.table.partition_key = vec!["nope".into()];
        s.sources[1].name = "API".into();
        let err = validate_spec(&s).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.kafka.topic.partitions",
                "spec.cassandra.table.columns[1].type",
                "spec.cassandra.table.partitionKey[0]",
                "spec.sources[1].name",
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("invalid StreamPipeline (4 problems): "),
            "{text}"
        );
        assert!(
            text.contains("spec.kafka.topic.partitions: 0 is outside the allowed range 1 to 10000"),
            "{text}"
        );
    }

    #[test]
    fn keys_must_name_distinct_scalar_columns() {
        let mut s = spec();
        s.cassandra.table.columns[1].type_ = "set<text>".into();
        s.cassandra.table.clustering_key = vec![
            ClusteringColumn {
                name: "select".into(),
                order: ClusteringOrder::Asc,
            },
            ClusteringColumn {
                name: "id".into(),
                order: ClusteringOrder::Desc,
            },
        ];
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(
            found.iter().any(
                |p| matches!(p, Problem::CollectionInKey { column, .. } if column == "select")
            )
        );
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::RepeatedKeyColumn(c) if c == "id"))
        );
        s.cassandra.table.partition_key.clear();
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::NoPartitionKey)
        );
    }

    #[test]
    fn columns_need_one_value_source_of_a_sound_shape() {
        let mut s = spec();
        let column = &mut s.cassandra.table.columns[1];
        column.template = Some("{/name/last}".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::ColumnSourceCount(2))
        );
        let column = &mut s.cassandra.table.columns[1];
        column.template = None;
        column.from = Some("name".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::Pointer(_)))
        );
        s.cassandra.table.columns[1].from = Some(String::new());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::RootPointer)
        );
        s.cassandra.table.columns[1] = ColumnSpec {
            whole_record: Some(true),
            ..ColumnSpec::from_pointer("raw", "blob", "/x")
        };
        s.cassandra.table.columns[1].from = None;
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::WholeRecordNotText(_)))
        );
        s.cassandra
            .table
            .columns
            .push(ColumnSpec::from_pointer("id", "text", "/id"));
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(&p.problem, Problem::DuplicateColumn(c) if c == "id"))
        );
    }

    #[test]
    fn sources_are_checked() {
        let mut s = spec();
        s.sources[0].http_push = Some(HttpPushSource::default());
        s.sources[2].name = "synthetic".into();
        let pull = s.sources[1].http_pull.as_mut().unwrap();
        pull.url = "file:///etc/passwd".into();
        pull.schedule = "*/1 * * *".into();
        pull.headers
            .insert("Authorization".into(), "Bearer x\r\nHost: evil".into());
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(found.contains(&Problem::SourceKindCount(2)));
        assert!(found.contains(&Problem::DuplicateSource("synthetic".into())));
        assert!(found.contains(&Problem::DuplicatePushPath("/v1/records".into())));
        assert!(found.contains(&Problem::Url("file:///etc/passwd".into())));
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::Schedule(ScheduleError::Unrecognised(_))))
        );
        assert!(found.contains(&Problem::HeaderValue("Authorization".into())));
    }

    #[test]
    fn urls_must_be_absolute_http() {
        for good in [
            "https://randomuser.me/api/?results=10",
            "http://10.0.0.1:8080/x",
            "http://[::1]/",
            "https://user:pw@host.example",
        ] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "http://a b/",
            "http://host:99999/",
            "//host/x",
            "https://host\n/",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn replication_fields_follow_the_class() {
        let mut s = spec();
        s.cassandra.keyspace.replication.data_centers = Some([("dc1".into(), 3)].into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::SimpleStrategyFields)
        );
        s.cassandra.keyspace.replication = Replication {
            class: ReplicationClass::NetworkTopologyStrategy,
            replication_factor: None,
            data_centers: Some([("dc1': 1}; --".into(), 0)].into()),
        };
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(found.iter().any(|p| matches!(p, Problem::Datacenter(_))));
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::OutOfRange { value: 0, .. }))
        );
    }

    #[test]
    fn updates_keep_names_and_keys() {
        let old = spec();
        let mut new = spec();
        new.cassandra
            .table
            .columns
            .push(ColumnSpec::from_pointer("email", "text", "/email"));
        new.kafka.topic.partitions = 6;
        validate_update(&old, &new).unwrap();
        new.cassandra.keyspace.name = "other".into();
        new.cassandra.table.partition_key = vec!["email".into()];
        let err = validate_update(&old, &new).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.cassandra.keyspace.name",
                "spec.cassandra.table.partitionKey"
            ]
        );
        assert!(
            err.to_string()
                .contains("cannot change from \"spark_streams\" to \"other\""),
            "{err}"
        );
    }

    #[test]
    fn pipeline_names_must_suit_service_names() {
        assert!(validate_pipeline("1abc", &spec()).is_err());
        assert!(validate_pipeline("a-", &spec()).is_err());
        assert!(validate_pipeline(&"a".repeat(51), &spec()).is_err());
        validate_pipeline(&"a".repeat(50), &spec()).unwrap();
    }

    #[test]
    fn quoting_doubles_inner_quotes_and_keeps_case() {
        assert_eq!(quote_cql_identifier("users"), "\"users\"");
        assert_eq!(quote_cql_identifier("firstName"), "\"firstName\"");
        assert_eq!(quote_cql_identifier("select"), "\"select\"");
        assert_eq!(quote_cql_identifier(""), "\"\"");
        assert_eq!(quote_cql_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_cql_identifier("x\"; DROP KEYSPACE prod; --"),
            "\"x\"\"; DROP KEYSPACE prod; --\""
        );
        // However many quotes go in, the result is one quoted identifier:
        // inside the outer quotes, quotes only come in pairs.
        for attempt in ["\"", "\"\"", "a\"\"\"b", "\";\""] {
            let quoted = quote_cql_identifier(attempt);
            let inner = &quoted[1..quoted.len() - 1];
            assert_eq!(
                inner.replace("\"\"", "").matches('"').count(),
                0,
                "{attempt:?}"
            );
            assert_eq!(inner.replace("\"\"", "\""), attempt);
        }
    }

    #[test]
    fn identifier_rules() {
        assert!(is_cql_identifier("a"));
        assert!(is_cql_identifier("Users_2024"));
        assert!(is_cql_identifier(&"a".repeat(48)));
        assert!(!is_cql_identifier(&"a".repeat(49)));
        assert!(!is_cql_identifier("2users"));
        assert!(!is_cql_identifier("users!"));
    }
}
