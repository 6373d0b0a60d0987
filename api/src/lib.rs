//! The `StreamPipeline` API shared by the operator and the runner.
//!
//! Kept free of controller and driver dependencies so the runner image does
//! not carry the operator's code.
//!
//! - [`spec`] and [`status`]: the custom resource, with its admission rules
//!   (OpenAPI bounds and CEL) beside the fields; [`crd_yaml`] renders it.
//! - [`validate`]: the operator's own check of a spec.
//! - [`mapping`]: a [`RowMapper`] compiled from the table spec turns a JSON
//!   record into a row of [`Cell`]s, using [`json_pointer`], [`template`],
//!   [`cql_type`] and [`mod@coerce`].
//! - [`cql`] builds the keyspace, table and insert statements, quoting
//!   identifiers with [`quote_cql_identifier`];
//!   [`schema_diff`] compares the declared table with the one Cassandra has.
//! - [`schedule`]: when a pull source runs; [`backfill_annotation`]: a
//!   backfill asked for with an annotation.
//! - What the operator and the runner agree on: [`kafka_client`] (client
//!   settings, consumer group), [`cassandra_client`] (the runner's
//!   variables and, with the `cassandra-tls` feature, the TLS context), [`commit_metadata`] (what the sink commits
//!   with its offsets), [`replay`] (dead-letter replay), [`pull_lease`], [`pull_network`] (where a pull may connect and send credentials), [`credentials`],
//!   [`auth_failure`], [`ports`], [`push_auth`], [`process_metrics`] (the standard `process_*` series both export), and, with the `cql-values` feature, `cql_value` (a
//!   row as the scylla driver binds it).
//! - `lease` (crate feature `lease`): the one Lease mechanism, for the
//!   operator's leader election and the runner's pull Leases.
//! - `serve` (crate feature `serve`): the bounded HTTP server the runner
//!   and the operator serve `/metrics` and their health on.

pub mod auth_failure;
pub mod avro;
pub mod backfill_annotation;
pub mod cassandra_client;
pub mod cell;
pub mod coerce;
pub mod commit_metadata;
pub mod cql;
pub mod cql_type;
#[cfg(feature = "cql-values")]
pub mod cql_value;
mod crd_yaml;
pub mod credentials;
pub mod json_pointer;
pub mod kafka_client;
#[cfg(feature = "lease")]
pub mod lease;
pub mod mapping;
pub mod ports;
pub mod process_metrics;
pub mod pull_lease;
pub mod pull_network;
pub mod pull_paging;
pub mod push_auth;
pub mod replay;
pub mod schedule;
pub mod schema_diff;
#[cfg(feature = "serve")]
pub mod serve;
pub mod spec;
pub mod status;
pub mod template;
pub mod validate;

pub use cell::{Cell, CellValue, Decimal, Varint};
pub use coerce::{PLAUSIBLE_YEARS, ValueError, coerce, coerce_with_unit};
pub use commit_metadata::CommitMetadata;
pub use cql_type::{CqlType, CqlTypeError};
pub use crd_yaml::crd_yaml;
pub use credentials::{CassandraCredentialValues, Credentials, KafkaCredentialValues};
pub use json_pointer::{JsonPointer, JsonPointerError};
pub use kafka_client::{consumer_group, kafka_client_settings};
pub use mapping::{
    ColumnError, ColumnErrorKind, ColumnSource, KafkaRecordParts, MappedColumn, RecordError,
    RecordParser, RowMapper, SettingError, SettingErrorKind, TombstoneError, WriteSettings,
};
pub use pull_lease::{LAST_PULL_ANNOTATION, LastPull, pull_lease_name, pull_lease_owner};
pub use pull_paging::{
    PULL_STATE_ANNOTATION, PagePosition, Paging, PagingError, PullState, RunEnd, UrlTemplate,
    Window,
};
pub use replay::{REPLAY_ANNOTATION, REPLAY_TOKEN_ENV, ReplayMetadata, replay_group};
pub use schedule::{Cron, Schedule, ScheduleError};
pub use schema_diff::{ColumnKind, ObservedColumn, TableDiff, UnsupportedChange, diff_table};
pub use spec::*;
pub use status::*;
pub use template::{Template, TemplateError};
pub use validate::{
    InvalidSpec, Problem, SpecProblem, quote_cql_identifier, validate_pipeline, validate_spec,
    validate_update,
};
