//! The ingest role: the pipeline's sources into its Kafka topic.
//!
//! Every record is checked against the table's columns before it is
//! produced, and keyed by its partition key so one key's records stay in
//! order. Pushed records that do not fit are refused; pulled ones go to the
//! dead-letter topic with the reason.

pub mod fetch;
pub mod generator;
pub mod lease;
pub mod pull;
pub mod push;
pub mod push_auth;
pub mod push_tls;

use std::sync::Arc;
use std::time::Duration;

use millrace_api::{GeneratorSource, HttpPullSource, HttpPushSource, RowMapper, SourceKind};
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use crate::config::{Connections, Pipeline};
use crate::kafka::{Origin, Producer};
use crate::kafka_health::ClientHealth;
use crate::metrics::Metrics;

/// What every source shares.
pub struct Ingest {
    pub pipeline: Pipeline,
    pub producer: Producer,
    pub mapper: RowMapper,
    pub metrics: Arc<Metrics>,
    pub dlq_topic: String,
    /// Pushed records waiting for Kafka's acknowledgement.
    pub pending: Arc<Semaphore>,
    pub push_sources: Vec<(String, HttpPushSource)>,
    pull_sources: Vec<(String, HttpPullSource)>,
    generators: Vec<(String, GeneratorSource)>,
}

impl Ingest {
    pub fn new(
        pipeline: Pipeline,
        connections: &Connections,
        metrics: Arc<Metrics>,
        health: &ClientHealth,
    ) -> anyhow::Result<Arc<Self>> {
        let spec = &pipeline.spec;
        // Records are keyed, and checked, by the first table: the others
        // are the sink's to write, which dead-letters what one of them
        // cannot take while the rest still get their rows.
        let key_table = spec
            .cassandra
            .key_table()
            .ok_or_else(|| anyhow::anyhow!("the pipeline declares no table"))?;
        let mapper = RowMapper::new(key_table)?;
        // A pushed record waits at most this long for Kafka before the
        // client is told 503 and retries.
        let producer = Producer::new(
            connections.kafka_config(&pipeline),
            &spec.kafka.topic.name,
            Duration::from_secs(15),
            health.watch("ingest producer"),
        )?;
        let mut push_sources = Vec::new();
        let mut pull_sources = Vec::new();
        let mut generators = Vec::new();
        for source in &spec.sources {
            match source.kind() {
                Some(SourceKind::HttpPush(p)) => {
                    push_sources.push((source.name.clone(), p.clone()))
                }
                Some(SourceKind::HttpPull(p)) => {
                    pull_sources.push((source.name.clone(), p.clone()))
                }
                Some(SourceKind::Generator(g)) => generators.push((source.name.clone(), g.clone())),
                None => warn!(source = %source.name, "source has no single kind; ignored"),
            }
        }
        Ok(Arc::new(Self {
            dlq_topic: spec.dead_letter_topic(),
            pipeline,
            producer,
            mapper,
            metrics,
            pending: Arc::new(Semaphore::new(push::MAX_PENDING_RECORDS)),
            push_sources,
            pull_sources,
            generators,
        }))
    }

    /// The Kafka key (the partition key as text) and payload of a record,
    /// or why it does not fit the table.
    pub fn key_and_payload(&self, record: &Value) -> Result<(String, Vec<u8>), String> {
        if !record.is_object() {
            return Err("the record is not a JSON object".to_owned());
        }
        let row = self.mapper.map(record).map_err(|e| e.to_string())?;
        // A TTL or write time the sink would refuse is refused here too.
        self.mapper.settings(record).map_err(|e| e.to_string())?;
        let key = self
            .mapper
            .partition_key_of_row(&row)
            .ok_or_else(|| "the record has no partition key".to_owned())?;
        let payload = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        Ok((key, payload))
    }

    /// The Kafka key of a record given as JSON text, checked the way the
    /// sink will read it: parsed with [`RowMapper::parse`] (only the mapped
    /// fields are kept) and mapped. The text itself is the payload, so what
    /// is checked here is byte for byte what the sink gets.
    pub fn key_of_raw(&self, raw: &[u8]) -> Result<String, String> {
        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("the record is not a JSON object".to_owned());
        }
        let record = self.mapper.parse(raw).map_err(|e| e.to_string())?;
        let row = self.mapper.map(&record).map_err(|e| e.to_string())?;
        self.mapper.settings(&record).map_err(|e| e.to_string())?;
        self.mapper
            .partition_key_of_row(&row)
            .ok_or_else(|| "the record has no partition key".to_owned())
    }

    /// Sends a record that does not fit to the dead-letter topic.
    pub async fn dead_letter(&self, source: &str, record: &Value, reason: &str) {
        let payload = serde_json::to_vec(record).unwrap_or_default();
        self.producer
            .dead_letter(
                &self.dlq_topic,
                None,
                Some(&payload),
                reason,
                Origin::Ingest { source },
            )
            .await;
        self.metrics
            .rejected(source, crate::metrics::Reason::Unmappable, 1);
        self.metrics
            .dead_lettered(crate::metrics::Reason::Unmappable);
    }

    /// Starts the pull and generator sources; they stop when `shutdown`
    /// turns true. The push endpoint is served by the HTTP server.
    pub async fn start(
        self: &Arc<Self>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(
            self.producer
                .clone()
                .watch_metadata(Duration::from_secs(2), shutdown.clone()),
        ));
        let kube = if self.pull_sources.is_empty() {
            None
        } else {
            lease::kube_client().await?
        };
        if !self.pull_sources.is_empty() && kube.is_none() {
            info!(
                "no Kubernetes cluster (neither in-cluster nor KUBECONFIG): pulling standalone, without a Lease"
            );
        }
        for (name, spec) in &self.pull_sources {
            let lease = kube
                .as_ref()
                .map(|client| lease::PullLease::new(client.clone(), &self.pipeline, name, spec));
            let puller = pull::Puller::new(self.clone(), name.clone(), spec.clone(), lease)?;
            tasks.push(tokio::spawn(puller.run(shutdown.clone())));
        }
        for (name, spec) in &self.generators {
            tasks.push(tokio::spawn(generator::run(
                self.clone(),
                name.clone(),
                spec.clone(),
                shutdown.clone(),
            )));
        }
        Ok(tasks)
    }
}
