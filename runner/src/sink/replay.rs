//! Dead-letter replay: the records on the dead-letter topic, through the
//! current mapping, into the table (`millrace_api::replay` has the
//! contract).
//!
//! Runs beside the sink's consumer when the sink was started with a replay
//! token. Its own consumer group shares the dead-letter topic's partitions
//! among the sink's replicas. When it gets a partition, the group's commit
//! says where the partition stands: done for this token, part-way (resume),
//! or not begun, in which case the replay's end is fixed at the partition's
//! end offset now and committed before any record is read, so every replica
//! and every restart agrees on it. Records are replayed one at a time, in
//! the partition's order, each with the write timestamp the sink first gave
//! it (a newer version of its key already in the table stays); what fails
//! again is dead-lettered anew, past the end, for a later replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use millrace_api::replay::requested_token;
use millrace_api::{REPLAY_TOKEN_ENV, ReplayMetadata, replay_group};
use rdkafka::client::ClientContext;
use rdkafka::consumer::StreamConsumer;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{Outcome, Record, Writer};
use crate::config::{Connections, Pipeline};
use crate::kafka::{Origin, headers};
use crate::metrics::{Metrics, Reason};

/// Progress is committed at least this often while a partition replays.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// The replay token the sink was started with, if any.
pub fn token_from_env() -> Option<String> {
    let value = std::env::var(REPLAY_TOKEN_ENV).ok();
    match requested_token(value.as_deref()) {
        Ok(token) => token.map(str::to_owned),
        Err(e) => {
            error!("{e}; no replay");
            None
        }
    }
}

/// A partition of the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    /// Replaying: the next offset to read, and what the commit carries.
    Active { next: i64, meta: ReplayMetadata },
    /// Replayed up to the end (or nothing to replay).
    Done,
}

/// Where a partition stands, from the group's commit and its offsets now.
/// Returns the progress and, when the replay begins here, the offset and
/// metadata to commit before reading.
fn decide(
    token: &str,
    committed: Option<i64>,
    meta: Option<ReplayMetadata>,
    low: i64,
    high: i64,
) -> (Progress, Option<(i64, ReplayMetadata)>) {
    if let Some(meta) = meta.filter(|m| m.token == token) {
        let at = committed.unwrap_or(low).max(low);
        if meta.done(token, at) {
            return (Progress::Done, None);
        }
        return (Progress::Active { next: at, meta }, None);
    }
    // A new token: from where the last replay ended (or the topic's
    // start), to the end the partition has now.
    let start = committed.unwrap_or(low).max(low);
    let meta = ReplayMetadata {
        token: token.to_owned(),
        end: high.max(start),
        replayed: 0,
        failed_again: 0,
    };
    let progress = if start >= meta.end {
        Progress::Done
    } else {
        Progress::Active {
            next: start,
            meta: meta.clone(),
        }
    };
    (progress, Some((start, meta)))
}

type States = Arc<Mutex<HashMap<i32, Progress>>>;

fn lock(states: &States) -> std::sync::MutexGuard<'_, HashMap<i32, Progress>> {
    states.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets a partition's progress, and the metric of how many are done.
fn set(states: &States, metrics: &Metrics, partition: i32, progress: Progress) {
    let mut s = lock(states);
    s.insert(partition, progress);
    let done = s.values().filter(|p| **p == Progress::Done).count() as i64;
    metrics.replay_partitions(s.len() as i64 - done, done);
}

/// Forgets a revoked partition.
fn forget(states: &States, metrics: &Metrics, partition: i32) -> Option<Progress> {
    let mut s = lock(states);
    let was = s.remove(&partition);
    let done = s.values().filter(|p| **p == Progress::Done).count() as i64;
    metrics.replay_partitions(s.len() as i64 - done, done);
    was
}

/// Offsets to commit for the replay: each partition's next offset, with
/// its progress as metadata.
fn commit_list<'a>(
    topic: &str,
    progress: impl IntoIterator<Item = (i32, i64, &'a ReplayMetadata)>,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (partition, offset, meta) in progress {
        let mut elem = tpl.add_partition(topic, partition);
        if let Err(e) = elem.set_offset(Offset::Offset(offset)) {
            warn!(error = %e, partition, "cannot set the replay offset");
        }
        elem.set_metadata(meta.encode());
    }
    tpl
}

/// The partition is replayed up to its end: commits the end, stops
/// fetching it, and marks it done. On a failed commit it stays active, and
/// the next record or end of partition finishes it again.
fn finish(
    consumer: &StreamConsumer<ReplayContext>,
    states: &States,
    metrics: &Metrics,
    partition: i32,
    meta: ReplayMetadata,
) {
    let topic = &consumer.context().topic;
    let list = commit_list(topic, [(partition, meta.end, &meta)]);
    if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
        warn!(error = %e, partition, "committing the replay's end");
        let next = meta.end;
        set(states, metrics, partition, Progress::Active { next, meta });
        return;
    }
    info!(partition, replayed = meta.replayed, failed_again = meta.failed_again, token = %meta.token, "dead letters of this partition are replayed");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(e) = consumer.pause(&tpl) {
        warn!(error = %e, partition, "pausing a replayed partition");
    }
    set(states, metrics, partition, Progress::Done);
}

struct ReplayContext {
    token: String,
    topic: String,
    states: States,
    metrics: Arc<Metrics>,
}

impl ClientContext for ReplayContext {}

impl ConsumerContext for ReplayContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            // Before the partitions are assigned: a replay that begins here
            // commits its start and end first, so fetching starts there and
            // every replica agrees on the end.
            Rebalance::Assign(tpl) => tokio::task::block_in_place(|| self.assign(consumer, tpl)),
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    if let Some(Progress::Active { next, meta }) =
                        forget(&self.states, &self.metrics, e.partition())
                    {
                        let list = commit_list(&self.topic, [(e.partition(), next, &meta)]);
                        if let Err(err) = consumer.commit(&list, CommitMode::Sync) {
                            warn!(error = %err, "committing the replay's progress on revoke");
                        }
                    }
                }
            }
            Rebalance::Error(e) => warn!(error = %e, "replay rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        // Nothing to read in a partition that is done: no fetching.
        let mut done = TopicPartitionList::new();
        let states = lock(&self.states);
        for e in tpl.elements() {
            if states.get(&e.partition()) == Some(&Progress::Done) {
                done.add_partition(&self.topic, e.partition());
            }
        }
        drop(states);
        if done.count() > 0
            && let Err(e) = consumer.pause(&done)
        {
            warn!(error = %e, "pausing replayed partitions");
        }
    }
}

impl ReplayContext {
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(c) => break c,
                Err(e) => {
                    warn!(error = %e, "reading the replay's committed offsets; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        for e in tpl.elements() {
            let partition = e.partition();
            let found = committed.find_partition(&self.topic, partition);
            let offset = found.as_ref().and_then(|c| match c.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
            let meta = found
                .as_ref()
                .and_then(|c| ReplayMetadata::decode(c.metadata()));
            let (low, high) = loop {
                match consumer.fetch_watermarks(&self.topic, partition, Duration::from_secs(10)) {
                    Ok(w) => break w,
                    Err(e) => {
                        warn!(error = %e, partition, "reading the dead-letter partition's offsets; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            let (progress, begin) = decide(&self.token, offset, meta, low, high);
            if let Some((start, meta)) = begin {
                info!(partition, start, end = meta.end, token = %self.token, "replay of the dead letters begins");
                let list = commit_list(&self.topic, [(partition, start, &meta)]);
                if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                    // Not fatal: the next owner decides again, from the
                    // topic's end at that time.
                    warn!(error = %e, partition, "committing the replay's start");
                }
            }
            if progress == Progress::Done {
                info!(partition, token = %self.token, "dead letters of this partition are replayed");
            }
            set(&self.states, &self.metrics, partition, progress);
        }
    }
}

/// The `millrace.*` headers of a dead letter, kept when it fails again.
fn millrace_headers(message: &impl Message) -> Vec<(String, Vec<u8>)> {
    let Some(h) = message.headers() else {
        return Vec::new();
    };
    h.iter()
        .filter(|h| h.key.starts_with("millrace."))
        .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
        .collect()
}

fn header<'a>(kept: &'a [(String, Vec<u8>)], key: &str) -> Option<&'a str> {
    kept.iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Replays the dead-letter topic for `token` until `shutdown`; commits its
/// progress on the way out.
pub(super) async fn run(
    token: String,
    pipeline: &Pipeline,
    connections: &Connections,
    writer: Arc<Writer>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let topic = pipeline.spec.dead_letter_topic();
    let states: States = Arc::default();
    let context = ReplayContext {
        token: token.clone(),
        topic: topic.clone(),
        states: states.clone(),
        metrics: metrics.clone(),
    };
    let consumer: StreamConsumer<ReplayContext> = connections
        .kafka_config(pipeline)
        .set(
            "group.id",
            replay_group(&pipeline.namespace, &pipeline.name),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // A partition read to its end is done even when the records just
        // before the replay's end are gone (compaction, retention).
        .set("enable.partition.eof", "true")
        .set("max.poll.interval.ms", "86400000")
        .set("session.timeout.ms", "10000")
        .create_with_context(context)?;
    consumer.subscribe(&[&topic])?;
    info!(topic = %topic, token = %token, "replaying dead letters");
    let mut last_commit = Instant::now();
    loop {
        let message = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            m = consumer.recv() => m,
        };
        match message {
            Ok(m) => {
                let partition = m.partition();
                let offset = m.offset();
                let current = lock(&states).get(&partition).cloned();
                let Some(Progress::Active { next, mut meta }) = current else {
                    continue;
                };
                if offset < next {
                    continue;
                }
                if offset < meta.end {
                    let own = writer.wanted_headers(&m);
                    let mut kept = millrace_headers(&m);
                    let write_timestamp = header(&kept, headers::WRITE_TIMESTAMP)
                        .and_then(|t| t.parse().ok())
                        .or_else(|| m.timestamp().to_millis().map(|ms| ms.saturating_mul(1000)))
                        .unwrap_or(0);
                    let timestamp_ms = header(&kept, headers::SOURCE_TIMESTAMP)
                        .and_then(|t| t.parse().ok())
                        .or_else(|| m.timestamp().to_millis());
                    // Dead-lettered again, it keeps the headers the columns
                    // read, for the next replay.
                    kept.extend(own.iter().cloned());
                    let record = Record {
                        partition,
                        offset,
                        write_timestamp,
                        timestamp_ms,
                        key: m.key().map(<[u8]>::to_vec),
                        headers: own,
                        payload: m.payload().map(<[u8]>::to_vec),
                    };
                    drop(m);
                    let origin = Origin::Replay {
                        token: &token,
                        headers: &kept,
                    };
                    let outcome = if header(&kept, headers::PAYLOAD_OMITTED).is_some() {
                        // Only where the record came from is known: it
                        // stays a dead letter, with its headers.
                        writer
                            .fail(
                                &record,
                                Reason::TooLarge,
                                "the dead letter has no payload (it was too large for the dead-letter topic); the original is where its headers say",
                                origin,
                            )
                            .await;
                        Outcome::DeadLettered
                    } else {
                        writer.handle_as(&record, origin).await
                    };
                    match outcome {
                        Outcome::Written => {
                            meta.replayed += 1;
                            metrics.replayed("written");
                        }
                        Outcome::DeadLettered => {
                            meta.failed_again += 1;
                            metrics.replayed("failed_again");
                        }
                    }
                }
                let next = offset + 1;
                if next >= meta.end {
                    finish(&consumer, &states, &metrics, partition, meta);
                    continue;
                }
                if last_commit.elapsed() >= COMMIT_EVERY {
                    let list = commit_list(&topic, [(partition, next, &meta)]);
                    if let Err(e) = consumer.commit(&list, CommitMode::Async) {
                        warn!(error = %e, partition, "committing the replay's progress");
                    }
                    last_commit = Instant::now();
                }
                set(
                    &states,
                    &metrics,
                    partition,
                    Progress::Active { next, meta },
                );
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                // Read to the end of what the partition holds: past the
                // replay's end, whatever offsets are missing before it.
                let current = lock(&states).get(&partition).cloned();
                if let Some(Progress::Active { meta, .. }) = current {
                    // A blocking request: off the runtime's other tasks.
                    let Ok((_, high)) = tokio::task::block_in_place(|| {
                        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5))
                    }) else {
                        continue;
                    };
                    if high >= meta.end {
                        finish(&consumer, &states, &metrics, partition, meta);
                    }
                }
            }
            Err(e) => warn!(error = %e, "replay consumer error"),
        }
    }
    let tpl = {
        let states = lock(&states);
        commit_list(
            &topic,
            states
                .iter()
                .filter_map(|(partition, progress)| match progress {
                    Progress::Active { next, meta } => Some((*partition, *next, meta)),
                    Progress::Done => None,
                }),
        )
    };
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Sync)
    {
        warn!(error = %e, "committing the replay's progress at shutdown");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(token: &str, end: i64) -> ReplayMetadata {
        ReplayMetadata {
            token: token.into(),
            end,
            replayed: 3,
            failed_again: 1,
        }
    }

    #[test]
    fn a_new_token_begins_where_the_last_replay_ended_and_ends_at_the_end_now() {
        let (p, begin) = decide("t2", Some(40), Some(meta("t1", 40)), 0, 45);
        let (start, m) = begin.expect("a new replay commits its start");
        assert_eq!((start, m.end, m.replayed, m.failed_again), (40, 45, 0, 0));
        assert_eq!(p, Progress::Active { next: 40, meta: m });
    }

    #[test]
    fn the_same_token_resumes_or_is_done() {
        let (p, begin) = decide("t1", Some(30), Some(meta("t1", 40)), 0, 50);
        assert!(begin.is_none(), "nothing to commit first");
        assert_eq!(
            p,
            Progress::Active {
                next: 30,
                meta: meta("t1", 40)
            },
            "resumes with its counts"
        );
        let (p, begin) = decide("t1", Some(40), Some(meta("t1", 40)), 0, 50);
        assert_eq!((p, begin), (Progress::Done, None), "the same token again");
    }

    #[test]
    fn a_first_replay_reads_from_the_start_and_an_empty_one_is_done() {
        let (p, begin) = decide("t", None, None, 5, 9);
        assert_eq!(begin.map(|(s, m)| (s, m.end)), Some((5, 9)));
        assert!(matches!(p, Progress::Active { next: 5, .. }));
        let (p, begin) = decide("t", None, None, 0, 0);
        assert_eq!(p, Progress::Done);
        assert_eq!(
            begin.map(|(s, m)| (s, m.end)),
            Some((0, 0)),
            "done, and said so"
        );
        // Retention deleted dead letters below where the last replay ended.
        let (_, begin) = decide("t2", Some(3), Some(meta("t1", 3)), 10, 12);
        assert_eq!(begin.map(|(s, _)| s), Some(10));
    }
}
