//! The consumers that read a sink's lag: a group's committed offsets and
//! the topic's high watermarks.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use millrace_api::KafkaSpec;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::kafka::{ClientKey, WithCredentials};
use crate::credentials::KafkaAuth;

const TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many lag readers are kept. A group's committed offsets can
/// only be read by a client of that group, so there is one reader per
/// pipeline; each is a librdkafka client with about four threads and its
/// own broker connections, which at hundreds of pipelines came to thousands
/// of threads and sockets. Past this many, the least recently used reader
/// is closed (and made again on that pipeline's next refresh, at most every
/// `--flow-refresh-seconds`).
pub const MAX_LAG_READERS: usize = 32;

/// Consumers used only to read a group's committed offsets (they never
/// join the group), least recently used first out.
pub struct LagReaders {
    /// By cluster, login and group; each with the credentials it was made
    /// with.
    cache: Mutex<LruCache<(ClientKey, String), WithCredentials<BaseConsumer>>>,
}

impl Default for LagReaders {
    fn default() -> Self {
        let cap = NonZeroUsize::new(MAX_LAG_READERS).unwrap_or(NonZeroUsize::MIN);
        Self {
            cache: Mutex::new(LruCache::new(cap)),
        }
    }
}

impl LagReaders {
    /// The reader for the group, and a reader evicted to make room (to be
    /// closed off the async threads: closing a librdkafka client joins its
    /// threads).
    pub fn get(
        &self,
        kafka: &KafkaSpec,
        group: &str,
        auth: Option<&KafkaAuth>,
    ) -> (Option<Arc<BaseConsumer>>, Option<Arc<BaseConsumer>>) {
        let key = (ClientKey::new(kafka, auth), group.to_owned());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((used, reader)) = cache.get(&key)
            && used.as_ref() == auth
        {
            return (Some(reader.clone()), None);
        }
        // A reader made with other credentials (the password changed) goes.
        let stale = cache.pop(&key).map(|(_, old)| old);
        let Some(reader) = Self::create(kafka, group, auth) else {
            return (None, stale);
        };
        let evicted = cache
            .push(key, (auth.cloned(), reader.clone()))
            .map(|(_, (_, old))| old);
        (Some(reader), evicted.or(stale))
    }

    fn create(
        kafka: &KafkaSpec,
        group: &str,
        auth: Option<&KafkaAuth>,
    ) -> Option<Arc<BaseConsumer>> {
        let mut config = super::kafka::settings(kafka, auth);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer = config.create().ok()?;
        Some(Arc::new(consumer))
    }

    /// Readers kept now.
    pub fn len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The topic and the sink's group as Kafka has them, summed over the
/// partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// Records the group has not committed yet.
    pub lag: i64,
    /// Records ever written to the topic (high watermarks).
    pub produced: i64,
    /// Records the sink is done with, written or dead-lettered (committed
    /// offsets).
    pub handled: i64,
    /// Of those, the ones dead-lettered (from the commits' metadata).
    pub dead_lettered: i64,
    /// Of those, the ones retention deleted before the sink read them
    /// (from the commits' metadata).
    pub skipped: i64,
    /// Write tries Cassandra timed out or refused as overloaded (from the
    /// commits' metadata).
    pub timed_out: i64,
}

/// The sink's group's offsets on `topic`, with the counts its commits
/// carry ([`millrace_api::CommitMetadata`]).
pub fn offsets(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Option<Offsets> {
    // The reader is kept between refreshes, and librdkafka refreshes its
    // idea of a topic only every five minutes: after partitions were added,
    // the watermarks of the new ones failed for that long and the figures
    // went stale. Asking for the topic's metadata first is one small
    // request per refresh.
    consumer.fetch_metadata(Some(topic), TIMEOUT).ok()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).ok()?;
    let mut out = Offsets::default();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).ok()?;
        let entry = committed.find_partition(topic, p);
        let position = match entry.as_ref().map(|e| e.offset()) {
            Some(Offset::Offset(o)) => {
                out.handled += o;
                o
            }
            _ => low,
        };
        if let Some(meta) = entry
            .as_ref()
            .and_then(|e| millrace_api::CommitMetadata::decode(e.metadata()))
        {
            out.dead_lettered += i64::try_from(meta.dead_lettered).unwrap_or(i64::MAX);
            out.skipped += i64::try_from(meta.skipped).unwrap_or(i64::MAX);
            out.timed_out += i64::try_from(meta.timed_out).unwrap_or(i64::MAX);
        }
        out.produced += high;
        out.lag += (high - position.max(low)).max(0);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_readers_are_bounded_and_the_least_recently_used_goes() {
        let kafka = crate::desired::fixtures::seed().spec.kafka;
        let readers = LagReaders::default();
        for i in 0..MAX_LAG_READERS {
            let (reader, evicted) = readers.get(&kafka, &format!("g{i}"), None);
            assert!(reader.is_some() && evicted.is_none());
        }
        // g0 is used again, so g1 is now the least recently used.
        assert!(readers.get(&kafka, "g0", None).1.is_none());
        let (_, evicted) = readers.get(&kafka, "another", None);
        assert!(evicted.is_some(), "one reader is closed to make room");
        assert_eq!(readers.len(), MAX_LAG_READERS);
        let (again, evicted) = readers.get(&kafka, "g0", None);
        assert!(again.is_some() && evicted.is_none(), "g0 was kept");
    }
}
