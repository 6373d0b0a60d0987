//! The sink: the pipeline's topic into its Cassandra tables.
//!
//! One consumer reads; each record is mapped and written by its own task
//! (to every table of the pipeline, the tables' writes side by side; a
//! record one of them refuses is dead-lettered once, naming it), or, with
//! `runner.batch`, the records read together by one task that writes each
//! partition's rows as one batch ([`batch`]),
//! at most `maxInFlight` at once (a semaphore). An offset becomes safe only
//! when every earlier record of its partition is written or dead-lettered
//! ([`offsets`]); safe offsets are stored every [`STORE_INTERVAL`] and
//! librdkafka commits stored offsets every second. On revoke and on SIGTERM,
//! in-flight writes are drained within a deadline, the safe offsets stored
//! and committed.
//!
//! Each row is written with a timestamp that grows with the offset in its
//! partition ([`write_time`]), so the latest version of a key wins however
//! its writes overlap; the chain is carried across owners in the commit.
//!
//! Records retention deleted before the sink read them are a loss, never
//! silent: a gap in a partition's offsets is held in flight until the
//! partition's first offset says how much of it was deleted unread
//! ([`judge_gap`]); the count goes into the commit for the operator's
//! status, into `millrace_records_skipped_total` and into the log.

mod batch;
pub mod offsets;
pub mod registry;
mod replay;
pub mod write_time;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use millrace_api::cql_value::{self, Bound};
use millrace_api::{
    CommitMetadata, KafkaRecordParts, RecordParser, RowMapper, TableSpec, avro, cql,
};
use prometheus_client::metrics::counter::Counter;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, error, info, warn};

use crate::config::{Connections, Pipeline};
use crate::kafka::{Origin, Producer};
use crate::kafka_health::{ClientHealth, ClientWatch};
use crate::metrics::{Metrics, Reason};
use offsets::{Gap, OffsetTracker, Safe, Ticket};
use write_time::OwnTime;

/// How long a revoke or a shutdown waits for in-flight writes.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);
/// The longest pause between two tries of a write that waits for the
/// cluster.
const WRITE_BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How often safe offsets are handed to librdkafka, which commits them
/// every second: well inside that, so commits are not delayed.
const STORE_INTERVAL: Duration = Duration::from_millis(100);

/// The consumer group session of the sink. It must outlast the loss of any
/// one Kafka broker, or the sink's group churns on every broker crash:
/// the group coordinator (Kafka 4's) answers a heartbeat only once the
/// `__consumer_offsets` partition's high watermark moves, so while a dead
/// broker is still in that partition's ISR (until the controller fences it,
/// `broker.session.timeout.ms`, 9 s by default, later on a loaded host) no
/// heartbeat succeeds. With 10 s the session expired ~8 s after a broker's
/// `kill -9`, whichever broker it was: every partition was revoked, the
/// revoke's commit failed (`UnknownMemberId`) and the rejoin waited another
/// session for the old member to expire, 20-25 s without writes. 30 s is
/// about twice the worst case seen (the time since the last heartbeat, plus
/// the fencing, plus one heartbeat interval), and still below the 45 s
/// default that held a dead sink's partitions too long.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// A third of the session at most (Kafka's advice); 3 s as before, so a
/// dead broker costs the same few heartbeats.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

type Tracker = Arc<Mutex<OffsetTracker>>;

fn lock(tracker: &Tracker) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The next offsets to read, each with the write timestamp of the record
/// before it and the partition's count of dead letters as metadata
/// ([`CommitMetadata`]).
fn offset_list(topic: &str, safe: &[Safe]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(safe.len());
    for s in safe {
        let mut elem = tpl.add_partition(topic, s.partition);
        if let Err(e) = elem.set_offset(Offset::Offset(s.offset + 1)) {
            warn!(error = %e, partition = s.partition, "cannot store the offset");
        }
        if let Some(ts) = s.write_timestamp {
            elem.set_metadata(
                CommitMetadata {
                    write_timestamp: ts,
                    dead_lettered: s.dead_lettered,
                    skipped: s.skipped,
                    timed_out: s.timed_out,
                }
                .encode(),
            );
        }
    }
    tpl
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
    // Fails only for partitions revoked meanwhile, whose offsets the revoke
    // has committed already.
    if let Err(e) = consumer.store_offsets(&offset_list(topic, &safe)) {
        debug!(error = %e, "storing offsets");
    }
    drop(t);
}

/// Commits every safe offset (of `only`, else of every partition) now, with
/// its write timestamp. An explicit list, because a commit of librdkafka's
/// stored offsets without one drops their metadata.
fn commit_safe(
    consumer: &impl Consumer<SinkContext>,
    topic: &str,
    tracker: &Tracker,
    only: Option<&[i32]>,
) {
    store_safe(consumer, topic, tracker, only);
    let safe = lock(tracker).all_safe(only);
    if safe.is_empty() {
        return;
    }
    if let Err(e) = consumer.commit(&offset_list(topic, &safe), CommitMode::Sync) {
        warn!(error = %e, "committing offsets");
    }
}

/// What the group committed for an assigned partition.
#[derive(Clone, Copy, Debug)]
struct Committed {
    partition: i32,
    /// The next offset to read, if the group has one.
    offset: Option<i64>,
    metadata: Option<CommitMetadata>,
}

/// The group's committed offsets of the assigned partitions, with their
/// metadata where there is any.
fn committed(
    consumer: &BaseConsumer<SinkContext>,
    assigned: &TopicPartitionList,
) -> KafkaResult<Vec<Committed>> {
    let committed = consumer.committed_offsets(assigned.clone(), Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| Committed {
            partition: e.partition(),
            offset: match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            metadata: CommitMetadata::decode(e.metadata()),
        })
        .collect())
}

/// How many offsets of `gap` retention deleted before the sink read them:
/// those below the partition's first offset now. Asked until Kafka answers,
/// holding the gap in flight meanwhile, so a loss is never assumed away.
async fn judge_gap(
    consumer: Arc<StreamConsumer<SinkContext>>,
    topic: String,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    gap: Gap,
) {
    let mut attempt = 0u32;
    let low = loop {
        let (c, t) = (consumer.clone(), topic.clone());
        let asked = tokio::task::spawn_blocking(move || {
            c.fetch_watermarks(&t, gap.partition, Duration::from_secs(5))
        })
        .await;
        match asked {
            Ok(Ok((low, _))) => break low,
            Ok(Err(e)) => {
                warn!(error = %e, partition = gap.partition, "reading the partition's first offset to judge a gap; retrying");
            }
            Err(e) => warn!(error = %e, "judging a gap"),
        }
        tokio::time::sleep(crate::backoff::delay(
            attempt.min(8),
            Duration::from_millis(200),
            Duration::from_secs(10),
        ))
        .await;
        attempt = attempt.saturating_add(1);
    };
    let skipped = gap.deleted_below(low);
    if skipped > 0 {
        error!(
            partition = gap.partition,
            from = gap.from,
            to = gap.to,
            skipped,
            "retention deleted records before the sink read them: they are lost to the table"
        );
        metrics.records_skipped.inc_by(skipped);
    } else {
        debug!(
            partition = gap.partition,
            from = gap.from,
            to = gap.to,
            "a gap in the offsets that retention did not make"
        );
    }
    lock(&tracker).finish_gap(gap, skipped);
}

/// Reacts to rebalances and statistics of the sink's consumer.
struct SinkContext {
    tracker: Tracker,
    metrics: Arc<Metrics>,
    topic: String,
    assigned: Arc<AtomicBool>,
    /// Set when the sink stops: the end of its drain. Closing the consumer
    /// revokes its partitions, and that revoke must not wait a second
    /// deadline for the writes the stop already waited for (the Pod has 30
    /// seconds in all).
    stop_by: std::sync::OnceLock<Instant>,
    /// Whether the consumer still knows its cluster (kafka_health).
    watch: Arc<ClientWatch>,
}

impl ClientContext for SinkContext {
    fn stats(&self, stats: Statistics) {
        self.watch.observe(&stats);
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
            let own = Instant::now() + DRAIN_DEADLINE;
            let deadline = self.stop_by.get().map_or(own, |stop| own.min(*stop));
            loop {
                let pending: usize = {
                    let t = lock(&self.tracker);
                    partitions.iter().map(|p| t.in_flight(*p)).sum()
                };
                if pending == 0 {
                    return true;
                }
                if Instant::now() >= deadline {
                    warn!(
                        pending,
                        "revoke: writes still in flight after the deadline; another consumer will replay them"
                    );
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        commit_safe(consumer, &self.topic, &self.tracker, Some(&partitions));
        let mut t = lock(&self.tracker);
        for p in &partitions {
            t.revoke(*p);
            self.metrics.clear_lag(*p);
        }
        debug!(drained, "revoke handled");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                info!(?partitions, "partitions assigned");
                // Before any record of these partitions is read: their write
                // timestamps continue where the last owner's commit left them.
                let resumed = tokio::task::block_in_place(|| {
                    let mut tries = 0;
                    loop {
                        match committed(consumer, tpl) {
                            Ok(r) => return Some(r),
                            Err(e) if tries < 3 => {
                                warn!(error = %e, "reading the committed offsets; retrying");
                                tries += 1;
                                std::thread::sleep(Duration::from_millis(500));
                            }
                            Err(e) => {
                                error!(error = %e, "cannot read the committed offsets: write timestamps restart from each partition's first record");
                                return None;
                            }
                        }
                    }
                });
                // A partition the group never committed starts at its first
                // offset now: recorded at once, so records deleted before
                // the sink reads them later count as lost, like any others.
                let mut started = Vec::new();
                for p in &partitions {
                    let known = resumed
                        .as_ref()
                        .and_then(|r| r.iter().find(|c| c.partition == *p))
                        .is_some_and(|c| c.offset.is_some());
                    if resumed.is_some()
                        && !known
                        && let Ok((low, _)) = tokio::task::block_in_place(|| {
                            consumer.fetch_watermarks(&self.topic, *p, Duration::from_secs(10))
                        })
                    {
                        started.push(Committed {
                            partition: *p,
                            offset: Some(low),
                            metadata: None,
                        });
                    }
                }
                if !started.is_empty() {
                    let mut tpl = TopicPartitionList::new();
                    for c in &started {
                        let _ = tpl
                            .add_partition(&self.topic, c.partition)
                            .set_offset(Offset::Offset(c.offset.unwrap_or(0)));
                    }
                    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                        warn!(error = %e, "recording where the sink starts on new partitions");
                    }
                }
                let mut t = lock(&self.tracker);
                for p in &partitions {
                    let c = resumed
                        .as_ref()
                        .and_then(|r| r.iter().find(|c| c.partition == *p))
                        .filter(|c| c.offset.is_some())
                        .or_else(|| started.iter().find(|c| c.partition == *p));
                    t.assign(*p, c.and_then(|c| c.metadata), c.and_then(|c| c.offset));
                }
                drop(t);
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

/// One table the sink writes, with its statements.
struct Table {
    /// `keyspace.table`, for messages.
    name: String,
    insert: PreparedStatement,
    /// The delete of one row, for a table whose spec has `deletes`.
    delete: Option<PreparedStatement>,
    mapper: RowMapper,
}

impl Table {
    async fn prepare(
        session: &Session,
        keyspace: &str,
        spec: &TableSpec,
        at: &str,
        consistency: scylla::statement::Consistency,
    ) -> anyhow::Result<Self> {
        let mapper = RowMapper::new_at(spec, at)?;
        let mut insert = session.prepare(cql::insert(keyspace, spec)).await?;
        insert.set_consistency(consistency);
        insert.set_is_idempotent(true);
        let delete = match &spec.deletes {
            Some(_) => {
                let mut delete = session.prepare(cql::delete(keyspace, spec)).await?;
                delete.set_consistency(consistency);
                delete.set_is_idempotent(true);
                Some(delete)
            }
            None => None,
        };
        info!(table = %spec.name, "prepared the insert");
        Ok(Self {
            name: format!("{keyspace}.{}", spec.name),
            insert,
            delete,
            mapper,
        })
    }
}

/// What a write task needs, shared by all of them.
struct Writer {
    session: Session,
    /// Every table, the one that keys the records first. Never empty.
    tables: Vec<Table>,
    /// Parses a JSON record once for every table.
    parser: RecordParser,
    /// The headers any table's columns read.
    header_names: Vec<String>,
    /// The registry of an Avro topic; `None` reads records as JSON.
    registry: Option<registry::Registry>,
    dlq: Producer,
    dlq_topic: String,
    topic: String,
    metrics: Arc<Metrics>,
}

/// One consumed record, owned so its task outlives the consumer's borrow.
struct Record {
    partition: i32,
    offset: i64,
    /// From the partition's chain ([`write_time`]).
    write_timestamp: i64,
    /// The Kafka record's own timestamp, in milliseconds.
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    /// The headers the columns read (only those), each with its last
    /// value.
    headers: Vec<(String, Vec<u8>)>,
    /// `None` for a tombstone.
    payload: Option<Vec<u8>>,
}

/// A record's value as the mappings read it; or why it goes to the
/// dead-letter topic.
type Decoded = Result<serde_json::Value, (Reason, String)>;

/// Why a table did not take a record.
type Refusal = (Reason, String);

impl Writer {
    /// The table whose partition key keys the records.
    fn key_table(&self) -> &Table {
        // Built from a validated spec with at least one table.
        &self.tables[0]
    }

    /// The headers of `message` that the tables' columns read, each with
    /// its last value; nothing is copied for tables that read none.
    fn wanted_headers(&self, message: &BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        if self.header_names.is_empty() {
            return out;
        }
        let Some(headers) = message.headers() else {
            return out;
        };
        for name in &self.header_names {
            if let Some(h) = headers.iter().filter(|h| h.key == name).last() {
                out.push((name.clone(), h.value.unwrap_or_default().to_vec()));
            }
        }
        out
    }

    /// The record's own write time, for its place in the partition's
    /// chain: every table reads it from the same place (validation sees
    /// to it).
    fn own_write_time(&self, decoded: &Decoded) -> Option<i64> {
        let value = decoded.as_ref().ok()?;
        self.key_table()
            .mapper
            .settings(value)
            .ok()?
            .write_time_micros
    }

    /// Writes the record's row, or dead-letters it; returns when either is
    /// done, so its offset may be stored.
    /// With the outcome, how many tries of the write Cassandra timed out or
    /// refused as overloaded.
    /// `decoded` is the record already decoded, when the consumer had to
    /// read its write time.
    async fn handle(&self, record: Record, decoded: Option<Decoded>) -> (Outcome, u64) {
        let origin = self.origin(&record);
        self.handle_counted(&record, origin, decoded).await
    }

    /// Where a record of the stream came from, for its dead letter.
    fn origin<'r>(&'r self, record: &'r Record) -> Origin<'r> {
        Origin::Sink {
            topic: &self.topic,
            partition: record.partition,
            offset: record.offset,
            write_timestamp: record.write_timestamp,
            timestamp_ms: record.timestamp_ms,
            headers: &record.headers,
        }
    }

    /// As [`Writer::handle`], dead-lettering what fails as coming from
    /// `origin`.
    async fn handle_as(&self, record: &Record, origin: Origin<'_>) -> Outcome {
        self.handle_counted(record, origin, None).await.0
    }

    /// The record's value, from Avro through the registry or from JSON.
    async fn decode(&self, record: &Record) -> Decoded {
        let payload = record.payload.as_deref().unwrap_or_default();
        match &self.registry {
            // Boxed, as the write is ([`Writer::write`]): the registry's
            // HTTP request would otherwise grow every record's task.
            Some(registry) => {
                Box::pin(self.decode_avro(registry, record.partition, record.offset, payload)).await
            }
            None => self.decode_json(payload),
        }
    }

    /// The record's value: `None` for a tombstone, else `decoded` (when the
    /// consumer decoded it already) or decoded now.
    async fn value_of(&self, record: &Record, decoded: Option<Decoded>) -> Option<Decoded> {
        match (&record.payload, decoded) {
            (None, _) => None,
            (Some(_), Some(d)) => Some(d),
            (Some(_), None) => Some(self.decode(record).await),
        }
    }

    /// A JSON record's value. Only the fields the tables' columns (and
    /// `ttl`, `writeTime`, `deletes`) read are parsed ([`RecordParser`]),
    /// once for every table: JSON parsing was the largest part of the
    /// sink's CPU per row.
    fn decode_json(&self, payload: &[u8]) -> Decoded {
        self.parser
            .parse(payload)
            .map_err(|e| (Reason::NotJson, format!("not JSON: {e}")))
    }

    async fn handle_counted(
        &self,
        record: &Record,
        origin: Origin<'_>,
        decoded: Option<Decoded>,
    ) -> (Outcome, u64) {
        let parts = KafkaRecordParts {
            key: record.key.as_deref(),
            timestamp_ms: record.timestamp_ms,
            headers: &record.headers,
        };
        let value = match self.value_of(record, decoded).await {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err((reason, why))) => {
                self.fail(record, reason, &why, origin).await;
                return (Outcome::DeadLettered, 0);
            }
        };
        let value = value.as_ref();
        // One table (the common case) needs no list of futures.
        let results = if let [table] = self.tables.as_slice() {
            vec![self.write_table(table, record, value, &parts).await]
        } else {
            futures::future::join_all(
                self.tables
                    .iter()
                    .map(|t| self.write_table(t, record, value, &parts)),
            )
            .await
        };
        let timed_out = results.iter().map(|(_, n)| n).sum();
        let refused = self.combine(
            self.tables
                .iter()
                .zip(results)
                .filter_map(|(table, (result, _))| result.err().map(|r| (table, r))),
        );
        match refused {
            None => (Outcome::Written, timed_out),
            Some((reason, why)) => {
                self.fail(record, reason, &why, origin).await;
                (Outcome::DeadLettered, timed_out)
            }
        }
    }

    /// One refusal for a record from every table's (in the tables' order):
    /// the first table's reason labels the dead letter, and every table's
    /// words are in its message. `None` when no table refused.
    fn combine<'t>(&self, refusals: impl Iterator<Item = (&'t Table, Refusal)>) -> Option<Refusal> {
        let several = self.tables.len() > 1;
        let mut refused: Option<Refusal> = None;
        for (table, (reason, why)) in refusals {
            let why = if several {
                format!("table {}: {why}", table.name)
            } else {
                why
            };
            refused = Some(match refused {
                Some((first, so_far)) => (first, format!("{so_far}; {why}")),
                None => (reason, why),
            });
        }
        refused
    }

    /// Writes (or deletes) the record's row in `table`; or says why the
    /// table cannot take the record. `value` is `None` for a tombstone.
    /// With the result, the tries Cassandra timed out ([`Writer::write`]).
    async fn write_table(
        &self,
        table: &Table,
        record: &Record,
        value: Option<&serde_json::Value>,
        parts: &KafkaRecordParts<'_>,
    ) -> (Result<(), Refusal>, u64) {
        match self.statement_for(table, record, value, parts) {
            Ok(op) => {
                self.execute(op.statement, &op.values, op.done, op.what)
                    .await
            }
            Err(refusal) => (Err(refusal), 0),
        }
    }

    /// The insert (or delete) that writes the record's row in `table`,
    /// with its values; or why the table cannot take the record. `value`
    /// is `None` for a tombstone.
    fn statement_for<'w>(
        &'w self,
        table: &'w Table,
        record: &Record,
        value: Option<&serde_json::Value>,
        parts: &KafkaRecordParts<'_>,
    ) -> Result<RowWrite<'w>, Refusal> {
        let mapper = &table.mapper;
        let Some(value) = value else {
            // A tombstone deletes the row its key names, if the spec says
            // so; otherwise it goes to the dead-letter topic, where a
            // replay after turning `deletes.tombstones` on still deletes
            // the row.
            if !mapper.deletes_tombstones() {
                let why = "a tombstone (a record without a value), and the table's deletes.tombstones is off";
                return Err((Reason::Tombstone, why.to_owned()));
            }
            return match mapper.tombstone_record(record.key.as_deref()) {
                Ok(value) => self.delete_for(table, record, &value, parts),
                Err(e) => Err((Reason::Unmappable, e.to_string())),
            };
        };
        let settings = mapper
            .settings(value)
            .map_err(|e| (Reason::Unmappable, e.to_string()))?;
        if mapper.is_delete(value) {
            return self.delete_for(table, record, value, parts);
        }
        let row = mapper
            .map_record(value, parts)
            .map_err(|e| (Reason::Unmappable, e.to_string()))?;
        let ttl = mapper.binds_ttl().then_some(settings.ttl);
        Ok(RowWrite {
            statement: &table.insert,
            values: cql_value::bind(row, ttl, record.write_timestamp),
            done: &self.metrics.rows_written,
            what: "row",
        })
    }

    /// Executes the record's insert or delete ([`Writer::write`]), counting
    /// it in `done`; or says why Cassandra refused the `what`.
    async fn execute(
        &self,
        statement: &PreparedStatement,
        values: &[Bound],
        done: &Counter,
        what: &str,
    ) -> (Result<(), Refusal>, u64) {
        let started = Instant::now();
        let (result, timed_out) = self.write(statement, values).await;
        match result {
            Ok(()) => {
                self.metrics
                    .write_latency
                    .observe(started.elapsed().as_secs_f64());
                done.inc();
                (Ok(()), timed_out)
            }
            Err(e) => {
                let reason = format!("cassandra refused the {what}: {e}");
                (Err((Reason::WriteFailed, reason)), timed_out)
            }
        }
    }

    /// The delete of the row of `table` that `value` names, at the
    /// record's write time.
    fn delete_for<'w>(
        &'w self,
        table: &'w Table,
        record: &Record,
        value: &serde_json::Value,
        parts: &KafkaRecordParts<'_>,
    ) -> Result<RowWrite<'w>, Refusal> {
        let Some(statement) = &table.delete else {
            // The mapper calls records deletes only for a spec with
            // `deletes`, for which the delete is prepared.
            let why = "a delete, but no delete statement was prepared";
            return Err((Reason::WriteFailed, why.to_owned()));
        };
        let key = table.mapper.delete_key(value, parts).map_err(|e| {
            let why = format!("a delete must name every primary key column: {e}");
            (Reason::Unmappable, why)
        })?;
        Ok(RowWrite {
            statement,
            values: cql_value::bind_delete(key, record.write_timestamp),
            done: &self.metrics.rows_deleted,
            what: "delete",
        })
    }

    /// The record as the JSON value the mapping reads, decoded with its
    /// writer schema; or why it goes to the dead-letter topic. While the
    /// registry cannot answer, the record waits for it like a write waits
    /// for Cassandra, keeping its permit and its offset uncommitted.
    async fn decode_avro(
        &self,
        registry: &registry::Registry,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> Result<serde_json::Value, (Reason, String)> {
        let (id, datum) =
            avro::split_wire(payload).map_err(|e| (Reason::NotAvro, e.to_string()))?;
        let mut attempt = 0u32;
        let mut waiting = None;
        let schema = loop {
            match registry.schema(id).await {
                Ok(schema) => break schema,
                Err(e @ registry::RegistryError::Unknown(_)) => {
                    return Err((Reason::UnknownSchema, e.to_string()));
                }
                Err(e @ registry::RegistryError::Invalid { .. }) => {
                    return Err((Reason::NotAvro, e.to_string()));
                }
                Err(e @ registry::RegistryError::Unavailable { .. }) => {
                    const WHY: &str = "schema_registry";
                    if waiting.is_none() {
                        waiting = Some(self.metrics.waiting_write(WHY));
                    }
                    self.metrics.write_retried(WHY);
                    if attempt == 3 || (attempt > 3 && attempt.is_multiple_of(30)) {
                        warn!(error = %e, attempt, partition, offset, "waiting for the schema registry");
                    } else {
                        debug!(error = %e, attempt, "schema registry unavailable; retrying");
                    }
                    tokio::time::sleep(crate::backoff::delay(
                        attempt.min(16),
                        Duration::from_millis(100),
                        WRITE_BACKOFF_CAP,
                    ))
                    .await;
                    attempt = attempt.saturating_add(1);
                }
            }
        };
        schema
            .decode(datum)
            .map_err(|e| (Reason::NotAvro, format!("schema id {id}: {e}")))
    }

    /// Writes the row, waiting as long as the cluster cannot take writes:
    /// only an error that says the row itself is at fault is returned. A
    /// waiting write keeps its permit, so the sink stops reading new
    /// records (back-pressure) instead of piling them up in memory. With
    /// the result, the tries Cassandra timed out or refused as overloaded:
    /// it was the bottleneck for them, which the commits report.
    async fn write(
        &self,
        statement: &PreparedStatement,
        values: &[Bound],
    ) -> (Result<(), ExecutionError>, u64) {
        // Boxed: the driver's request future is about 3.9 KB, and every
        // future that awaits it inline grows by that much, up to the
        // record's task (5.2 KB), which is then moved by value as it is
        // built and spawned. Those copies were the largest item of the
        // sink's profile (memcpy, 12-20% of its CPU); one heap allocation
        // per write costs far less.
        self.retrying(|| Box::pin(self.session.execute_unpaged(statement, values)))
            .await
    }

    /// Makes the `request` until Cassandra takes it or says the rows
    /// themselves are at fault ([`Writer::write`]).
    async fn retrying<F, Fut>(&self, mut request: F) -> (Result<(), ExecutionError>, u64)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<QueryResult, ExecutionError>>,
    {
        let mut attempt = 0u32;
        let mut waiting = None;
        let mut timed_out = 0u64;
        loop {
            match request().await {
                Ok(_) => return (Ok(()), timed_out),
                Err(e) => match classify(&e) {
                    Retry::Never => return (Err(e), timed_out),
                    Retry::Wait => {
                        let what = wait_reason(&e);
                        if matches!(what, "timeout" | "overloaded") {
                            timed_out += 1;
                        }
                        if waiting.is_none() {
                            waiting = Some(self.metrics.waiting_write(what));
                        }
                        self.metrics.write_retried(what);
                        // The first tries of a write are routine (a timeout
                        // under load); a write still waiting is worth a
                        // warning every few tries, not on each.
                        if attempt == 3 || (attempt > 3 && attempt.is_multiple_of(30)) {
                            warn!(error = %e, attempt, "Cassandra cannot take the write; waiting for it");
                        } else {
                            debug!(error = %e, attempt, "write failed; retrying");
                        }
                        let pause = crate::backoff::delay(
                            attempt.min(16),
                            Duration::from_millis(100),
                            WRITE_BACKOFF_CAP,
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
        // Boxed, as the write is ([`Writer::write`]): a rare path that
        // would otherwise grow every record's task.
        Box::pin(self.dlq.dead_letter(
            &self.dlq_topic,
            record.key.as_deref(),
            record.payload.as_deref(),
            message,
            origin,
        ))
        .await;
        self.metrics.rows_failed.inc();
        self.metrics.dead_lettered(reason);
    }
}

/// One statement a record makes in one table: the insert of its row, or
/// the delete of the row it names.
struct RowWrite<'w> {
    statement: &'w PreparedStatement,
    values: Vec<Bound>,
    /// Counts the statement once Cassandra has it.
    done: &'w Counter,
    /// `row` or `delete`, for messages.
    what: &'static str,
}

/// What became of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Written,
    DeadLettered,
}

#[derive(Debug, PartialEq, Eq)]
enum Retry {
    /// The row itself is at fault: no retry can help, so it is
    /// dead-lettered.
    Never,
    /// The cluster's state (timeouts, too few replicas, overload, no
    /// connection, a missing table, missing permissions): wait for it as
    /// long as it lasts, never dead-letter a good record because of it.
    Wait,
}

fn classify(e: &ExecutionError) -> Retry {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message)) => match db {
            DbError::Invalid if is_missing_table(message) => Retry::Wait,
            DbError::Invalid
            | DbError::SyntaxError
            | DbError::FunctionFailure { .. }
            | DbError::AlreadyExists { .. }
            | DbError::TruncateError => Retry::Never,
            _ => Retry::Wait,
        },
        // The driver could not serialize the row into the statement's
        // types: the row does not fit the table.
        ExecutionError::BadQuery(_) => Retry::Never,
        _ => Retry::Wait,
    }
}

/// Cassandra's words for a table (or keyspace) that does not exist: the
/// table was dropped under the pipeline, which the operator reports and
/// re-creates; the records wait for it.
fn is_missing_table(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("unconfigured table")
        || m.contains("table") && m.contains("does not exist")
        || m.contains("keyspace") && m.contains("does not exist")
}

/// Cassandra's words for an authentication or authorization it could not
/// make because too few replicas of its auth tables answered.
fn is_auth_unavailable(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("cannot achieve consistency level")
}

/// Why a write waits, as the metrics' `reason` label (a small fixed set).
fn wait_reason(e: &ExecutionError) -> &'static str {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message)) => match db {
            DbError::WriteTimeout { .. } | DbError::ReadTimeout { .. } => "timeout",
            DbError::Unavailable { .. } => "unavailable",
            DbError::Overloaded | DbError::RateLimitReached { .. } => "overloaded",
            // Cassandra reads the role behind a permission check at
            // LOCAL_QUORUM once its 2 s cache expires: with too few of
            // system_auth's replicas up, a write is refused as unauthorized
            // though only replicas are missing.
            DbError::Unauthorized | DbError::AuthenticationError
                if is_auth_unavailable(message) =>
            {
                "unavailable"
            }
            DbError::Unauthorized | DbError::AuthenticationError => "unauthorized",
            DbError::Invalid if is_missing_table(message) => "missing_table",
            _ => "server_error",
        },
        ExecutionError::RequestTimeout(_) => "timeout",
        _ => "no_connection",
    }
}

/// Runs the sink until `shutdown` turns true, then drains and commits.
pub async fn run(
    pipeline: Pipeline,
    connections: Connections,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    health: &ClientHealth,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let spec = &pipeline.spec;
    let topic = spec.kafka.topic.name.clone();
    let session = connections.cassandra_session(&pipeline).await?;
    let mut tables = Vec::new();
    for (i, table) in spec.cassandra.tables().iter().enumerate() {
        let at = spec.cassandra.table_path(i);
        let level = consistency(spec.cassandra.consistency);
        tables.push(
            Table::prepare(&session, &spec.cassandra.keyspace.name, table, &at, level).await?,
        );
    }
    if tables.is_empty() {
        anyhow::bail!("the pipeline declares no table to write");
    }
    let mappers: Vec<RowMapper> = tables.iter().map(|t| t.mapper.clone()).collect();
    let parser = RecordParser::new(&mappers);
    let mut header_names: Vec<String> = mappers
        .iter()
        .flat_map(|m| m.header_names().map(str::to_owned))
        .collect();
    header_names.sort_unstable();
    header_names.dedup();

    let dlq = Producer::new(
        connections.kafka_config(&pipeline),
        &spec.dead_letter_topic(),
        Duration::from_secs(30),
        health.watch("dead-letter producer"),
    )?;
    let tracker: Tracker = Arc::default();
    // Ready once the group has assigned partitions (the session is up
    // already): set by the consumer's rebalance callback.
    let context = SinkContext {
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        topic: topic.clone(),
        assigned: ready.clone(),
        stop_by: std::sync::OnceLock::new(),
        watch: health.watch("sink consumer"),
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
        // and fetches up to 1 MiB per partition and 50 MiB per request, lz4
        // batches decompressed beside the compressed response: in glibc's
        // heap, which returns little once it has grown, that held the sink
        // at 54-58 MiB reading a topic its ingest was filling. These bounds
        // kept it at 30-34 MiB at no CPU cost the side-by-side benches could
        // tell apart (bench/ANALYSIS.md); 2,000 records are still about 50 ms
        // of writes at full rate, and Kafka returns a batch larger than the
        // fetch sizes whole. librdkafka refuses a `fetch.max.bytes` below
        // `message.max.bytes`, which nothing here raises from 1,000,000.
        .set("queued.max.messages.kbytes", "4096")
        .set("queued.min.messages", "2000")
        .set("max.partition.fetch.bytes", "262144")
        .set("fetch.max.bytes", "1048576")
        // With the smaller queue full, librdkafka postpones the next fetch
        // by this much (default 1 s, which would let the queue run dry).
        .set("fetch.queue.backoff.ms", "20")
        // A sink that dies without leaving the group (kill -9, a lost node)
        // holds its partitions until the session times out: the default
        // 45 s stalled those partitions for most of a minute in the fault
        // suite. Heartbeats come from librdkafka's own thread, unaffected by
        // slow writes; but the session must outlast a Kafka broker's loss
        // ([`SESSION_TIMEOUT`]).
        .set(
            "session.timeout.ms",
            SESSION_TIMEOUT.as_millis().to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            HEARTBEAT_INTERVAL.as_millis().to_string(),
        )
        // While Cassandra cannot take writes, every permit is held by a
        // waiting write and the loop deliberately stops reading. With the
        // default 5 minute poll limit, librdkafka would then take the
        // sink out of its group and churn rebalances for as long as the
        // outage lasts; a sink that died is still found by the session
        // timeout above, which heartbeats keep apart from reading.
        .set("max.poll.interval.ms", "86400000")
        .create_with_context(context)?;
    consumer.subscribe(&[&topic])?;
    let consumer = Arc::new(consumer);
    info!(topic = %topic, group = %pipeline.consumer_group(), "consuming");

    let registry = match spec.avro_registry() {
        Some(r) => {
            // Not the URL: it may carry a login in its user part.
            info!("reading Avro records, their schemas from the schema registry");
            Some(registry::Registry::new(
                &r.url,
                connections.schema_registry_credentials.clone(),
                connections.schema_registry_ca_pem.as_deref(),
            )?)
        }
        None => None,
    };
    let writer = Arc::new(Writer {
        session,
        tables,
        parser,
        header_names,
        registry,
        dlq: dlq.clone(),
        dlq_topic: spec.dead_letter_topic(),
        topic: topic.clone(),
        metrics,
    });
    // A replay of the dead letters, when one was asked for, beside the
    // stream and through the same writer.
    let replay = replay::token_from_env().map(|token| {
        let (pipeline, connections, writer, metrics, shutdown) = (
            pipeline.clone(),
            connections.clone(),
            writer.clone(),
            writer.metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) =
                replay::run(token, &pipeline, &connections, writer, metrics, shutdown).await
            {
                error!(error = %e, "the dead-letter replay stopped");
            }
        })
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

    // With `batch`, the records read together (up to its `maxRecords`, or
    // what comes within its `maxDelayMs`) go to one task that groups their
    // rows by partition ([`batch`]).
    // Validation keeps maxRecords within 2..=maxInFlight; the clamp only
    // keeps a permit count the semaphore can give.
    let batching = spec.runner.batch.as_ref().map(|b| {
        let records = u32::try_from(b.max_records)
            .unwrap_or(1)
            .clamp(1, max_in_flight);
        let delay = Duration::from_millis(u64::try_from(b.max_delay_ms).unwrap_or(0));
        (records, delay)
    });
    if let Some((records, delay)) = batching {
        info!(
            records,
            delay_ms = delay.as_millis() as u64,
            "grouping each partition's rows into unlogged batches"
        );
    }
    // Permits are taken `chunk` at a time, with as many records as are
    // ready: a finishing write then wakes this loop once per `chunk` rows,
    // not once per row (a cross-thread wake-up per row was a visible part
    // of the profile).
    let chunk = match batching {
        Some((records, _)) => records,
        None => (max_in_flight / 16).clamp(1, 32),
    };
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
        let opened = tokio::time::Instant::now();
        let mut grouped: Vec<batch::Pending> = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Ok(message) => {
                    let (record, decoded, ticket) =
                        read_record(&writer, &tracker, &consumer, &topic, &message);
                    drop(message);
                    // Always one: a record is read only while the batch has
                    // a permit left. Never a reason to drop the record.
                    let permit = batch.split(1);
                    if batching.is_some() {
                        grouped.push(batch::Pending {
                            record,
                            decoded,
                            ticket,
                            permit,
                        });
                    } else {
                        let writer = writer.clone();
                        let tracker = tracker.clone();
                        tokio::spawn(async move {
                            let (outcome, timed_out) = writer.handle(record, decoded).await;
                            // The offset is stored by the storer task, once
                            // every earlier record of the partition is done
                            // too.
                            lock(&tracker).finish_counted(
                                ticket,
                                outcome == Outcome::DeadLettered,
                                timed_out,
                            );
                            drop(permit);
                        });
                    }
                }
                Err(e) => warn!(error = %e, "kafka consumer error"),
            }
            continue_reading(&mut next, &batch, &consumer, batching, opened).await;
        }
        if !grouped.is_empty() {
            let (writer, tracker) = (writer.clone(), tracker.clone());
            let rows = chunk as usize;
            tokio::spawn(async move { writer.handle_chunk(grouped, rows, &tracker).await });
        }
    }

    ready.store(false, Ordering::Relaxed);
    let pending = lock(&tracker).total_in_flight();
    info!(pending, "shutting down: draining in-flight writes");
    let _ = consumer
        .context()
        .stop_by
        .set(Instant::now() + DRAIN_DEADLINE);
    match tokio::time::timeout(DRAIN_DEADLINE, permits.acquire_many(max_in_flight)).await {
        Ok(_) => info!("all in-flight writes finished"),
        Err(_) => warn!(
            pending = lock(&tracker).total_in_flight(),
            "writes still in flight after the deadline; they will be replayed"
        ),
    }
    storer.abort();
    commit_safe(&*consumer, &topic, &tracker, None);
    if let Some(replay) = replay
        && tokio::time::timeout(DRAIN_DEADLINE, replay).await.is_err()
    {
        warn!("the dead-letter replay did not stop in time; it resumes from its last commit");
    }
    dlq.flush(Duration::from_secs(5));
    info!("sink stopped; offsets committed");
    Ok(())
}

/// Takes the next record off the consumer into `next`, while `permits`
/// has any left: only one that is already there, never waiting holding
/// permits a finished write could use; except that a batch
/// (`batching`, with its delay) waits up to its delay from `opened`.
async fn continue_reading<'c>(
    next: &mut Option<KafkaResult<BorrowedMessage<'c>>>,
    permits: &tokio::sync::OwnedSemaphorePermit,
    consumer: &'c StreamConsumer<SinkContext>,
    batching: Option<(u32, Duration)>,
    opened: tokio::time::Instant,
) {
    if permits.num_permits() == 0 {
        return;
    }
    *next = consumer.recv().now_or_never();
    if next.is_some() {
        return;
    }
    if let Some((_, delay)) = batching
        && !delay.is_zero()
        && let Ok(message) = tokio::time::timeout_at(opened + delay, consumer.recv()).await
    {
        *next = Some(message);
    }
}

/// A consumed record, owned, with its place in its partition's chain of
/// write timestamps; and its value when its write time had to be read
/// from it.
fn read_record(
    writer: &Writer,
    tracker: &Tracker,
    consumer: &Arc<StreamConsumer<SinkContext>>,
    topic: &str,
    message: &BorrowedMessage<'_>,
) -> (Record, Option<Decoded>, Ticket) {
    let timestamp_ms = message.timestamp().to_millis();
    // A write time read from the record is needed before the record's
    // place in the chain is: the record is decoded here, once, and its
    // task gets the result.
    let (own, decoded) = match message.payload() {
        _ if !writer.key_table().mapper.reads_write_time() => (OwnTime::Kafka(timestamp_ms), None),
        // A tombstone has no time of its own.
        None => (OwnTime::After(timestamp_ms), None),
        Some(payload) => {
            let decoded = writer.decode_json(payload);
            let own = writer
                .own_write_time(&decoded)
                .map_or(OwnTime::Unknown, OwnTime::Record);
            (own, Some(decoded))
        }
    };
    // In the order the partition holds its records, so the write
    // timestamps follow the offsets.
    let (gap, ticket): (Option<Gap>, Ticket) = {
        let mut t = lock(tracker);
        let gap = t.gap(message.partition(), message.offset());
        let ticket = t.start_from(message.partition(), message.offset(), own);
        (gap, ticket)
    };
    if let Some(gap) = gap {
        tokio::spawn(judge_gap(
            consumer.clone(),
            topic.to_owned(),
            tracker.clone(),
            writer.metrics.clone(),
            gap,
        ));
    }
    let record = Record {
        partition: ticket.partition,
        offset: ticket.offset,
        write_timestamp: ticket.write_timestamp,
        timestamp_ms,
        key: message.key().map(<[u8]>::to_vec),
        headers: writer.wanted_headers(message),
        payload: message.payload().map(<[u8]>::to_vec),
    };
    (record, decoded, ticket)
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
    use super::*;

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

    #[test]
    fn the_group_session_outlasts_the_fencing_of_a_dead_broker() {
        // Kafka's default broker.session.timeout.ms: a dead broker stays in
        // the ISR of __consumer_offsets, and heartbeats go unanswered, at
        // least this long.
        let fencing = Duration::from_secs(9);
        assert!(
            SESSION_TIMEOUT >= 2 * (fencing + HEARTBEAT_INTERVAL),
            "a broker's crash would expire the sink's session"
        );
        assert!(SESSION_TIMEOUT >= 3 * HEARTBEAT_INTERVAL);
        assert!(
            SESSION_TIMEOUT < Duration::from_secs(45),
            "a dead sink would hold its partitions as long as the default"
        );
    }

    fn db(error: DbError, message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, message.to_owned()))
    }

    #[test]
    fn only_errors_of_the_row_itself_are_never_retried() {
        use scylla::errors::{BadQuery, WriteType};
        use scylla::statement::Consistency as C;
        let waits = [
            db(
                DbError::WriteTimeout {
                    consistency: C::LocalQuorum,
                    received: 1,
                    required: 2,
                    write_type: WriteType::Simple,
                },
                "timed out",
            ),
            db(
                DbError::Unavailable {
                    consistency: C::LocalQuorum,
                    required: 2,
                    alive: 1,
                },
                "cannot achieve consistency",
            ),
            db(DbError::Overloaded, "overloaded"),
            db(DbError::Unauthorized, "no MODIFY permission"),
            db(DbError::Invalid, "unconfigured table users"),
            db(DbError::ServerError, "boom"),
            ExecutionError::EmptyPlan,
            // Two of three nodes down: the superuser check cannot be made.
            db(
                DbError::Unauthorized,
                "Unable to perform authorization of super-user permission: \
                 Cannot achieve consistency level LOCAL_QUORUM",
            ),
        ];
        for e in &waits {
            assert_eq!(classify(e), Retry::Wait, "{e}");
        }
        assert_eq!(wait_reason(&waits[0]), "timeout");
        assert_eq!(wait_reason(&waits[1]), "unavailable");
        assert_eq!(wait_reason(&waits[2]), "overloaded");
        assert_eq!(wait_reason(&waits[4]), "missing_table");
        assert_eq!(wait_reason(&waits[3]), "unauthorized");
        assert_eq!(wait_reason(&waits[6]), "no_connection");
        assert_eq!(wait_reason(&waits[7]), "unavailable");
        let never = [
            db(
                DbError::Invalid,
                "Invalid INTEGER constant (x) for \"phone\" of type int",
            ),
            db(DbError::SyntaxError, "line 1"),
            ExecutionError::BadQuery(BadQuery::PartitionKeyExtraction),
        ];
        for e in &never {
            assert_eq!(classify(e), Retry::Never, "{e}");
        }
    }
}
