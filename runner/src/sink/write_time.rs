//! Write timestamps that order a key's versions as its partition does.
//!
//! Cassandra keeps, for each cell, the write with the highest timestamp, so
//! the timestamp alone decides which version of a row survives, whatever
//! order the writes arrive in. The sink therefore gives every record of a
//! partition a timestamp strictly above the one before it:
//!
//! `ts(r) = max(kafka_timestamp_µs(r), ts(previous record) + 1)`
//!
//! so a later offset always wins, even when two versions share a
//! millisecond or a producer's clock stepped back. The chain is a pure
//! function of the partition's records, so a replay from the same place
//! writes the same timestamps and leaves the table as it was. To resume
//! the chain after a restart or a rebalance, the timestamp of the last
//! written record is committed with the group's offset, as its metadata
//! ([`millrace_api::CommitMetadata`]); without one (a new group, or offsets committed
//! by an older runner) the chain starts at the end of its first record's
//! millisecond, which is never below what the older runner wrote for an
//! earlier record of that millisecond.
//!
//! With `writeTime` in the spec, a record's own time (a field of its value)
//! takes the Kafka timestamp's place in the formula: versions still follow
//! the offsets, and a record whose time is earlier than its predecessor's
//! is written just after it rather than under it.

/// What a record's write time starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnTime {
    /// The Kafka record's timestamp, in milliseconds.
    Kafka(Option<i64>),
    /// The record's own time (`writeTime`), in microseconds.
    Record(i64),
    /// None: the record will not be written (its time could not be read),
    /// so it must not move the chain.
    Unknown,
    /// None, but the record is written (a tombstone where records give
    /// their own time): just after the record before it, moving the chain,
    /// so the next record's write lands after it and not on the same
    /// timestamp (where Cassandra would let the delete win). The first
    /// record of a chain starts from its Kafka timestamp (milliseconds).
    After(Option<i64>),
}

/// The chain of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteClock {
    last: Option<i64>,
}

impl WriteClock {
    /// Resumes after the record whose timestamp was `last` (`None`: no
    /// record before this one is known).
    pub fn resume(last: Option<i64>) -> Self {
        Self { last }
    }

    /// The timestamp (microseconds) of the next record of the partition,
    /// whose Kafka timestamp is `kafka_timestamp_ms`.
    pub fn next(&mut self, kafka_timestamp_ms: Option<i64>) -> i64 {
        self.next_from(OwnTime::Kafka(kafka_timestamp_ms))
    }

    /// The timestamp (microseconds) of the next record of the partition.
    pub fn next_from(&mut self, own: OwnTime) -> i64 {
        let (own, first_slack) = match own {
            OwnTime::Kafka(ms) => (ms.unwrap_or(0).saturating_mul(1000), 999),
            // A record's own time is as precise as its unit: no older
            // runner wrote within its millisecond.
            OwnTime::Record(micros) => (micros, 0),
            OwnTime::Unknown => {
                return self.last.map_or(0, |last| last.saturating_add(1));
            }
            OwnTime::After(ms) => match self.last {
                Some(last) => (last.saturating_add(1), 0),
                None => (ms.unwrap_or(0).saturating_mul(1000), 999),
            },
        };
        let ts = match self.last {
            Some(last) => own.max(last.saturating_add(1)),
            None => own.saturating_add(first_slack),
        };
        self.last = Some(ts);
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula the sink used before: the Kafka timestamp with
    /// `offset % 1000` as the microseconds. Kept here only to show the case
    /// it got wrong.
    fn by_offset_digits(kafka_timestamp_ms: i64, offset: i64) -> i64 {
        kafka_timestamp_ms * 1000 + offset.rem_euclid(1000)
    }

    #[test]
    fn versions_in_one_millisecond_across_an_offset_multiple_of_1000_keep_their_order() {
        // Two versions of one key at offsets 999 and 1000, produced in the
        // same millisecond: the later one must win.
        let ms = 1_700_000_000_123;
        assert!(
            by_offset_digits(ms, 1000) < by_offset_digits(ms, 999),
            "the old formula put offset 1000 before offset 999"
        );
        let mut clock = WriteClock::resume(None);
        let mut last = i64::MIN;
        for _offset in 990..1010 {
            let ts = clock.next(Some(ms));
            assert!(ts > last, "every later offset gets a later timestamp");
            last = ts;
        }
    }

    #[test]
    fn a_producer_clock_stepping_back_does_not_reorder() {
        let mut clock = WriteClock::resume(None);
        let a = clock.next(Some(2_000));
        let b = clock.next(Some(1_000)); // clock went back a second
        let c = clock.next(Some(2_500));
        assert!(a < b && b < c);
        assert_eq!(c, 2_500_000, "the chain follows Kafka time again");
    }

    #[test]
    fn a_replay_from_a_committed_point_writes_the_same_timestamps() {
        let kafka_ms = [5, 5, 5, 4, 9, 9, 12];
        let mut first = WriteClock::resume(None);
        let run: Vec<i64> = kafka_ms.iter().map(|ms| first.next(Some(*ms))).collect();
        // Committed after the third record: resume from its timestamp.
        let metadata = millrace_api::CommitMetadata {
            write_timestamp: run[2],
            ..millrace_api::CommitMetadata::default()
        };
        let committed = millrace_api::CommitMetadata::decode(&metadata.encode())
            .expect("our metadata")
            .write_timestamp;
        let mut again = WriteClock::resume(Some(committed));
        let replay: Vec<i64> = kafka_ms[3..]
            .iter()
            .map(|ms| again.next(Some(*ms)))
            .collect();
        assert_eq!(replay, run[3..]);
    }

    #[test]
    fn a_records_own_time_is_its_write_time_unless_it_would_go_back() {
        let mut clock = WriteClock::resume(None);
        assert_eq!(clock.next_from(OwnTime::Record(5_000_123)), 5_000_123);
        assert_eq!(clock.next_from(OwnTime::Record(6_000_000)), 6_000_000);
        // An earlier time on a later offset: just after, never under.
        assert_eq!(clock.next_from(OwnTime::Record(1_000_000)), 6_000_001);
        // A record whose time is unreadable does not move the chain.
        assert_eq!(clock.next_from(OwnTime::Unknown), 6_000_002);
        assert_eq!(clock.next_from(OwnTime::Record(6_000_002)), 6_000_002);
    }

    #[test]
    fn a_tombstone_among_records_with_their_own_time_moves_the_chain() {
        let mut clock = WriteClock::resume(None);
        assert_eq!(clock.next_from(OwnTime::Record(6_000_000)), 6_000_000);
        let delete = clock.next_from(OwnTime::After(Some(9)));
        assert_eq!(delete, 6_000_001);
        // The next version of the key, even with the same own time as the
        // delete's, lands after it: on a tie Cassandra keeps the delete.
        assert!(clock.next_from(OwnTime::Record(6_000_001)) > delete);
        // A chain that starts with a tombstone starts at its Kafka time.
        assert_eq!(
            WriteClock::resume(None).next_from(OwnTime::After(Some(7))),
            7_999
        );
    }

    #[test]
    fn without_a_committed_timestamp_the_chain_starts_at_the_end_of_its_millisecond() {
        // An older runner wrote at most ms * 1000 + 999 for this
        // millisecond; the first write after an upgrade is not below it.
        let mut clock = WriteClock::resume(None);
        assert_eq!(clock.next(Some(7)), 7_999);
        assert_eq!(clock.next(Some(7)), 8_000);
        assert_eq!(clock.next(None), 8_001, "no Kafka timestamp: still later");
    }
}
