//! A consumer group's committed offsets on a topic and the topic's
//! watermarks, read through one client per cluster: the sink's lag and
//! totals (`status.flow`) and a dead-letter replay's progress.

use std::ffi::{CStr, CString};
use std::time::Duration;

use millrace_api::spec::KafkaSpec;
use rdkafka::TopicPartitionList;
use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::kafka::{ClientCache, client_config, unavailable};
use super::native::{AdminCall, Owned, describe_topic};
use crate::credentials::KafkaAuth;
use crate::error::Result;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The `group.id` of every [`OffsetReader`]: it never subscribes, joins or
/// commits, so no group of that name ever appears on the cluster.
const READER_GROUP: &str = "millrace-operator-offset-reader";

/// The client that reads other groups' offsets, one per cluster and login.
///
/// A consumer, not an admin client, because of librdkafka (2.12, issue
/// 5040): when the coordinator answers an OffsetFetch with NOT_COORDINATOR
/// (a fresh cluster still placing `__consumer_offsets`, or a coordinator
/// moving after a broker restart), librdkafka asks the client's own
/// consumer group to look for its coordinator again, and an admin client
/// has none: the process died with SIGSEGV (seen on a new kind cluster, and
/// every time against a broker started a moment before). A consumer with a
/// `group.id` has that group; it only ever looks up a coordinator.
pub struct OffsetReader {
    consumer: BaseConsumer,
}

/// Offset readers, one per cluster and login, reused across reconciles.
pub type Readers = ClientCache<OffsetReader>;

impl Readers {
    pub fn get(
        &self,
        spec: &KafkaSpec,
        auth: Option<&KafkaAuth>,
    ) -> Result<std::sync::Arc<OffsetReader>> {
        self.get_with(spec, auth, || {
            let consumer = client_config(spec, auth)
                .set("group.id", READER_GROUP)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .create()
                .map_err(|e| unavailable(spec, e))?;
            Ok(OffsetReader { consumer })
        })
    }
}

impl OffsetReader {
    /// Drops what librdkafka queued for the application (errors while a
    /// broker is away): nothing here reads them, and unread they would
    /// pile up. The reader is assigned no partition, so no record comes.
    fn drain(&self) {
        while self.consumer.poll(Duration::ZERO).is_some() {}
    }
}

/// One partition of a topic, as a consumer group left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset; `None` when it has committed nothing.
    pub committed: Option<i64>,
    /// The commit's metadata (what the sink records with it); empty when
    /// there is none or it is not text.
    pub metadata: String,
    pub low: i64,
    pub high: i64,
}

/// `group`'s offsets on every partition of `topic`, or `None` when Kafka
/// did not answer in time. `partitions` is how many the topic has, when the
/// caller has just read it from the cluster; else the reader asks.
/// Blocking: call it off the async threads.
pub fn read(
    reader: &OffsetReader,
    group: &str,
    topic: &str,
    partitions: Option<i32>,
) -> Option<Vec<PartitionOffsets>> {
    reader.drain();
    let client = reader.consumer.client();
    // Asking the reader for a topic's metadata leaves librdkafka holding
    // about 5 kB for that topic for the client's lifetime (its topic and
    // partition objects: 5 MB for 1,000 topics, measured), where a
    // watermark query alone leaves under 1 kB; the reconcile has just
    // read the count through the admin client.
    let count = match partitions {
        Some(count) => count,
        None => partition_count(client, topic)?,
    };
    if count <= 0 {
        return None;
    }
    let committed = committed(&reader.consumer, group, topic, count)?;
    let mut out = Vec::with_capacity(committed.len());
    for (partition, committed, metadata) in committed {
        let (low, high) = match client.fetch_watermarks(topic, partition, TIMEOUT) {
            Ok(marks) => marks,
            // A partition added since the reader last looked: librdkafka
            // refreshes its idea of a topic only every five minutes, and
            // until then the new partitions' watermarks fail. Asked once.
            Err(_) => {
                client.fetch_metadata(Some(topic), TIMEOUT).ok()?;
                client.fetch_watermarks(topic, partition, TIMEOUT).ok()?
            }
        };
        out.push(PartitionOffsets {
            partition,
            committed,
            metadata,
            low,
            high,
        });
    }
    out.sort_by_key(|p| p.partition);
    Some(out)
}

/// How many partitions `topic` has, asked of the cluster.
fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
) -> Option<i32> {
    Some(describe_topic(client, topic, TIMEOUT).ok()??.partitions)
}

/// The group's committed offset (and its metadata) on partitions
/// `0..count` of `topic`, by an OffsetFetch (librdkafka's admin request)
/// through the cluster's [`OffsetReader`].
///
/// Own code, over librdkafka's C API, because rdkafka 0.39 does not wrap
/// `ListConsumerGroupOffsets`; its consumers read committed offsets only
/// for their own `group.id`. A consumer per pipeline's group (what this
/// replaced) is a librdkafka client each, with four threads and its own
/// broker connections: at 1,000 pipelines even a bounded pool of them
/// churned clients on every refresh and held most of the operator's
/// threads and memory. One reader per cluster serves every group.
#[allow(unsafe_code)]
fn committed(
    consumer: &BaseConsumer,
    group: &str,
    topic: &str,
    count: i32,
) -> Option<Vec<(i32, Option<i64>, String)>> {
    let group_c = CString::new(group).ok()?;
    let mut wanted = TopicPartitionList::with_capacity(usize::try_from(count).ok()?);
    for p in 0..count {
        wanted.add_partition(topic, p);
    }
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is the live consumer's, borrowed for the whole call;
    // every other pointer passed is either one librdkafka returned just
    // above and has not freed (each is freed once, by its `Owned`), or one
    // owned by a live Rust value (`group_c`, `wanted`); librdkafka copies
    // the request, so it may be freed once the call returned. What the
    // result event points to is read before the event is freed.
    unsafe {
        let call = AdminCall::new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            TIMEOUT,
        )
        .ok()?;
        let request = Owned {
            ptr: rd::rd_kafka_ListConsumerGroupOffsets_new(group_c.as_ptr(), wanted.ptr()),
            free: rd::rd_kafka_ListConsumerGroupOffsets_destroy,
        };
        if request.ptr.is_null() {
            return None;
        }
        let mut requests = [request.ptr];
        rd::rd_kafka_ListConsumerGroupOffsets(
            rk,
            requests.as_mut_ptr(),
            requests.len(),
            call.options.ptr,
            call.queue.ptr,
        );
        let event = call.answer().ok()?;
        let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.ptr);
        if result.is_null() {
            return None;
        }
        let mut groups = 0usize;
        let list = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut groups);
        if list.is_null() || groups != 1 {
            return None;
        }
        let group_result = *list;
        if group_result.is_null() || !rd::rd_kafka_group_result_error(group_result).is_null() {
            return None;
        }
        let partitions = rd::rd_kafka_group_result_partitions(group_result);
        if partitions.is_null() {
            return None;
        }
        let partitions = &*partitions;
        let elems: &[rd::rd_kafka_topic_partition_t] = match usize::try_from(partitions.cnt) {
            Ok(0) | Err(_) => &[],
            Ok(_) if partitions.elems.is_null() => return None,
            Ok(n) => std::slice::from_raw_parts(partitions.elems, n),
        };
        let mut out = Vec::with_capacity(elems.len());
        for e in elems {
            if e.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            if e.topic.is_null() || CStr::from_ptr(e.topic).to_bytes() != topic.as_bytes() {
                continue;
            }
            let metadata = if e.metadata.is_null() || e.metadata_size == 0 {
                String::new()
            } else {
                let bytes = std::slice::from_raw_parts(e.metadata.cast::<u8>(), e.metadata_size);
                String::from_utf8(bytes.to_vec()).unwrap_or_default()
            };
            // A negative offset is librdkafka's "none committed".
            out.push((e.partition, (e.offset >= 0).then_some(e.offset), metadata));
        }
        Some(out)
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

/// The sink's group's offsets summed, with the counts its commits carry
/// ([`millrace_api::CommitMetadata`]).
pub fn sum(partitions: &[PartitionOffsets]) -> Offsets {
    let mut out = Offsets::default();
    for p in partitions {
        let position = match p.committed {
            Some(o) => {
                out.handled += o;
                o
            }
            None => p.low,
        };
        if let Some(meta) = millrace_api::CommitMetadata::decode(&p.metadata) {
            out.dead_lettered += i64::try_from(meta.dead_lettered).unwrap_or(i64::MAX);
            out.skipped += i64::try_from(meta.skipped).unwrap_or(i64::MAX);
            out.timed_out += i64::try_from(meta.timed_out).unwrap_or(i64::MAX);
        }
        out.produced += p.high;
        out.lag += (p.high - position.max(p.low)).max(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(committed: Option<i64>, metadata: &str, low: i64, high: i64) -> PartitionOffsets {
        PartitionOffsets {
            partition: 0,
            committed,
            metadata: metadata.to_owned(),
            low,
            high,
        }
    }

    #[test]
    fn lag_is_what_the_group_has_not_committed_and_retention_has_not_deleted() {
        let sum = sum(&[
            partition(Some(40), "", 0, 100),
            // Nothing committed: everything retention kept is lag.
            partition(None, "", 30, 50),
            // Committed below what retention kept: lag from the low mark.
            partition(Some(5), "", 10, 12),
        ]);
        assert_eq!(sum.lag, 60 + 20 + 2);
        assert_eq!(sum.produced, 100 + 50 + 12);
        assert_eq!(sum.handled, 40 + 5);
    }

    #[test]
    fn the_counts_come_from_the_commit_metadata_the_runner_writes() {
        let meta = millrace_api::CommitMetadata {
            dead_lettered: 3,
            skipped: 2,
            timed_out: 7,
            ..millrace_api::CommitMetadata::default()
        };
        let sum = sum(&[
            partition(Some(10), &meta.encode(), 0, 10),
            partition(Some(4), "not ours", 0, 4),
        ]);
        assert_eq!(
            (sum.dead_lettered, sum.skipped, sum.timed_out, sum.lag),
            (3, 2, 7, 0)
        );
    }
}
