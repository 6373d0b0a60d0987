//! The sink: the pipeline's topic into its Cassandra table.
//!
//! One consumer reads; each record is mapped and written by its own task,
//! at most `maxInFlight` at once (a semaphore). An offset becomes safe only
//! when every earlier record of its partition is written or dead-lettered
//! ([`offsets`]); safe offsets are stored every [`STORE_INTERVAL`] and
//! librdkafka commits stored offsets every second. On revoke and on SIGTERM,
//! in-flight writes are drained within a deadline, the safe offsets stored
//! and committed.

pub mod offsets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use millrace_api::cql_value::{self, Bound};
use millrace_api::{RowMapper, cql};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::config::{Connections, Pipeline};
use crate::kafka::{Origin, Producer};
use crate::metrics::{Metrics, Reason};
use offsets::{OffsetTracker, Ticket};

/// How long a revoke or a shutdown waits for in-flight writes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);
/// Retries of a write that timed out or found too few replicas.
const WRITE_RETRIES: u32 = 8;
/// How often safe offsets are handed to librdkafka, which commits them
/// every second: well inside that, so commits are not delayed.
const STORE_INTERVAL: Duration = Duration::from_millis(100);

type Tracker = Arc<Mutex<OffsetTracker>>;

fn lock(tracker: &Tracker) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stores the safe offsets that moved (of `only`, else of every partition)
/// as the next offsets to read. Under the tracker's lock, so a lower safe
/// offset is never stored after a higher one.
fn store_safe(
    consumer: &impl Consumer<SinkContext>,
    topic: &str,
    tracker: &Tracker,
    only: Option<&[i32]>,
) {
    let mut t = lock(tracker);
    let safe = t.take_safe(only);
    if safe.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::with_capacity(safe.len());
    for (partition, offset) in safe {
        if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset + 1)) {
            warn!(error = %e, partition, "cannot store the offset");
        }
    }
    // Fails only for partitions revoked meanwhile, whose offsets the revoke
    // has committed already.
    if let Err(e) = consumer.store_offsets(&tpl) {
        debug!(error = %e, "storing offsets");
    }
    drop(t);
}

/// Reacts to rebalances and statistics of the sink's consumer.
struct SinkContext {
    tracker: Tracker,
    metrics: Arc<Metrics>,
    topic: String,
    assigned: Arc<AtomicBool>,
}

impl ClientContext for SinkContext {
    fn stats(&self, stats: Statistics) {
        if let Some(topic) = stats.topics.get(&self.topic) {
            for (partition, p) in &topic.partitions {
                if *partition < 0 {
                    continue; // librdkafka's internal "unassigned" partition
                }
                if !p.desired {
                    self.metrics.clear_lag(*partition);
                    continue;
                }
                let written = [p.stored_offset, p.committed_offset];
                if let Some(lag) = lag(p.lo_offset, p.hi_offset, written) {
                    self.metrics.set_lag(*partition, lag);
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(target: "librdkafka", "{fac}: {log_message}"),
            RDKafkaLogLevel::Warning => warn!(target: "librdkafka", "{fac}: {log_message}"),
            _ => debug!(target: "librdkafka", "{fac}: {log_message}"),
        }
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        info!(?partitions, "partitions revoked: draining in-flight writes");
        // The writes run on other runtime threads; this one waits for them.
        let drained = tokio::task::block_in_place(|| {
            let start = Instant::now();
            loop {
                let pending: usize = {
                    let t = lock(&self.tracker);
                    partitions.iter().map(|p| t.in_flight(*p)).sum()
                };
                if pending == 0 {
                    return true;
                }
                if start.elapsed() > DRAIN_DEADLINE {
                    warn!(
                        pending,
                        "revoke: writes still in flight after the deadline; another consumer will replay them"
                    );
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        store_safe(consumer, &self.topic, &self.tracker, Some(&partitions));
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(error = %e, "commit on revoke (nothing to commit is fine)");
        }
        let mut t = lock(&self.tracker);
        for p in &partitions {
            t.revoke(*p);
            self.metrics.clear_lag(*p);
        }
        debug!(drained, "revoke handled");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(?partitions, "partitions assigned");
                self.assigned.store(true, Ordering::Relaxed);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            debug!(error = %e, "offset commit");
        }
    }
}

/// Records of a partition not yet written: from the higher of the stored
/// offset (written by this consumer) and the committed one, to the high
/// watermark. `None` while librdkafka does not know the offsets yet.
fn lag(lo: i64, hi: i64, written: [i64; 2]) -> Option<i64> {
    if hi < 0 {
        return None;
    }
    match written.into_iter().filter(|o| *o >= 0).max() {
        Some(done) => Some((hi - done).max(0)),
        // Nothing written or committed: an empty partition has no lag.
        None if hi == lo => Some(0),
        None => None,
    }
}

/// What a write task needs, shared by all of them.
struct Writer {
    session: Session,
    insert: PreparedStatement,
    mapper: RowMapper,
    dlq: Producer,
    dlq_topic: String,
    topic: String,
    metrics: Arc<Metrics>,
}

/// One consumed record, owned so its task outlives the consumer's borrow.
struct Record {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Writer {
    /// Writes the record's row, or dead-letters it; returns when either is
    /// done, so its offset may be stored.
    async fn handle(&self, record: Record) {
        let origin = Origin::Sink {
            topic: &self.topic,
            partition: record.partition,
            offset: record.offset,
        };
        // Only the fields the columns read are parsed (RowMapper::parse):
        // JSON parsing was the largest part of the sink's CPU per row.
        let value = match self.mapper.parse(&record.payload) {
            Ok(v) => v,
            Err(e) => {
                self.fail(&record, Reason::NotJson, &format!("not JSON: {e}"), origin)
                    .await;
                return;
            }
        };
        let row = match self.mapper.map(&value) {
            Ok(row) => row,
            Err(e) => {
                self.fail(&record, Reason::Unmappable, &e.to_string(), origin)
                    .await;
                return;
            }
        };
        let values = cql_value::bind(
            row,
            cql_value::write_timestamp(record.timestamp_ms, record.offset),
        );
        let started = Instant::now();
        match self.write(&values).await {
            Ok(()) => {
                self.metrics
                    .write_latency
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.rows_written.inc();
            }
            Err(e) => {
                let reason = format!("cassandra refused the row: {e}");
                self.fail(&record, Reason::WriteFailed, &reason, origin)
                    .await;
            }
        }
    }

    async fn write(&self, values: &[Bound]) -> Result<(), ExecutionError> {
        let mut attempt = 0u32;
        loop {
            match self.session.execute_unpaged(&self.insert, values).await {
                Ok(_) => return Ok(()),
                Err(e) => match classify(&e) {
                    Retry::Never => return Err(e),
                    Retry::Limited if attempt >= WRITE_RETRIES => return Err(e),
                    Retry::Limited | Retry::Forever => {
                        warn!(error = %e, attempt, "write failed; retrying");
                        let pause = crate::backoff::delay(
                            attempt.min(WRITE_RETRIES),
                            Duration::from_millis(100),
                            Duration::from_secs(10),
                        );
                        tokio::time::sleep(pause).await;
                        attempt = attempt.saturating_add(1);
                    }
                },
            }
        }
    }

    async fn fail(&self, record: &Record, reason: Reason, message: &str, origin: Origin<'_>) {
        warn!(
            partition = record.partition,
            offset = record.offset,
            reason = reason.as_str(),
            "{message}; dead-lettering the record"
        );
        self.dlq
            .dead_letter(
                &self.dlq_topic,
                record.key.as_deref(),
                &record.payload,
                message,
                origin,
            )
            .await;
        self.metrics.rows_failed.inc();
        self.metrics.dead_lettered(reason);
    }
}

enum Retry {
    /// The row itself is at fault: retrying cannot help.
    Never,
    /// Timeouts, too few replicas, overload: retry a few times.
    Limited,
    /// No connection to the cluster at all: wait for it, never dead-letter
    /// good records because Cassandra is down.
    Forever,
}

fn classify(e: &ExecutionError) -> Retry {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => match db {
            DbError::Invalid
            | DbError::SyntaxError
            | DbError::AlreadyExists { .. }
            | DbError::FunctionFailure { .. }
            | DbError::TruncateError => Retry::Never,
            DbError::Unauthorized => Retry::Forever,
            _ => Retry::Limited,
        },
        ExecutionError::BadQuery(_) => Retry::Never,
        ExecutionError::ConnectionPoolError(_) | ExecutionError::EmptyPlan => Retry::Forever,
        _ => Retry::Limited,
    }
}

/// Runs the sink until `shutdown` turns true, then drains and commits.
pub async fn run(
    pipeline: Pipeline,
    connections: Connections,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let spec = &pipeline.spec;
    let topic = spec.kafka.topic.name.clone();
    let mapper = RowMapper::new(&spec.cassandra.table)?;

    let session = connections.cassandra_session(&pipeline).await?;
    let statement = cql::insert(&spec.cassandra.keyspace.name, &spec.cassandra.table);
    let mut insert = session.prepare(statement).await?;
    insert.set_consistency(consistency(spec.cassandra.consistency));
    insert.set_is_idempotent(true);
    info!(table = %spec.cassandra.table.name, "prepared the insert");

    let dlq = Producer::new(
        connections.kafka_config(&pipeline),
        &spec.dead_letter_topic(),
        Duration::from_secs(30),
    )?;
    let tracker: Tracker = Arc::default();
    // Ready once the group has assigned partitions (the session is up
    // already): set by the consumer's rebalance callback.
    let context = SinkContext {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        topic: topic.clone(),
        assigned: ready.clone(),
    };
    let consumer: StreamConsumer<SinkContext> = connections
        .kafka_config(&pipeline)
        .set("group.id", pipeline.consumer_group())
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "5000")
        .set("enable.partition.eof", "false")
        // librdkafka prefetches up to 64 MiB and 100,000 records by default,
        // which alone put the sink far above its 50 MB memory budget. 8 MiB
        // is still a quarter of a second of records at full rate, ahead of
        // the writes, which are the bottleneck.
        .set("queued.max.messages.kbytes", "8192")
        .set("queued.min.messages", "10000")
        // With the smaller queue full, librdkafka postpones the next fetch
        // by this much (default 1 s, which would let the queue run dry).
        .set("fetch.queue.backoff.ms", "20")
        // A sink that dies without leaving the group (kill -9, a lost node)
        // holds its partitions until the session times out: the default
        // 45 s stalled those partitions for most of a minute in the fault
        // suite. Heartbeats come from librdkafka's own thread, unaffected by
        // slow writes, so 10 s is safe for a process without GC pauses.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "3000")
        .create_with_context(context)?;
    consumer.subscribe(&[&topic])?;
    let consumer = Arc::new(consumer);
    info!(topic = %topic, group = %pipeline.consumer_group(), "consuming");

    let writer = Arc::new(Writer {
        session,
        insert,
        mapper,
        dlq: dlq.clone(),
        dlq_topic: spec.dead_letter_topic(),
        topic: topic.clone(),
        metrics,
    });
    let max_in_flight = spec.runner.max_in_flight.max(1) as u32;
    let permits = Arc::new(Semaphore::new(max_in_flight as usize));
    let storer = {
        let (consumer, tracker, topic) = (consumer.clone(), tracker.clone(), topic.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(STORE_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                store_safe(&*consumer, &topic, &tracker, None);
            }
        })
    };

    // Permits are taken `chunk` at a time, with as many records as are
    // ready: a finishing write then wakes this loop once per `chunk` rows,
    // not once per row (a cross-thread wake-up per row was a visible part
    // of the profile).
    let chunk = (max_in_flight / 16).clamp(1, 32);
    loop {
        let next = async {
            let batch = permits.clone().acquire_many_owned(chunk).await;
            (batch, consumer.recv().await)
        };
        let (batch, first) = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            next = next => next,
        };
        let Ok(mut batch) = batch else { break };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(message) => {
                    let record = Record {
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp_ms: message.timestamp().to_millis(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().unwrap_or_default().to_vec(),
                    };
                    drop(message);
                    // Always one: a record is read only while the batch has
                    // a permit left. Never a reason to drop the record.
                    let permit = batch.split(1);
                    let ticket: Ticket = lock(&tracker).start(record.partition, record.offset);
                    let writer = writer.clone();
                    let tracker = tracker.clone();
                    tokio::spawn(async move {
                        writer.handle(record).await;
                        // The offset is stored by the storer task, once every
                        // earlier record of the partition is done too.
                        lock(&tracker).finish(ticket);
                        drop(permit);
                    });
                }
                Err(e) => warn!(error = %e, "kafka consumer error"),
            }
            if batch.num_permits() > 0 {
                // Only a record that is already there: never wait holding
                // permits a finished write could use.
                next = consumer.recv().now_or_never();
            }
        }
    }

    ready.store(false, Ordering::Relaxed);
    let pending = lock(&tracker).total_in_flight();
    info!(pending, "shutting down: draining in-flight writes");
    match tokio::time::timeout(DRAIN_DEADLINE, permits.acquire_many(max_in_flight)).await {
        Ok(_) => info!("all in-flight writes finished"),
        Err(_) => warn!(
            pending = lock(&tracker).total_in_flight(),
            "writes still in flight after the deadline; they will be replayed"
        ),
    }
    storer.abort();
    store_safe(&*consumer, &topic, &tracker, None);
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        debug!(error = %e, "final commit (nothing to commit is fine)");
    }
    dlq.flush(Duration::from_secs(5));
    info!("sink stopped; offsets committed");
    Ok(())
}

fn consistency(c: millrace_api::Consistency) -> scylla::statement::Consistency {
    use millrace_api::Consistency as C;
    use scylla::statement::Consistency as S;
    match c {
        C::Any => S::Any,
        C::One => S::One,
        C::Two => S::Two,
        C::Three => S::Three,
        C::Quorum => S::Quorum,
        C::All => S::All,
        C::LocalQuorum => S::LocalQuorum,
        C::EachQuorum => S::EachQuorum,
        C::LocalOne => S::LocalOne,
    }
}

#[cfg(test)]
mod tests {
    use super::lag;

    #[test]
    fn lag_counts_from_the_stored_or_committed_offset() {
        assert_eq!(
            lag(0, 100, [40, 30]),
            Some(60),
            "stored is ahead of committed"
        );
        assert_eq!(
            lag(0, 100, [-1001, 100]),
            Some(0),
            "nothing stored yet, all committed"
        );
        assert_eq!(lag(5, 5, [-1001, -1001]), Some(0), "an empty partition");
        assert_eq!(lag(0, 9, [-1001, -1001]), None, "not known yet");
        assert_eq!(lag(0, -1, [3, 3]), None, "no watermark yet");
    }
}
