//! Where rows land: the Cassandra cluster, keyspace and table.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tls::{CaSecretRef, ClientCertSecretRef};
use super::{limits, patterns};

/// The Cassandra cluster, and the keyspace and tables the sink writes to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.table) != has(self.tables)")
        .message("set table (one table) or tables (one or more), not both"),
    validation = Rule::new(
        "!has(oldSelf.tables) || !has(self.tables) || self.tables[0].name == oldSelf.tables[0].name"
    )
    .message("the first of tables keys the records in Kafka and cannot be changed; add other tables after it")
    .reason(Reason::FieldValueForbidden),
    validation = Rule::new(
        "!has(oldSelf.table) || !has(self.tables) || self.tables[0].name == oldSelf.table.name"
    )
    .message("moving from table to tables, the table must stay first: it keys the records in Kafka")
    .reason(Reason::FieldValueForbidden)
)]
pub struct CassandraSpec {
    /// Nodes to connect to first, as `host` or `host:port` (port 9042 when
    /// omitted). The driver discovers the rest of the cluster from them.
    #[schemars(length(min = 1, max = limits::CONTACT_POINTS_MAX), inner(length(min = 1, max = 253), pattern(patterns::CONTACT_POINT)))]
    pub contact_points: Vec<String>,

    /// Datacenter the sink treats as local for load balancing and `LOCAL_*`
    /// consistency levels.
    #[serde(default = "default_local_datacenter")]
    #[schemars(pattern(patterns::DATACENTER))]
    pub local_datacenter: String,

    /// Secret holding the username and password for Cassandra. Without it,
    /// millrace connects without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CassandraCredentials>,

    /// TLS to the nodes (client encryption), with the CA that signed their
    /// certificates and, for clusters that ask for one, a client
    /// certificate. Without it, millrace connects in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<CassandraTls>,

    /// The keyspace; created if missing, and its replication kept as declared.
    pub keyspace: KeyspaceSpec,

    /// The table rows are written to; created if missing, and new columns
    /// added when they appear here. For several tables, use `tables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableSpec>,

    /// Several tables fed by the same records, one per query (for example
    /// `users_by_id` and `users_by_email`): every record is written to each
    /// of them. The first keys the records in Kafka (its partition key), so
    /// one key's versions stay in order; it cannot be replaced. Tables
    /// added are created; a table removed from the list stops being written
    /// and keeps its data. Instead of `table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::TABLES_MAX))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tables: Option<Vec<TableSpec>>,

    /// Consistency level of each write. `LOCAL_QUORUM` (default) survives one
    /// replica down with a replication factor of 3.
    #[serde(default)]
    pub consistency: Consistency,
}

/// TLS to Cassandra's CQL port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraTls {
    /// The CA bundle (PEM) that signed the nodes' certificates, for example
    /// the `ca.crt` of the cert-manager Certificate the cluster's nodes use.
    pub ca_secret_ref: CaSecretRef,

    /// A client certificate and key (PEM), for clusters with
    /// `require_client_auth`. For a cert-manager Certificate's Secret set
    /// `certKey: tls.crt` and `keyKey: tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<ClientCertSecretRef>,

    /// Check that each node's certificate names the address millrace
    /// connects to (the node's IP address, as the cluster advertises it),
    /// as well as that the CA signed it. Turn off only for certificates
    /// that do not name the nodes' addresses: the CA is still checked.
    #[serde(default = "default_true")]
    pub verify_hostname: bool,
}

fn default_true() -> bool {
    true
}

impl CassandraSpec {
    /// The tables rows are written to, from `table` or `tables`; the first
    /// keys the records. Empty only for a spec that sets neither, which
    /// validation refuses.
    pub fn tables(&self) -> &[TableSpec] {
        match (&self.table, &self.tables) {
            (Some(t), _) => std::slice::from_ref(t),
            (None, Some(ts)) => ts,
            (None, None) => &[],
        }
    }

    /// As [`CassandraSpec::tables`], to change them in place.
    pub fn tables_mut(&mut self) -> &mut [TableSpec] {
        match (&mut self.table, &mut self.tables) {
            (Some(t), _) => std::slice::from_mut(t),
            (None, Some(ts)) => ts,
            (None, None) => &mut [],
        }
    }

    /// The table whose partition key keys the records in Kafka: the only
    /// one, or the first of `tables`.
    pub fn key_table(&self) -> Option<&TableSpec> {
        self.tables().first()
    }

    /// Where the `i`th table is in the spec, for messages:
    /// `spec.cassandra.table` or `spec.cassandra.tables[i]`.
    pub fn table_path(&self, i: usize) -> String {
        if self.table.is_some() {
            "spec.cassandra.table".to_owned()
        } else {
            format!("spec.cassandra.tables[{i}]")
        }
    }

    /// The table named `name`.
    pub fn table_named(&self, name: &str) -> Option<&TableSpec> {
        self.tables().iter().find(|t| t.name == name)
    }

    /// The Secrets the Cassandra clients read: the login and the TLS
    /// material.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        names.extend(
            self.credentials_secret_ref
                .as_ref()
                .map(|r| r.name.as_str()),
        );
        if let Some(tls) = &self.tls {
            names.push(tls.ca_secret_ref.name.as_str());
            names.extend(tls.client_cert_secret_ref.as_ref().map(|r| r.name.as_str()));
        }
        names.sort_unstable();
        names.dedup();
        names
    }
}

fn default_local_datacenter() -> String {
    "datacenter1".to_owned()
}

/// A Secret with the username and password millrace uses for Cassandra.
pub type CassandraCredentials = super::LoginSecretRef;

/// Consistency level of the sink's writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    #[default]
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

/// The keyspace that holds the table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceSpec {
    /// Keyspace name: a letter, then up to 47 letters, digits or underscores.
    /// Cannot be changed after creation.
    #[schemars(length(min = 1, max = limits::CQL_IDENTIFIER_MAX))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{}')", patterns::CQL_IDENTIFIER))
            .message("must be a CQL identifier: a letter, then up to 47 letters, digits or underscores"),
        validation = Rule::new("self == oldSelf")
            .message("the keyspace cannot be renamed; create a new StreamPipeline to write elsewhere")
            .reason(Reason::FieldValueForbidden)
    )]
    pub name: String,

    /// How the keyspace's data is replicated.
    pub replication: Replication,
}

/// Replication of a keyspace: `SimpleStrategy` with one factor, or
/// `NetworkTopologyStrategy` with a factor per datacenter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "self.class == 'SimpleStrategy' ? has(self.replicationFactor) && !has(self.dataCenters) : has(self.dataCenters) && !has(self.replicationFactor)"
    )
    .message("SimpleStrategy takes replicationFactor; NetworkTopologyStrategy takes dataCenters (a replication factor per datacenter)")
)]
pub struct Replication {
    /// Replication strategy: `SimpleStrategy` (one datacenter) or
    /// `NetworkTopologyStrategy` (per-datacenter factors).
    pub class: ReplicationClass,

    /// Number of replicas, with `SimpleStrategy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = limits::KEYSPACE_REPLICATION_FACTOR.0, max = limits::KEYSPACE_REPLICATION_FACTOR.1))]
    pub replication_factor: Option<i32>,

    /// Number of replicas in each datacenter, with `NetworkTopologyStrategy`,
    /// for example `{dc1: 3, dc2: 3}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minProperties" = 1, "maxProperties" = limits::DATACENTERS_MAX))]
    #[x_kube(validation = Rule::new("self.all(dc, self[dc] >= 1 && self[dc] <= 32)")
        .message("each datacenter needs a replication factor from 1 to 32"))]
    pub data_centers: Option<BTreeMap<String, i32>>,
}

impl Replication {
    /// `SimpleStrategy` with `factor` replicas.
    pub fn simple(factor: i32) -> Self {
        Self {
            class: ReplicationClass::SimpleStrategy,
            replication_factor: Some(factor),
            data_centers: None,
        }
    }
}

/// Cassandra replication strategy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReplicationClass {
    SimpleStrategy,
    NetworkTopologyStrategy,
}

impl ReplicationClass {
    /// The class name Cassandra takes in `WITH replication`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SimpleStrategy => "SimpleStrategy",
            Self::NetworkTopologyStrategy => "NetworkTopologyStrategy",
        }
    }
}

/// The table: its columns, where each one's value comes from, and its
/// primary key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.partitionKey.all(k, self.columns.exists(c, c.name == k))")
        .message("every partitionKey entry must be the name of a column in columns")
        .field_path(".partitionKey"),
    validation = Rule::new("self.clusteringKey.all(k, self.columns.exists(c, c.name == k.name))")
        .message("every clusteringKey entry must be the name of a column in columns")
        .field_path(".clusteringKey"),
    validation = Rule::new("self.clusteringKey.all(k, !(k.name in self.partitionKey))")
        .message("a column cannot be in both partitionKey and clusteringKey")
        .field_path(".clusteringKey"),
    validation = Rule::new(
        "self.columns.all(c, !c.type.contains('<') || (!(c.name in self.partitionKey) && !self.clusteringKey.exists(k, k.name == c.name)))"
    )
    .message("primary key columns cannot be of a list, set or map type")
    .field_path(".columns")
)]
pub struct TableSpec {
    /// Table name: a letter, then up to 47 letters, digits or underscores.
    /// Cannot be changed after creation.
    #[schemars(length(min = 1, max = limits::CQL_IDENTIFIER_MAX))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{}')", patterns::CQL_IDENTIFIER))
            .message("must be a CQL identifier: a letter, then up to 47 letters, digits or underscores"),
        validation = Rule::new("self == oldSelf")
            .message("the table cannot be renamed; create a new StreamPipeline to write elsewhere")
            .reason(Reason::FieldValueForbidden)
    )]
    pub name: String,

    /// The table's columns. Each takes its value from the record by a JSON
    /// pointer (`from`), a `template`, or the whole record (`wholeRecord`).
    /// Columns added here are added to the table; removing one stops writing
    /// it but keeps its data.
    #[schemars(length(min = 1, max = limits::COLUMNS_MAX))]
    //
    // Unique names are the list's map key: the apiserver refuses a repeated
    // one itself ("Duplicate value"). A CEL rule saying so as well cost a
    // comparison of every pair of columns on every write, status writes
    // included (`bench/OPERATOR-SCALE.md`).
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub columns: Vec<ColumnSpec>,

    /// Columns whose values decide which node stores a row, in order. Records
    /// are keyed by them in Kafka, so one key's records stay in order. At
    /// least one; cannot be changed after creation.
    #[schemars(length(max = 8), inner(length(min = 1, max = limits::CQL_IDENTIFIER_MAX)))]
    #[x_kube(
        validation = Rule::new("size(self) >= 1")
            .message("partitionKey must name at least one column")
            .reason(Reason::FieldValueRequired),
        validation = Rule::new("self.all(k, self.exists_one(j, j == k))")
            .message("partitionKey names a column more than once"),
        validation = Rule::new("self == oldSelf")
            .message("the partition key cannot be changed after creation: Cassandra cannot re-key a table")
            .reason(Reason::FieldValueForbidden)
    )]
    pub partition_key: Vec<String>,

    /// Columns that order rows within a partition, in order. Cannot be
    /// changed after creation.
    #[serde(default)]
    #[schemars(length(max = limits::KEY_COLUMNS_MAX))]
    #[x_kube(
        validation = Rule::new("self.all(k, self.exists_one(j, j.name == k.name))")
            .message("clusteringKey names a column more than once"),
        validation = Rule::new("self == oldSelf")
            .message("the clustering key cannot be changed after creation: Cassandra cannot re-key a table")
            .reason(Reason::FieldValueForbidden)
    )]
    pub clustering_key: Vec<ClusteringColumn>,

    /// How long the rows written live (Cassandra's TTL): a number of
    /// seconds for every row, a record field that gives it per record, or
    /// both (the record's field wins where the record has it). Without it,
    /// rows keep the table's own `default_time_to_live` (none, unless set
    /// by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<TtlSpec>,

    /// Where each row's write time (`WRITETIME`) comes from: a field of the
    /// record instead of the Kafka record's timestamp. Either way a later
    /// record of a key never gets an earlier write time than the one
    /// before it, so versions stay in the topic's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_time: Option<WriteTimeSpec>,

    /// Which records delete their row instead of writing it. None do
    /// unless this says so. A delete removes the row its primary key names
    /// (in a table with a clustering key, that one row of its partition),
    /// at the record's write time, so a later record of the key writes the
    /// row again and a replay deletes nothing newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeletesSpec>,
}

/// Which records are deletes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.tombstones) && self.tombstones) || (has(self.keyOnly) && self.keyOnly) || has(self.marker)")
        .message("turn on tombstones, keyOnly, or set a marker")
)]
pub struct DeletesSpec {
    /// A Kafka tombstone (a keyed record with no value) deletes the row its
    /// key names. The key is read as the record the primary key columns
    /// read: a JSON object with their fields; for a one-column primary key
    /// its value as plain text too; for a partition key of several columns
    /// (and no clustering key), the JSON array millrace's sources key
    /// records with. Off, a tombstone goes to the dead-letter topic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tombstones: bool,

    /// A record with values for the primary key columns and none for any
    /// other column that reads the value (the fields absent, not null)
    /// deletes its row.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub key_only: bool,

    /// A record with this field set to this value deletes its row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<DeleteMarker>,
}

/// A field that marks a record as a delete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteMarker {
    /// JSON pointer to the field, for example `/op`.
    #[schemars(length(min = 1, max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER))
        .message("must be a JSON pointer such as /op: it starts with '/', and '~' appears only as ~0 or ~1"))]
    pub from: String,

    /// The value that marks a delete, compared as text: a string field by
    /// its content, a number or boolean by how JSON writes it (`"true"`
    /// matches `true`, `"1"` matches `1`).
    #[schemars(length(min = 1, max = 256))]
    pub equals: String,
}

/// How long rows live.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.seconds) || has(self.from)")
        .message("set seconds, from, or both")
)]
pub struct TtlSpec {
    /// Seconds every row lives, unless its record gives its own; 0 means
    /// forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = limits::TTL_SECONDS_MAX))]
    pub seconds: Option<i32>,

    /// JSON pointer to the record's own TTL, in seconds (a whole number, or
    /// a string of digits; 0 means forever). A record without the field
    /// (or with null there) gets `seconds`; a value that is not a number
    /// of seconds up to 20 years sends the record to the dead-letter topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER))
        .message("must be a JSON pointer such as /expiresIn: it starts with '/', and '~' appears only as ~0 or ~1"))]
    pub from: Option<String>,
}

/// Where a row's write time comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteTimeSpec {
    /// JSON pointer to the record's time: an RFC 3339 text date, or a
    /// number (or string of digits) counting `unit` since the epoch. A
    /// record without it, or with a time outside the years 1900-2199, goes
    /// to the dead-letter topic with the reason.
    #[schemars(length(min = 1, max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER))
        .message("must be a JSON pointer such as /updatedAt: it starts with '/', and '~' appears only as ~0 or ~1"))]
    pub from: String,

    /// What a number counts since the epoch: `seconds`, `milliseconds` or
    /// `microseconds` (Cassandra's own write-time unit, kept exactly).
    pub unit: EpochUnit,
}

/// One column of the table and where its value comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "(has(self.from) ? 1 : 0) + (has(self.template) ? 1 : 0) + (has(self.wholeRecord) && self.wholeRecord ? 1 : 0) + (has(self.fromKafka) ? 1 : 0) + (has(self.fromHeader) ? 1 : 0) == 1"
    )
    .message("set exactly one of from, template, wholeRecord: true, fromKafka or fromHeader"),
    validation = Rule::new("!has(self.wholeRecord) || !self.wholeRecord || self.type in ['text', 'varchar']")
        .message("a wholeRecord column holds JSON text, so its type must be text")
)]
pub struct ColumnSpec {
    /// Column name: a letter, then up to 47 letters, digits or underscores.
    #[schemars(length(min = 1, max = limits::CQL_IDENTIFIER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::CQL_IDENTIFIER))
        .message("must be a CQL identifier: a letter, then up to 47 letters, digits or underscores"))]
    pub name: String,

    /// CQL type, in lower case: one of ascii, bigint, blob, boolean, date,
    /// decimal, double, float, inet, int, smallint, text, time, timestamp,
    /// timeuuid, tinyint, uuid, varchar, varint, or `list<T>`, `set<T>` or
    /// `map<K,V>` of those. Changing it after creation is not supported.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::CQL_TYPE))
        .message("must be a CQL type such as text, int, uuid, timestamp, list<text> or map<text,int>"))]
    pub type_: String,

    /// JSON pointer (RFC 6901) to the value in the record, for example
    /// `/login/uuid`. `~1` stands for `/` and `~0` for `~` in a key. A missing
    /// value leaves the column unset; an explicit null writes null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER))
        .message("must be a JSON pointer such as /login/uuid: it starts with '/', and '~' appears only as ~0 or ~1"))]
    pub from: Option<String>,

    /// Text with JSON pointers in braces, for example
    /// `{/location/street/number} {/location/street/name}`. `{{` and `}}`
    /// write literal braces. Missing values are written as empty text; if
    /// every value is missing the column is left unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::TEMPLATE_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::TEMPLATE))
        .message("must be text with JSON pointers in braces, such as '{/name/first} {/name/last}'; write {{ and }} for literal braces"))]
    pub template: Option<String>,

    /// When true, the column holds the whole record as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_record: Option<bool>,

    /// A part of the Kafka record rather than of its value: `key` (its
    /// bytes; as text, read like a JSON string for other types) or
    /// `timestamp` (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_kafka: Option<KafkaPart>,

    /// The Kafka record header of this name (the last one, if the record
    /// has several): its bytes for a `blob` column, its text read like a
    /// JSON string for other types. A record without it leaves the column
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub from_header: Option<String>,

    /// For a `timestamp` column (or a collection of timestamps): what a
    /// number (or a string of digits) counts since the epoch, `seconds`,
    /// `milliseconds` or `microseconds`. Without it such a value is refused:
    /// seconds read as milliseconds would be stored as a wrong date in 1970.
    /// Text dates (RFC 3339) need no unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<EpochUnit>,
}

/// A part of the Kafka record a column can read.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KafkaPart {
    Key,
    Timestamp,
}

impl KafkaPart {
    /// Its name as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Timestamp => "timestamp",
        }
    }
}

/// What a number read into a `timestamp` column counts since 1970-01-01
/// 00:00 UTC.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EpochUnit {
    Seconds,
    Milliseconds,
    Microseconds,
}

impl EpochUnit {
    /// Its name as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Milliseconds => "milliseconds",
            Self::Microseconds => "microseconds",
        }
    }
}

/// A clustering column and its sort order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusteringColumn {
    /// Name of a column in `columns`.
    #[schemars(length(min = 1, max = limits::CQL_IDENTIFIER_MAX))]
    pub name: String,

    /// Sort order of rows within a partition: `ASC` (default) or `DESC`.
    #[serde(default)]
    pub order: ClusteringOrder,
}

/// Sort order of a clustering column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClusteringOrder {
    #[default]
    Asc,
    Desc,
}

impl ClusteringOrder {
    /// The keyword CQL takes in `CLUSTERING ORDER BY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "ASC",
            Self::Desc => "DESC",
        }
    }
}

impl ColumnSpec {
    /// A column whose value is at `pointer` in the record.
    pub fn from_pointer(name: &str, type_: &str, pointer: &str) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            from: Some(pointer.to_owned()),
            template: None,
            whole_record: None,
            from_kafka: None,
            from_header: None,
            unit: None,
        }
    }

    /// A column whose value is `template` rendered against the record.
    pub fn from_template(name: &str, type_: &str, template: &str) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            from: None,
            template: Some(template.to_owned()),
            whole_record: None,
            from_kafka: None,
            from_header: None,
            unit: None,
        }
    }

    /// This column, reading numbers as `unit` since the epoch.
    pub fn with_unit(self, unit: EpochUnit) -> Self {
        Self {
            unit: Some(unit),
            ..self
        }
    }

    /// A text column holding the whole record as JSON.
    pub fn whole_record(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            type_: "text".to_owned(),
            from: None,
            template: None,
            whole_record: Some(true),
            from_kafka: None,
            from_header: None,
            unit: None,
        }
    }

    /// A column that reads `part` of the Kafka record.
    pub fn from_kafka(name: &str, type_: &str, part: KafkaPart) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            from: None,
            template: None,
            whole_record: None,
            from_kafka: Some(part),
            from_header: None,
            unit: None,
        }
    }

    /// A column that reads the Kafka record header `header`.
    pub fn from_header(name: &str, type_: &str, header: &str) -> Self {
        Self {
            from_kafka: None,
            from_header: Some(header.to_owned()),
            ..Self::from_kafka(name, type_, KafkaPart::Key)
        }
    }
}
