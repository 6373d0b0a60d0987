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

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct PartitionState {
    epoch: u64,
    in_flight: BTreeSet<i64>,
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
    epoch: u64,
}

impl OffsetTracker {
    /// A record of `partition` at `offset` starts being written.
    pub fn start(&mut self, partition: i32, offset: i64) -> Ticket {
        let next_epoch = &mut self.next_epoch;
        let state = self.partitions.entry(partition).or_insert_with(|| {
            *next_epoch += 1;
            PartitionState {
                epoch: *next_epoch,
                ..PartitionState::default()
            }
        });
        state.in_flight.insert(offset);
        state.lowest_started = Some(state.lowest_started.map_or(offset, |l| l.min(offset)));
        state.highest_started = Some(state.highest_started.map_or(offset, |h| h.max(offset)));
        Ticket {
            partition,
            offset,
            epoch: state.epoch,
        }
    }

    /// The record of `ticket` is written (or dead-lettered). Returns the
    /// offset of the last record below which everything is done, when it
    /// moved: the consumer stores it (librdkafka commits that plus one).
    pub fn finish(&mut self, ticket: Ticket) -> Option<i64> {
        let state = self.partitions.get_mut(&ticket.partition)?;
        if state.epoch != ticket.epoch || !state.in_flight.remove(&ticket.offset) {
            return None;
        }
        let safe = match state.in_flight.first() {
            Some(&lowest) => lowest - 1,
            None => state.highest_started?,
        };
        let before_first = state.lowest_started.is_none_or(|l| safe < l);
        if before_first || state.stored.is_some_and(|s| s >= safe) {
            return None;
        }
        state.stored = Some(safe);
        state.unstored = true;
        Some(safe)
    }

    /// The safe offsets that moved since the last call, per partition of
    /// `only` (every partition when `None`), for the consumer to store.
    /// Called under the same lock as [`OffsetTracker::finish`], so a lower
    /// safe offset is never stored after a higher one.
    pub fn take_safe(&mut self, only: Option<&[i32]>) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        for (partition, state) in &mut self.partitions {
            if !state.unstored || only.is_some_and(|o| !o.contains(partition)) {
                continue;
            }
            state.unstored = false;
            if let Some(offset) = state.stored {
                out.push((*partition, offset));
            }
        }
        out
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

    #[test]
    fn an_offset_is_safe_only_after_every_earlier_record() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 10);
        let b = t.start(0, 11);
        let c = t.start(0, 12);
        assert_eq!(t.finish(c), None, "10 and 11 are still in flight");
        assert_eq!(t.finish(b), None, "10 is still in flight");
        assert_eq!(t.finish(a), Some(12), "all three done");
        assert_eq!(t.in_flight(0), 0);
    }

    #[test]
    fn the_safe_offset_moves_up_to_the_lowest_in_flight() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 0);
        let b = t.start(0, 1);
        let _c = t.start(0, 5); // offsets may have gaps
        let d = t.start(0, 7);
        assert_eq!(t.finish(a), Some(0));
        assert_eq!(t.finish(d), None);
        assert_eq!(t.finish(b), Some(4), "everything below 5 is done");
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 3);
        let b = t.start(1, 8);
        assert_eq!(t.finish(b), Some(8));
        assert_eq!(t.in_flight(0), 1);
        assert_eq!(t.finish(a), Some(3));
    }

    #[test]
    fn safe_offsets_are_taken_once_and_only_when_they_moved() {
        let mut t = OffsetTracker::default();
        let a = t.start(0, 10);
        let b = t.start(1, 20);
        let c = t.start(1, 21);
        assert!(t.take_safe(None).is_empty(), "nothing written yet");
        t.finish(c);
        assert!(t.take_safe(None).is_empty(), "20 is still in flight");
        t.finish(a);
        t.finish(b);
        let mut safe = t.take_safe(None);
        safe.sort_unstable();
        assert_eq!(safe, [(0, 10), (1, 21)]);
        assert!(t.take_safe(None).is_empty(), "already taken");
        let d = t.start(0, 11);
        let e = t.start(1, 22);
        t.finish(d);
        t.finish(e);
        assert_eq!(t.take_safe(Some(&[1])), [(1, 22)]);
        assert_eq!(t.take_safe(None), [(0, 11)]);
        t.revoke(0);
        assert!(
            t.take_safe(None).is_empty(),
            "a revoked partition is forgotten"
        );
    }

    #[test]
    fn a_write_finishing_after_revoke_is_ignored() {
        let mut t = OffsetTracker::default();
        let old = t.start(2, 100);
        t.revoke(2);
        let new = t.start(2, 50);
        assert_eq!(t.finish(old), None, "the old assignment's write");
        assert_eq!(t.in_flight(2), 1);
        assert_eq!(t.finish(new), Some(50));
        assert_eq!(t.total_in_flight(), 0);
    }
}
