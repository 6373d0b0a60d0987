//! Which offsets the sink may commit: per partition, an offset is safe only
//! when every record before it has been written (or dead-lettered).
//!
//! Writes finish out of order (many are in flight at once), so each
//! partition keeps the offsets still in flight. An assignment gets an epoch;
//! a write that finishes after its partition was revoked carries the old
//! epoch and is ignored, so it cannot move a later owner's offsets.
//!
//! Safe offsets are handed to librdkafka in batches ([`OffsetTracker::take_safe`]):
//! storing one per written row cost a topic-partition list and librdkafka's
//! locks per row, for offsets it only commits once a second anyway.
//!
//! The tracker also gives each record its write timestamp
//! ([`super::write_time`]): the chain runs in offset order under the same
//! lock, and the timestamp of the record at a safe offset goes with that
//! offset into the commit, so the next owner of the partition resumes the
//! chain where this one left it. The count of the partition's records that
//! were dead-lettered travels the same way, for the operator's totals.
//!
//! So does the count of offsets the sink never read because retention had
//! deleted them first. Offsets may have gaps for good reasons (transaction
//! markers, aborted transactions, compaction), so a gap between the offset
//! the partition was expected to continue at and the record that came is
//! only a suspicion: it is held in flight like a record ([`OffsetTracker::gap`])
//! until the consumer has asked Kafka for the partition's first offset,
//! and the part of the gap below it is counted ([`OffsetTracker::finish_gap`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use millrace_api::CommitMetadata;

use super::write_time::{OwnTime, WriteClock};

#[derive(Debug, Default)]
struct PartitionState {
    epoch: u64,
    in_flight: BTreeSet<i64>,
    clock: WriteClock,
    /// Write timestamps of the records started and not yet below the
    /// stored offset, by offset.
    timestamps: BTreeMap<i64, i64>,
    /// The write timestamp of the record at `stored`, or before it.
    stored_timestamp: Option<i64>,
    /// Dead-lettered records finished and not yet below the stored offset.
    dead_letters: BTreeSet<i64>,
    /// Records of the partition dead-lettered up to `stored`, counted
    /// across owners (from the committed metadata).
    stored_dead_lettered: u64,
    /// Offsets retention deleted before they were read, by the offset the
    /// gap starts at, not yet below the stored offset.
    skips: BTreeMap<i64, u64>,
    /// Offsets skipped up to `stored`, counted across owners.
    stored_skipped: u64,
    /// Write tries Cassandra timed out or refused as overloaded, by the
    /// offset of the finished record, not yet below the stored offset.
    timeouts: BTreeMap<i64, u64>,
    /// Such tries up to `stored`, counted across owners.
    stored_timed_out: u64,
    /// The offset the partition's next record should have: after the last
    /// one started, or the committed offset it was assigned at.
    expected: Option<i64>,
    /// The lowest and highest offsets started in this epoch.
    lowest_started: Option<i64>,
    highest_started: Option<i64>,
    /// The offset last reported as safe to store.
    stored: Option<i64>,
    /// Whether `stored` moved since the last [`OffsetTracker::take_safe`].
    unstored: bool,
}

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
    next_epoch: u64,
}

/// A record's place in the tracker, handed back when its write finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub partition: i32,
    pub offset: i64,
    /// The record's write timestamp (microseconds).
    pub write_timestamp: i64,
    epoch: u64,
}

/// A safe offset to store, with the write timestamp its commit carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Safe {
    pub partition: i32,
    /// The last offset below which every record is done.
    pub offset: i64,
    pub write_timestamp: Option<i64>,
    /// Records of the partition dead-lettered up to `offset`.
    pub dead_lettered: u64,
    /// Offsets of the partition up to `offset` that retention deleted
    /// before the sink read them.
    pub skipped: u64,
    /// Write tries of the partition's records up to `offset` that
    /// Cassandra timed out or refused as overloaded.
    pub timed_out: u64,
}

/// A gap in a partition's offsets, held in flight until the consumer knows
/// how much of it retention deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub partition: i32,
    /// The first offset missing.
    pub from: i64,
    /// The offset of the record that came instead.
    pub to: i64,
    epoch: u64,
}

impl Gap {
    /// How many of the gap's offsets lie below the partition's first
    /// offset `low` (its log start): those were deleted unread.
    pub fn deleted_below(&self, low: i64) -> u64 {
        u64::try_from(low.min(self.to) - self.from).unwrap_or(0)
    }
}

impl PartitionState {
    /// Moves the safe offset up to the lowest offset still in flight, with
    /// what its commit carries. Returns it when it moved.
    fn advance(&mut self) -> Option<i64> {
        let safe = match self.in_flight.first() {
            Some(&lowest) => lowest - 1,
            None => self.highest_started?,
        };
        let before_first = self.lowest_started.is_none_or(|l| safe < l);
        if before_first || self.stored.is_some_and(|s| s >= safe) {
            return None;
        }
        self.stored = Some(safe);
        self.unstored = true;
        // The timestamp of the last record at or below the safe offset
        // (offsets may have gaps); older ones are no longer needed.
        let below: Vec<i64> = self.timestamps.range(..=safe).map(|(o, _)| *o).collect();
        if let Some(last) = below.last() {
            self.stored_timestamp = self.timestamps.get(last).copied();
        }
        for o in below {
            self.timestamps.remove(&o);
        }
        let counted: Vec<i64> = self.dead_letters.range(..=safe).copied().collect();
        self.stored_dead_lettered += counted.len() as u64;
        for o in counted {
            self.dead_letters.remove(&o);
        }
        let skipped: Vec<(i64, u64)> = self.skips.range(..=safe).map(|(o, n)| (*o, *n)).collect();
        for (o, n) in skipped {
            self.stored_skipped += n;
            self.skips.remove(&o);
        }
        let timed_out: Vec<(i64, u64)> = self
            .timeouts
            .range(..=safe)
            .map(|(o, n)| (*o, *n))
            .collect();
        for (o, n) in timed_out {
            self.stored_timed_out += n;
            self.timeouts.remove(&o);
        }
        Some(safe)
    }

    fn safe(&self, partition: i32) -> Option<Safe> {
        Some(Safe {
            partition,
            offset: self.stored?,
            write_timestamp: self.stored_timestamp,
            dead_lettered: self.stored_dead_lettered,
            skipped: self.stored_skipped,
            timed_out: self.stored_timed_out,
        })
    }
}

impl OffsetTracker {
    /// The partition was assigned to this consumer at the committed offset
    /// `at` (`None`: the group has none, and reading starts at the
    /// partition's first record): its write timestamps and its counts
    /// continue from what was committed with it.
    pub fn assign(&mut self, partition: i32, committed: Option<CommitMetadata>, at: Option<i64>) {
        self.next_epoch += 1;
        self.partitions.insert(
            partition,
            PartitionState {
                epoch: self.next_epoch,
                clock: WriteClock::resume(committed.map(|c| c.write_timestamp)),
                stored_dead_lettered: committed.map_or(0, |c| c.dead_lettered),
                stored_skipped: committed.map_or(0, |c| c.skipped),
                stored_timed_out: committed.map_or(0, |c| c.timed_out),
                expected: at,
                ..PartitionState::default()
            },
        );
    }

    /// Called for each record before [`OffsetTracker::start`]: when the
    /// record at `offset` leaves a gap after the one expected, the gap, now
    /// in flight. The caller finds out how much of it retention deleted and
    /// hands it back to [`OffsetTracker::finish_gap`].
    pub fn gap(&mut self, partition: i32, offset: i64) -> Option<Gap> {
        let state = self.partitions.get_mut(&partition)?;
        let from = state.expected.filter(|e| *e < offset)?;
        state.in_flight.insert(from);
        state.lowest_started = Some(state.lowest_started.map_or(from, |l| l.min(from)));
        Some(Gap {
            partition,
            from,
            to: offset,
            epoch: state.epoch,
        })
    }

    /// The gap is judged: `skipped` of its offsets were deleted unread.
    /// Returns the safe offset when it moved, as [`OffsetTracker::finish`].
    pub fn finish_gap(&mut self, gap: Gap, skipped: u64) -> Option<i64> {
        let state = self.partitions.get_mut(&gap.partition)?;
        if state.epoch != gap.epoch || !state.in_flight.remove(&gap.from) {
            return None;
        }
        if skipped > 0 {
            state.skips.insert(gap.from, skipped);
        }
        state.advance()
    }

    /// A record of `partition` at `offset`, with Kafka timestamp
    /// `kafka_timestamp_ms`, starts being written. Records of a partition
    /// start in offset order.
    pub fn start(
        &mut self,
        partition: i32,
        offset: i64,
        kafka_timestamp_ms: Option<i64>,
    ) -> Ticket {
        self.start_from(partition, offset, OwnTime::Kafka(kafka_timestamp_ms))
    }

    /// As [`OffsetTracker::start`], with the write time starting from `own`.
    pub fn start_from(&mut self, partition: i32, offset: i64, own: OwnTime) -> Ticket {
        let next_epoch = &mut self.next_epoch;
        let state = self.partitions.entry(partition).or_insert_with(|| {
            *next_epoch += 1;
            PartitionState {
                epoch: *next_epoch,
                ..PartitionState::default()
            }
        });
        let write_timestamp = state.clock.next_from(own);
        state.timestamps.insert(offset, write_timestamp);
        state.in_flight.insert(offset);
        state.expected = Some(offset + 1);
        state.lowest_started = Some(state.lowest_started.map_or(offset, |l| l.min(offset)));
        state.highest_started = Some(state.highest_started.map_or(offset, |h| h.max(offset)));
        Ticket {
            partition,
            offset,
            write_timestamp,
            epoch: state.epoch,
        }
    }

    /// The record of `ticket` is written, or `dead_lettered`. Returns the
    /// offset of the last record below which everything is done, when it
    /// moved: the consumer stores it (librdkafka commits that plus one).
    pub fn finish(&mut self, ticket: Ticket, dead_lettered: bool) -> Option<i64> {
        self.finish_counted(ticket, dead_lettered, 0)
    }

    /// As [`OffsetTracker::finish`], for a record whose write Cassandra
    /// timed out or refused as overloaded `timed_out` times first.
    pub fn finish_counted(
        &mut self,
        ticket: Ticket,
        dead_lettered: bool,
        timed_out: u64,
    ) -> Option<i64> {
        let state = self.partitions.get_mut(&ticket.partition)?;
        if state.epoch != ticket.epoch || !state.in_flight.remove(&ticket.offset) {
            return None;
        }
        if dead_lettered {
            state.dead_letters.insert(ticket.offset);
        }
        if timed_out > 0 {
            state.timeouts.insert(ticket.offset, timed_out);
        }
        state.advance()
    }

    /// The safe offsets that moved since the last call, per partition of
    /// `only` (every partition when `None`), for the consumer to store.
    /// Called under the same lock as [`OffsetTracker::finish`], so a lower
    /// safe offset is never stored after a higher one.
    pub fn take_safe(&mut self, only: Option<&[i32]>) -> Vec<Safe> {
        let mut out = Vec::new();
        for (partition, state) in &mut self.partitions {
            if !state.unstored || only.is_some_and(|o| !o.contains(partition)) {
                continue;
            }
            state.unstored = false;
            out.extend(state.safe(*partition));
        }
        out
    }

    /// Every safe offset of this assignment (of `only`, else of every
    /// partition), moved or not: what an explicit commit must carry, since
    /// librdkafka drops stored metadata on a commit without a list.
    pub fn all_safe(&self, only: Option<&[i32]>) -> Vec<Safe> {
        self.partitions
            .iter()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .filter_map(|(partition, state)| state.safe(*partition))
            .collect()
    }

    /// Records still being written in `partition`.
    pub fn in_flight(&self, partition: i32) -> usize {
        self.partitions
            .get(&partition)
            .map_or(0, |s| s.in_flight.len())
    }

    /// Records still being written in any partition.
    pub fn total_in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.in_flight.len()).sum()
    }

    /// The partition is no longer ours: forget it, so late finishes of its
    /// records are ignored.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(write_timestamp: i64, dead_lettered: u64) -> CommitMetadata {
        CommitMetadata {
            write_timestamp,
            dead_lettered,
            ..CommitMetadata::default()
        }
    }

    #[test]
    fn dead_letters_are_counted_once_below_the_safe_offset_and_across_owners() {
        let mut t = OffsetTracker::default();
        t.assign(1, Some(meta(10_000, 7)), Some(20));
        let a = t.start(1, 20, Some(11));
        let b = t.start(1, 21, Some(11));
        let c = t.start(1, 22, Some(11));
        // 21 is dead-lettered first, but is not below the safe offset yet.
        assert_eq!(t.finish(b, true), None);
        assert!(t.take_safe(None).is_empty());
        assert_eq!(t.finish(a, false), Some(21));
        let safe = t.take_safe(None);
        assert_eq!(safe[0].dead_lettered, 8, "7 committed before, and 21");
        assert_eq!(t.finish(c, true), Some(22));
        assert_eq!(t.take_safe(None)[0].dead_lettered, 9);
        // A revoke drops what was not yet safe; the next owner resumes from
        // the commit.
        let d = t.start(1, 23, Some(11));
        t.revoke(1);
        assert_eq!(t.finish(d, true), None);
        t.assign(1, Some(meta(12_000, 9)), Some(23));
        let again = t.start(1, 23, Some(11));
        assert_eq!(t.finish(again, true), Some(23));
        assert_eq!(t.all_safe(None)[0].dead_lettered, 10, "23 counted once");
    }

    #[test]
    fn timed_out_tries_are_counted_below_the_safe_offset_and_across_owners() {
        let mut t = OffsetTracker::default();
        let committed = CommitMetadata {
            timed_out: 4,
            ..meta(10_000, 0)
        };
        t.assign(2, Some(committed), Some(5));
        let a = t.start(2, 5, Some(11));
        let b = t.start(2, 6, Some(11));
        // 6 waited three times, but 5 is still in flight.
        assert_eq!(t.finish_counted(b, false, 3), None);
        assert_eq!(t.finish_counted(a, false, 1), Some(6));
        assert_eq!(t.take_safe(None)[0].timed_out, 8, "4 before, 1 and 3");
        t.revoke(2);
        t.assign(
            2,
            Some(CommitMetadata {
                timed_out: 8,
                ..meta(12_000, 0)
            }),
            Some(7),
        );
        let c = t.start(2, 7, Some(11));
        assert_eq!(t.finish(c, false), Some(7));
        assert_eq!(t.all_safe(None)[0].timed_out, 8, "carried across owners");
    }

    fn offsets(safe: Vec<Safe>) -> Vec<(i32, i64)> {
        safe.into_iter().map(|s| (s.partition, s.offset)).collect()
    }

    #[test]
    fn an_offset_is_safe_only_after_every_earlier_record() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 10, Some(1));
        let b = t.start(0, 11, Some(1));
        let c = t.start(0, 12, Some(1));
        assert_eq!(t.finish(c, false), None, "10 and 11 are still in flight");
        assert_eq!(t.finish(b, false), None, "10 is still in flight");
        assert_eq!(t.finish(a, false), Some(12), "all three done");
        assert_eq!(t.in_flight(0), 0);
    }

    #[test]
    fn the_safe_offset_moves_up_to_the_lowest_in_flight() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 0, Some(1));
        let b = t.start(0, 1, Some(1));
        let _c = t.start(0, 5, Some(1)); // offsets may have gaps
        let d = t.start(0, 7, Some(1));
        assert_eq!(t.finish(a, false), Some(0));
        assert_eq!(t.finish(d, false), None);
        assert_eq!(t.finish(b, false), Some(4), "everything below 5 is done");
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 3, Some(1));
        let b = t.start(1, 8, Some(1));
        assert_eq!(t.finish(b, false), Some(8));
        assert_eq!(t.in_flight(0), 1);
        assert_eq!(t.finish(a, false), Some(3));
    }

    #[test]
    fn safe_offsets_are_taken_once_and_only_when_they_moved() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 10, Some(1));
        let b = t.start(1, 20, Some(1));
        let c = t.start(1, 21, Some(1));
        assert!(t.take_safe(None).is_empty(), "nothing written yet");
        t.finish(c, false);
        assert!(t.take_safe(None).is_empty(), "20 is still in flight");
        t.finish(a, false);
        t.finish(b, false);
        let mut safe = offsets(t.take_safe(None));
        safe.sort_unstable();
        assert_eq!(safe, [(0, 10), (1, 21)]);
        assert!(t.take_safe(None).is_empty(), "already taken");
        let d = t.start(0, 11, Some(1));
        let e = t.start(1, 22, Some(1));
        t.finish(d, false);
        t.finish(e, false);
        assert_eq!(offsets(t.take_safe(Some(&[1]))), [(1, 22)]);
        assert_eq!(offsets(t.take_safe(None)), [(0, 11)]);
        t.revoke(0);
        assert!(
            t.take_safe(None).is_empty(),
            "a revoked partition is forgotten"
        );
    }

    #[test]
    fn a_write_finishing_after_revoke_is_ignored() {
        let mut t = OffsetTracker::default();
        let old = t.start(2, 100, Some(1));
        t.revoke(2);
        let new = t.start(2, 50, Some(1));
        assert_eq!(t.finish(old, false), None, "the old assignment's write");
        assert_eq!(t.in_flight(2), 1);
        assert_eq!(t.finish(new, false), Some(50));
        assert_eq!(t.total_in_flight(), 0);
    }

    #[test]
    fn the_safe_offset_carries_the_write_timestamp_of_its_record() {
        let mut t = OffsetTracker::default();
        t.assign(0, Some(meta(41_999, 0)), Some(10));
        let a = t.start(0, 10, Some(41));
        let b = t.start(0, 11, Some(41));
        let _gap = t.start(0, 15, Some(42));
        assert_eq!((a.write_timestamp, b.write_timestamp), (42_000, 42_001));
        t.finish(b, false);
        assert!(t.take_safe(None).is_empty(), "10 is still in flight");
        assert_eq!(t.finish(a, false), Some(14), "everything below 15 is done");
        let safe = t.take_safe(None);
        assert_eq!(
            safe,
            [Safe {
                partition: 0,
                offset: 14,
                write_timestamp: Some(42_001),
                dead_lettered: 0,
                skipped: 0,
                timed_out: 0,
            }],
            "offset 14 is a gap: the timestamp is that of 11, the last record below it"
        );
        assert_eq!(t.all_safe(None), safe, "still the partition's safe point");
    }

    #[test]
    fn an_assignment_resumes_the_chain_from_the_committed_timestamp() {
        let mut t = OffsetTracker::default();
        let first = t.start(3, 0, Some(5));
        t.revoke(3);
        t.assign(3, Some(meta(first.write_timestamp, 0)), Some(1));
        let replayed = t.start(3, 1, Some(5));
        assert_eq!(replayed.write_timestamp, first.write_timestamp + 1);
        assert_ne!(replayed.epoch, first.epoch);
    }

    #[test]
    fn a_gap_below_the_first_offset_is_counted_as_skipped_once_it_is_safe() {
        let mut t = OffsetTracker::default();
        let mut committed = meta(1_000, 2);
        committed.skipped = 5;
        // Committed at 10; retention deleted up to 60 before the sink came
        // back, so the next record read is 60.
        t.assign(0, Some(committed), Some(10));
        assert_eq!(t.gap(0, 10), None, "the expected offset is no gap");
        let gap = t.gap(0, 60).expect("offsets 10..60 are missing");
        assert_eq!((gap.from, gap.to), (10, 60));
        let a = t.start(0, 60, Some(2));
        assert_eq!(t.finish(a, false), None, "the gap is not judged yet");
        assert!(t.take_safe(None).is_empty());
        assert_eq!(gap.deleted_below(60), 50);
        assert_eq!(t.finish_gap(gap, gap.deleted_below(60)), Some(60));
        let safe = t.take_safe(None);
        assert_eq!(
            (safe[0].offset, safe[0].skipped),
            (60, 55),
            "5 before, and 50"
        );
        assert_eq!(safe[0].dead_lettered, 2);
        // The next record follows on: no gap, nothing more counted.
        assert_eq!(t.gap(0, 61), None);
        let b = t.start(0, 61, Some(2));
        t.finish(b, false);
        assert_eq!(t.all_safe(None)[0].skipped, 55);
    }

    #[test]
    fn a_gap_retention_did_not_make_counts_nothing() {
        let mut t = OffsetTracker::default();
        t.assign(0, None, Some(0));
        let a = t.start(0, 0, Some(1));
        // A transaction marker at 1: the next record is 2, and the
        // partition still starts at 0.
        let gap = t.gap(0, 2).expect("a gap");
        let b = t.start(0, 2, Some(1));
        t.finish(a, false);
        t.finish(b, false);
        assert_eq!(gap.deleted_below(0), 0);
        assert_eq!(t.finish_gap(gap, 0), Some(2));
        assert_eq!(t.take_safe(None)[0].skipped, 0);
        // Partly deleted: of a gap 2..10, the first offset is now 6.
        let gap = Gap {
            partition: 0,
            from: 2,
            to: 10,
            epoch: 0,
        };
        assert_eq!(gap.deleted_below(6), 4);
        assert_eq!(gap.deleted_below(50), 8, "never more than the gap");
    }

    #[test]
    fn a_new_group_has_no_expected_offset_and_a_revoked_gap_is_ignored() {
        let mut t = OffsetTracker::default();
        t.assign(0, None, None);
        assert_eq!(
            t.gap(0, 500),
            None,
            "nothing was committed: no loss to count"
        );
        let a = t.start(0, 500, Some(1));
        let gap = t.gap(0, 510).expect("a gap");
        t.revoke(0);
        assert_eq!(t.finish_gap(gap, 10), None, "the old assignment's gap");
        assert_eq!(t.finish(a, false), None);
    }
}
