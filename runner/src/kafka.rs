//! The Kafka producer shared by ingest and the sink's dead-letter path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::statistics::Statistics;
use tracing::{debug, error, warn};

use crate::kafka_health::{self, ClientWatch};

/// Headers of a dead-lettered record (`docs/runner-contract.md`).
pub mod headers {
    pub const ERROR: &str = "millrace.error";
    pub const SOURCE_TOPIC: &str = "millrace.source.topic";
    pub const SOURCE_PARTITION: &str = "millrace.source.partition";
    pub const SOURCE_OFFSET: &str = "millrace.source.offset";
    pub const SOURCE_NAME: &str = "millrace.source.name";
    pub const STAGE: &str = "millrace.stage";
    /// Set when the payload did not fit the dead-letter topic and was left
    /// out: its size, and where the original is.
    pub const PAYLOAD_OMITTED: &str = "millrace.payload.omitted";
    /// The write timestamp (microseconds) the sink gave the record, so a
    /// replay writes it with the same one and a newer version of its key
    /// already in the table stays.
    pub const WRITE_TIMESTAMP: &str = "millrace.write.timestamp";
    /// Set on a dead letter that a replay tried again: the replay's token.
    pub const REPLAY_TOKEN: &str = "millrace.replay.token";
    /// The original record's Kafka timestamp (milliseconds), for columns
    /// that read it (`fromKafka: timestamp`) when the record is replayed.
    pub const SOURCE_TIMESTAMP: &str = "millrace.source.timestamp";
}

/// Where a dead-lettered record came from.
#[derive(Clone, Debug)]
pub enum Origin<'a> {
    /// An ingest source, before the record reached Kafka.
    Ingest { source: &'a str },
    /// A message of the pipeline's topic.
    Sink {
        topic: &'a str,
        partition: i32,
        offset: i64,
        write_timestamp: i64,
        /// The record's Kafka timestamp, in milliseconds.
        timestamp_ms: Option<i64>,
        /// The record's headers that the columns read: the dead letter
        /// carries them, so a replay maps it as the sink did.
        headers: &'a [(String, Vec<u8>)],
    },
    /// A dead letter a replay tried again: its headers (where it came from)
    /// are kept, with the replay's token.
    Replay {
        token: &'a str,
        headers: &'a [(String, Vec<u8>)],
    },
}

/// Why a send failed, as the push endpoint answers it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The local queue is full: back-pressure.
    #[error("the producer's queue is full")]
    QueueFull,
    /// The record is larger than the producer or the topic takes: sending
    /// it again cannot help.
    #[error("the record is larger than kafka takes: {0}")]
    TooLarge(KafkaError),
    /// Kafka did not acknowledge the record.
    #[error("kafka did not acknowledge the record: {0}")]
    Kafka(KafkaError),
}

impl From<KafkaError> for SendError {
    /// A full queue and a record too large are their own cases: the caller
    /// answers 429 or waits, and 413.
    fn from(e: KafkaError) -> Self {
        match e {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => Self::QueueFull,
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge) => {
                Self::TooLarge(e)
            }
            e => Self::Kafka(e),
        }
    }
}

/// A producer's context: librdkafka's own logging, and its statistics to
/// the producer's [`ClientWatch`].
pub struct WatchedContext {
    watch: Arc<ClientWatch>,
}

impl ClientContext for WatchedContext {
    fn stats(&self, stats: Statistics) {
        self.watch.observe(&stats);
    }
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// An idempotent producer (acks=all), with a flag that says whether Kafka
/// has metadata for the topic.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<WatchedContext>,
    topic: Arc<str>,
    ready: Arc<AtomicBool>,
    max_message_bytes: usize,
}

impl Producer {
    /// `delivery_timeout` bounds how long one record may wait for Kafka's
    /// acknowledgement, retries included.
    /// `watch` follows whether the producer still knows its cluster
    /// ([`kafka_health`]).
    pub fn new(
        mut config: ClientConfig,
        topic: &str,
        delivery_timeout: Duration,
        watch: Arc<ClientWatch>,
    ) -> Result<Self, KafkaError> {
        let max_message_bytes = config
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        let inner: FutureProducer<WatchedContext> = config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            // The queue holds copies of payloads not yet acknowledged; each
            // source bounds what it hands over (push: its body budget;
            // generator and pull: a few thousand records), and these are
            // the backstop that turns anything beyond into QueueFull
            // rather than memory.
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "32768")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().to_string(),
            )
            .set(
                "statistics.interval.ms",
                kafka_health::STATISTICS_INTERVAL_MS,
            )
            .create_with_context(WatchedContext { watch })?;
        Ok(Self {
            inner,
            topic: topic.into(),
            ready: Arc::new(AtomicBool::new(false)),
            max_message_bytes,
        })
    }

    /// The largest record (key and payload) the producer takes: its
    /// `message.max.bytes`. A topic may take less (`max.message.bytes`);
    /// Kafka says so per record ([`SendError::TooLarge`]).
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Whether the last metadata check found the topic.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Checks the topic's metadata every `period` until `shutdown`.
    pub async fn watch_metadata(
        self,
        period: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let inner = self.inner.clone();
            let topic = self.topic.clone();
            let ok = tokio::task::spawn_blocking(move || {
                match inner
                    .client()
                    .fetch_metadata(Some(&topic), Duration::from_secs(3))
                {
                    Ok(md) => md.topics().iter().any(|t| {
                        t.name() == &*topic && t.error().is_none() && !t.partitions().is_empty()
                    }),
                    Err(e) => {
                        debug!(error = %e, "no metadata for the topic");
                        false
                    }
                }
            })
            .await
            .unwrap_or(false);
            if ok != self.ready.swap(ok, Ordering::Relaxed) {
                if ok {
                    tracing::info!(topic = %self.topic, "kafka has the topic: ready");
                } else {
                    warn!(topic = %self.topic, "kafka or its topic is unreachable: not ready");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Hands one record for the pipeline's topic to librdkafka, which keeps
    /// its own copy (the caller may free `payload` at once), and returns the
    /// wait for Kafka's acknowledgement. A full queue is reported at once.
    pub fn enqueue(
        &self,
        key: &str,
        payload: &[u8],
    ) -> Result<impl Future<Output = Result<(), SendError>> + use<>, SendError> {
        let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .key(key.as_bytes())
            .payload(payload);
        self.enqueue_record(record)
    }

    fn enqueue_record(
        &self,
        record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<impl Future<Output = Result<(), SendError>> + use<>, SendError> {
        let delivery = self
            .inner
            .send_result(record)
            .map_err(|(e, _)| SendError::from(e))?;
        Ok(async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(SendError::from(e)),
                Err(_canceled) => Err(SendError::Kafka(KafkaError::Canceled)),
            }
        })
    }

    /// Sends one record and waits for Kafka's acknowledgement, waiting up to
    /// `queue_wait` for room in a full
    /// queue: for sources that can wait (generator, pull).
    pub async fn send_waiting(
        &self,
        key: &str,
        payload: &[u8],
        queue_wait: Duration,
    ) -> Result<(), SendError> {
        let record = FutureRecord::to(&self.topic)
            .key(key.as_bytes())
            .payload(payload);
        match self.inner.send(record, queue_wait).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(SendError::from(e)),
        }
    }

    async fn send_to(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), SendError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        self.enqueue_record(record)?.await
    }

    /// Sends a record to the dead-letter topic with headers that say why and
    /// where it came from, retrying until Kafka acknowledges it: a record is
    /// never dropped, so its offset is not stored before this returns.
    ///
    /// One refusal is permanent for the same record: too large for the
    /// dead-letter topic (the headers add to it, or the topic takes less
    /// than the source). Retrying it would stall the partition forever, so
    /// the dead letter is sent again without its payload, with a header
    /// that gives the payload's size; a record from the sink's topic is
    /// still there at the partition and offset the headers name. Any other
    /// error (the broker down, not authorised) is the cluster's state: it
    /// is waited for, with back-off, and logged.
    pub async fn dead_letter(
        &self,
        dlq_topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        reason: &str,
        origin: Origin<'_>,
    ) {
        let mut attempt = 0u32;
        let mut omitted = None;
        loop {
            let mut h = OwnedHeaders::new().insert(Header {
                key: headers::ERROR,
                value: Some(reason),
            });
            match &origin {
                Origin::Ingest { source } => {
                    h = h
                        .insert(Header {
                            key: headers::STAGE,
                            value: Some("ingest"),
                        })
                        .insert(Header {
                            key: headers::SOURCE_NAME,
                            value: Some(*source),
                        });
                }
                Origin::Sink {
                    topic,
                    partition,
                    offset,
                    write_timestamp,
                    timestamp_ms,
                    headers: own,
                } => {
                    for (key, value) in own.iter() {
                        h = h.insert(Header {
                            key,
                            value: Some(value),
                        });
                    }
                    if let Some(ms) = timestamp_ms {
                        h = h.insert(Header {
                            key: headers::SOURCE_TIMESTAMP,
                            value: Some(&ms.to_string()),
                        });
                    }
                    h = h
                        .insert(Header {
                            key: headers::STAGE,
                            value: Some("sink"),
                        })
                        .insert(Header {
                            key: headers::SOURCE_TOPIC,
                            value: Some(*topic),
                        })
                        .insert(Header {
                            key: headers::SOURCE_PARTITION,
                            value: Some(&partition.to_string()),
                        })
                        .insert(Header {
                            key: headers::SOURCE_OFFSET,
                            value: Some(&offset.to_string()),
                        })
                        .insert(Header {
                            key: headers::WRITE_TIMESTAMP,
                            value: Some(&write_timestamp.to_string()),
                        });
                }
                Origin::Replay {
                    token,
                    headers: kept,
                } => {
                    for (key, value) in kept.iter() {
                        if key == headers::ERROR || key == headers::REPLAY_TOKEN {
                            continue;
                        }
                        h = h.insert(Header {
                            key,
                            value: Some(value),
                        });
                    }
                    h = h.insert(Header {
                        key: headers::REPLAY_TOKEN,
                        value: Some(*token),
                    });
                }
            }
            if let Some(note) = &omitted {
                h = h.insert(Header {
                    key: headers::PAYLOAD_OMITTED,
                    value: Some(note),
                });
            }
            let body = if omitted.is_some() {
                Some(&[][..])
            } else {
                payload
            };
            match self.send_to(dlq_topic, key, body, Some(h)).await {
                Ok(()) => return,
                Err(SendError::TooLarge(_)) if omitted.is_none() => {
                    error!(
                        topic = dlq_topic,
                        bytes = payload.map_or(0, <[u8]>::len),
                        ?origin,
                        "the record is too large for the dead-letter topic; dead-lettering it without its payload"
                    );
                    omitted = Some(format!(
                        "{} bytes: too large for the dead-letter topic",
                        payload.map_or(0, <[u8]>::len)
                    ));
                }
                Err(e) => {
                    warn!(topic = dlq_topic, error = %e, attempt, "dead-lettering failed; retrying");
                    tokio::time::sleep(crate::backoff::delay(
                        attempt,
                        Duration::from_millis(200),
                        Duration::from_secs(10),
                    ))
                    .await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Waits up to `timeout` for queued records to be delivered.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.inner.flush(timeout) {
            warn!(error = %e, "flushing the producer");
        }
    }
}
