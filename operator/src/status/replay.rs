//! Report a dead-letter replay (`status.deadLetterReplay`) from the commits
//! of the sink's replay group on the dead-letter topic
//! ([`millrace_api::replay`]), and the Events that mark its start and end.

use kube::ResourceExt;
use millrace_api::replay::requested_token;
use millrace_api::{
    DeadLetterReplayStatus, KafkaSpec, REPLAY_ANNOTATION, ReplayMetadata, ReplayState,
    StreamPipeline, replay_group,
};

use crate::clients::lag::{self, PartitionOffsets, Readers};
use crate::credentials::KafkaAuth;
use crate::events::Notice;

/// The replay token the pipeline's annotation asks for: `Ok(None)` when
/// there is none, `Err` with the reason when its value is no token.
pub fn requested(sp: &StreamPipeline) -> Result<Option<String>, String> {
    requested_token(sp.annotations().get(REPLAY_ANNOTATION).map(String::as_str))
        .map(|t| t.map(str::to_owned))
}

/// One partition of the dead-letter topic, as the replay group left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionProgress {
    pub committed: Option<i64>,
    pub meta: Option<ReplayMetadata>,
    pub low: i64,
    pub high: i64,
}

/// The replay of `token`, summed over the partitions.
pub fn summarize(token: &str, partitions: &[PartitionProgress]) -> DeadLetterReplayStatus {
    let mut out = DeadLetterReplayStatus {
        token: token.to_owned(),
        state: ReplayState::Done,
        ..DeadLetterReplayStatus::default()
    };
    for p in partitions {
        let at = p.committed.unwrap_or(p.low).max(p.low);
        match p.meta.as_ref().filter(|m| m.token == token) {
            Some(m) => {
                out.replayed += i64::try_from(m.replayed).unwrap_or(i64::MAX);
                out.failed_again += i64::try_from(m.failed_again).unwrap_or(i64::MAX);
                out.remaining += (m.end - at).max(0);
                if !m.done(token, at) {
                    out.state = ReplayState::Running;
                }
            }
            // The sink has not begun this partition yet: its end will be
            // the partition's end when it does.
            None => {
                out.remaining += (p.high - at).max(0);
                out.state = ReplayState::Running;
            }
        }
    }
    out
}

fn progress(partitions: Vec<PartitionOffsets>) -> Option<Vec<PartitionProgress>> {
    let out: Vec<PartitionProgress> = partitions
        .into_iter()
        .map(|p| PartitionProgress {
            committed: p.committed,
            meta: ReplayMetadata::decode(&p.metadata),
            low: p.low,
            high: p.high,
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// The replay status: unchanged once the replay asked for is done (no
/// reads), refreshed from Kafka while it runs.
pub async fn replay(
    offsets: &Readers,
    sp: &StreamPipeline,
    kafka: &KafkaSpec,
    auth: Option<&KafkaAuth>,
    old: Option<&DeadLetterReplayStatus>,
) -> Option<DeadLetterReplayStatus> {
    let token = match requested(sp) {
        Ok(Some(token)) => token,
        Ok(None) => return old.cloned(),
        Err(message) => {
            let raw = sp
                .annotations()
                .get(REPLAY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            return Some(DeadLetterReplayStatus {
                token: raw,
                state: ReplayState::Refused,
                message: Some(message),
                ..DeadLetterReplayStatus::default()
            });
        }
    };
    if let Some(old) = old.filter(|o| o.token == token && o.state == ReplayState::Done) {
        return Some(old.clone());
    }
    let starting = || DeadLetterReplayStatus {
        token: token.clone(),
        ..DeadLetterReplayStatus::default()
    };
    let group = replay_group(&sp.namespace().unwrap_or_default(), &sp.name_any());
    let Ok(reader) = offsets.get(kafka, auth) else {
        return old
            .filter(|o| o.token == token)
            .cloned()
            .or_else(|| Some(starting()));
    };
    let topic = sp.spec.dead_letter_topic();
    // The dead-letter topic's partitions are not read by the reconcile:
    // the reader asks (only while a replay runs).
    let measured = tokio::task::spawn_blocking(move || lag::read(&reader, &group, &topic, None))
        .await
        .ok()
        .flatten()
        .and_then(progress);
    match measured {
        Some(partitions) => Some(summarize(&token, &partitions)),
        None => old
            .filter(|o| o.token == token)
            .cloned()
            .or_else(|| Some(starting())),
    }
}

/// Events for a replay that began or ended between two statuses.
pub fn notices(
    old: Option<&DeadLetterReplayStatus>,
    new: Option<&DeadLetterReplayStatus>,
    dead_letter_topic: &str,
) -> Vec<Notice> {
    let Some(new) = new else {
        return Vec::new();
    };
    let same = old.is_some_and(|o| o.token == new.token);
    let was = old.filter(|_| same).map(|o| o.state);
    let mut out = Vec::new();
    match new.state {
        ReplayState::Refused if was != Some(ReplayState::Refused) => out.push(Notice::warning(
            "ReplayRefused",
            new.message.clone().unwrap_or_default(),
        )),
        ReplayState::Running | ReplayState::Done if !same => out.push(Notice::normal(
            "ReplayStarted",
            format!(
                "replaying the dead letters of {dead_letter_topic} through the current mapping (token {})",
                new.token
            ),
        )),
        _ => {}
    }
    if new.state == ReplayState::Done && was != Some(ReplayState::Done) {
        out.push(Notice::normal(
            "ReplayCompleted",
            format!(
                "replay {} is done: {} dead letters written to the table, {} failed again and are back on {dead_letter_topic}",
                new.token, new.replayed, new.failed_again
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(
        committed: Option<i64>,
        meta: Option<(&str, i64, u64, u64)>,
        high: i64,
    ) -> PartitionProgress {
        PartitionProgress {
            committed,
            meta: meta.map(|(token, end, replayed, failed_again)| ReplayMetadata {
                token: token.into(),
                end,
                replayed,
                failed_again,
            }),
            low: 0,
            high,
        }
    }

    #[test]
    fn a_replay_is_done_when_every_partition_reached_its_end() {
        let parts = [
            progress(Some(10), Some(("t", 10, 8, 2)), 12),
            progress(Some(4), Some(("t", 7, 4, 0)), 7),
        ];
        let s = summarize("t", &parts);
        assert_eq!(s.state, ReplayState::Running);
        assert_eq!((s.replayed, s.failed_again, s.remaining), (12, 2, 3));
        let parts = [
            progress(Some(10), Some(("t", 10, 8, 2)), 12),
            progress(Some(7), Some(("t", 7, 7, 0)), 7),
        ];
        let s = summarize("t", &parts);
        assert_eq!(s.state, ReplayState::Done);
        assert_eq!((s.replayed, s.failed_again, s.remaining), (15, 2, 0));
    }

    #[test]
    fn a_partition_not_begun_or_of_an_older_token_is_still_to_do() {
        let parts = [
            progress(None, None, 5),
            progress(Some(10), Some(("old", 10, 9, 1)), 12),
        ];
        let s = summarize("new", &parts);
        assert_eq!(s.state, ReplayState::Running);
        assert_eq!((s.replayed, s.failed_again, s.remaining), (0, 0, 7));
    }

    #[test]
    fn events_mark_the_start_and_the_end_once() {
        let running = DeadLetterReplayStatus {
            token: "t".into(),
            state: ReplayState::Running,
            ..DeadLetterReplayStatus::default()
        };
        let done = DeadLetterReplayStatus {
            state: ReplayState::Done,
            replayed: 5,
            ..running.clone()
        };
        let reasons = |n: Vec<Notice>| n.into_iter().map(|n| n.reason).collect::<Vec<_>>();
        assert_eq!(
            reasons(notices(None, Some(&running), "d")),
            ["ReplayStarted"]
        );
        assert!(notices(Some(&running), Some(&running), "d").is_empty());
        assert_eq!(
            reasons(notices(Some(&running), Some(&done), "d")),
            ["ReplayCompleted"]
        );
        assert!(notices(Some(&done), Some(&done), "d").is_empty());
        assert_eq!(
            reasons(notices(None, Some(&done), "d")),
            ["ReplayStarted", "ReplayCompleted"],
            "a replay with nothing to do starts and ends at once"
        );
        let refused = DeadLetterReplayStatus {
            token: "a;b".into(),
            state: ReplayState::Refused,
            message: Some("not a token".into()),
            ..DeadLetterReplayStatus::default()
        };
        assert_eq!(
            reasons(notices(Some(&done), Some(&refused), "d")),
            ["ReplayRefused"]
        );
        assert!(notices(Some(&refused), Some(&refused), "d").is_empty());
    }
}
