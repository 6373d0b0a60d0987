//! What the sink commits with each offset, as the offset's metadata, and
//! what the operator reads back from it:
//! - the write timestamp of the last record below the offset, so the next
//!   owner of the partition continues the sink's write-time chain (see the
//!   runner's `sink::write_time`);
//! - how many records of the partition, up to the offset, went to the
//!   dead-letter topic, carried across owners like the chain. With the
//!   committed offsets this gives `status.flow`'s totals exactly, and they
//!   survive restarts and rebalances: rows written = records committed −
//!   records dead-lettered.
//!
//! Text, `millrace.wt=<µs>;dl=<count>`. Metadata written by runners before
//! the count existed (`millrace.wt=<µs>`) reads as a count of zero.

/// Prefix of the metadata, so metadata written by something else is never
/// taken for ours.
const PREFIX: &str = "millrace.wt=";
const DEAD_LETTERED: &str = ";dl=";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitMetadata {
    /// Write timestamp (microseconds) of the last record below the offset.
    pub write_timestamp: i64,
    /// Records of the partition below the offset that were dead-lettered
    /// by the sink, since the group first committed with a count.
    pub dead_lettered: u64,
}

impl CommitMetadata {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{}{DEAD_LETTERED}{}",
            self.write_timestamp, self.dead_lettered
        )
    }

    /// The metadata, if it is ours.
    pub fn decode(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let (ts, dead_lettered) = match rest.split_once(DEAD_LETTERED) {
            Some((ts, count)) => (ts, count.parse().ok()?),
            None => (rest, 0),
        };
        Some(Self {
            write_timestamp: ts.parse().ok()?,
            dead_lettered,
        })
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
        };
        assert_eq!(m.encode(), "millrace.wt=-3;dl=42");
        assert_eq!(CommitMetadata::decode(&m.encode()), Some(m));
        assert_eq!(
            CommitMetadata::decode("millrace.wt=1700000000123999"),
            Some(CommitMetadata {
                write_timestamp: 1_700_000_000_123_999,
                dead_lettered: 0
            })
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
        ] {
            assert_eq!(CommitMetadata::decode(text), None, "{text}");
        }
    }
}
