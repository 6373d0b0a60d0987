//! Shared pieces of the benchmark binaries: the test world's addresses, the
//! example pipeline's table, a randomuser-shaped record generator, Kafka and
//! CQL helpers, and the one-line JSON result every binary prints.
//!
//! The binaries' timed parts are deliberately plain: they are the ceilings
//! the runner is compared with, so they must only contain what any
//! straightforward client of the same libraries would write. What they
//! share with the runner is only what makes the same input and output: the
//! records (the runner's user generator) and the rows (the api's mapping and
//! binding), made before the clock starts.

pub mod avro;
pub mod cql;
pub mod http;
pub mod kafka;
pub mod users;

use std::time::Duration;

use anyhow::Context as _;
use millrace_api::{StreamPipelineSpec, TableSpec};
use serde_json::{Value, json};

/// The test world's addresses and credentials, from the variables of
/// `~/.cache/millrace/world/env` (see tests/env).
#[derive(Clone, Debug)]
pub struct World {
    pub kafka_bootstrap: String,
    pub cassandra_contact_points: Vec<String>,
    pub cassandra_username: Option<String>,
    pub cassandra_password: Option<String>,
    pub cassandra_local_dc: String,
}

impl World {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            kafka_bootstrap: var("MILLRACE_KAFKA_BOOTSTRAP").context(
                "MILLRACE_KAFKA_BOOTSTRAP is not set (source ~/.cache/millrace/world/env)",
            )?,
            cassandra_contact_points: var("MILLRACE_CASSANDRA_CONTACT_POINTS")
                .context("MILLRACE_CASSANDRA_CONTACT_POINTS is not set")?
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect(),
            cassandra_username: var("MILLRACE_CASSANDRA_USERNAME"),
            cassandra_password: var("MILLRACE_CASSANDRA_PASSWORD"),
            cassandra_local_dc: var("MILLRACE_CASSANDRA_LOCAL_DC")
                .unwrap_or_else(|| "datacenter1".into()),
        })
    }
}

/// The example pipeline (examples/randomuser.yaml), the seed's table, with
/// the table renamed so every measurement writes its own table.
pub fn example_spec(keyspace: &str, table: &str) -> anyhow::Result<StreamPipelineSpec> {
    let text = include_str!("../../examples/randomuser.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
    let mut spec: StreamPipelineSpec = serde_yaml::from_value(doc["spec"].clone())
        .context("examples/randomuser.yaml is not a StreamPipeline spec")?;
    spec.cassandra.keyspace.name = keyspace.to_owned();
    let Some(only) = spec.cassandra.table.as_mut() else {
        anyhow::bail!("examples/randomuser.yaml has no `table`");
    };
    only.name = table.to_owned();
    Ok(spec)
}

/// The table of [`example_spec`].
pub fn example_table(keyspace: &str, table: &str) -> anyhow::Result<TableSpec> {
    example_spec(keyspace, table)?
        .cassandra
        .table
        .context("examples/randomuser.yaml has no `table`")
}

/// The result of one measurement, printed as one JSON line on stdout for
/// bench/harness.py. `seconds` is the timed part only (set-up such as
/// reading the records or connecting is excluded and said so in `note`).
pub struct Outcome {
    pub measurement: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub note: String,
    pub extra: Value,
}

impl Outcome {
    pub fn print(&self) {
        let rate = if self.seconds > 0.0 {
            self.records as f64 / self.seconds
        } else {
            0.0
        };
        let line = json!({
            "measurement": self.measurement,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "rate": rate,
            "note": self.note,
            "extra": self.extra,
        });
        println!("{line}");
    }
}

/// Seconds of a duration, for reports.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// This process's CPU seconds so far, user and system: read around a timed
/// part, it gives what the measuring client itself cost.
pub fn cpu_seconds() -> f64 {
    millrace_api::process_metrics::ProcessSample::read().map_or(0.0, |p| p.cpu_seconds)
}

/// Waits for every spawned write; how many of them failed.
pub async fn failed_writes<T, E>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, E>>>,
) -> anyhow::Result<u64> {
    let mut failed = 0u64;
    for t in tasks {
        if t.await?.is_err() {
            failed += 1;
        }
    }
    Ok(failed)
}
