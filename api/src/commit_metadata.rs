//! What the sink commits with each offset, as the offset's metadata, and
//! what the operator reads back from it:
//! - the write timestamp of the last record below the offset, so the next
//!   owner of the partition continues the sink's write-time chain (see the
//!   runner's `sink::write_time`);
//! - how many records of the partition, up to the offset, went to the
//!   dead-letter topic, carried across owners like the chain. With the
//!   committed offsets this gives `status.flow`'s totals exactly, and they
//!   survive restarts and rebalances;
//! - how many offsets of the partition, up to the offset, the sink never
//!   read because the topic's retention had deleted them first: records
//!   lost to the table, which status must show. Rows written = records
//!   committed − dead-lettered − skipped;
//! - how many tries of writes of the partition's records, up to the
//!   offset, Cassandra timed out or refused as overloaded (each retried):
//!   the sign that Cassandra, not the sink, is the bottleneck, on which the
//!   operator's autoscaler holds back.
//!
//! Text, `millrace.wt=<µs>;dl=<count>;sk=<count>;to=<count>`. Metadata
//! written by runners before a count existed (`millrace.wt=<µs>`, or
//! without `sk` or `to`) reads as a count of zero; a part this version does
//! not know is ignored, so a newer runner's commits still read.

/// Prefix of the metadata, so metadata written by something else is never
/// taken for ours.
const PREFIX: &str = "millrace.wt=";
const DEAD_LETTERED: &str = "dl";
const SKIPPED: &str = "sk";
const TIMED_OUT: &str = "to";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitMetadata {
    /// Write timestamp (microseconds) of the last record below the offset.
    pub write_timestamp: i64,
    /// Records of the partition below the offset that were dead-lettered
    /// by the sink, since the group first committed with a count.
    pub dead_lettered: u64,
    /// Offsets of the partition below the offset that retention deleted
    /// before the sink read them, since the group first committed with a
    /// count.
    pub skipped: u64,
    /// Tries of writes of the partition's records below the offset that
    /// Cassandra timed out or refused as overloaded, since the group first
    /// committed with a count.
    pub timed_out: u64,
}

impl CommitMetadata {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{};{DEAD_LETTERED}={};{SKIPPED}={};{TIMED_OUT}={}",
            self.write_timestamp, self.dead_lettered, self.skipped, self.timed_out
        )
    }

    /// The metadata, if it is ours.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix(PREFIX)?.split(';');
        let mut out = Self {
            write_timestamp: parts.next()?.parse().ok()?,
            ..Self::default()
        };
        for part in parts {
            let (key, value) = part.split_once('=')?;
            match key {
                DEAD_LETTERED => out.dead_lettered = value.parse().ok()?,
                SKIPPED => out.skipped = value.parse().ok()?,
                TIMED_OUT => out.timed_out = value.parse().ok()?,
                _ => {}
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_reads_the_older_form() {
        let m = CommitMetadata {
            write_timestamp: -3,
            dead_lettered: 42,
            skipped: 7,
            timed_out: 5,
        };
        assert_eq!(m.encode(), "millrace.wt=-3;dl=42;sk=7;to=5");
        assert_eq!(CommitMetadata::decode(&m.encode()), Some(m));
        assert_eq!(
            CommitMetadata::decode("millrace.wt=1700000000123999"),
            Some(CommitMetadata {
                write_timestamp: 1_700_000_000_123_999,
                ..CommitMetadata::default()
            })
        );
        assert_eq!(
            CommitMetadata::decode("millrace.wt=5;dl=2"),
            Some(CommitMetadata {
                write_timestamp: 5,
                dead_lettered: 2,
                skipped: 0,
                timed_out: 0
            }),
            "written before the skipped count existed"
        );
        assert_eq!(
            CommitMetadata::decode("millrace.wt=5;dl=2;sk=1;later=x"),
            Some(CommitMetadata {
                write_timestamp: 5,
                dead_lettered: 2,
                skipped: 1,
                timed_out: 0
            }),
            "a part a later version adds is ignored"
        );
    }

    #[test]
    fn metadata_that_is_not_ours_is_ignored() {
        for text in [
            "",
            "something else",
            "millrace.wt=x",
            "millrace.wt=1;dl=-1",
            "millrace.wt=1;dl=",
            "millrace.wt=1;sk=-2",
            "millrace.wt=1;to=x",
            "millrace.wt=1;dl",
        ] {
            assert_eq!(CommitMetadata::decode(text), None, "{text}");
        }
    }
}
