//! Dead-letter replay: what the operator and the runner agree on.
//!
//! A person asks for a replay by setting the annotation
//! [`REPLAY_ANNOTATION`] on the StreamPipeline to a token of their choice
//! (`kubectl annotate sp NAME millrace.io/replay-dead-letters=fix-1`). The
//! operator hands the token to the sink in [`REPLAY_TOKEN_ENV`]; the sink
//! reads the dead-letter topic in its own consumer group
//! ([`replay_group`]), from where the last replay ended up to the end each
//! partition had when this token's replay began, through the current
//! mapping. Each partition's progress is the group's committed offset,
//! with [`ReplayMetadata`] as its metadata: the token, the end, and the
//! counts. So a replay survives restarts and rebalances, several sink
//! replicas share it by partition, and the same token again finds every
//! partition at its end and does nothing. The operator reads the same
//! commits for `status.deadLetterReplay`.

/// The annotation that asks for a replay; its value is the token.
pub const REPLAY_ANNOTATION: &str = "millrace.io/replay-dead-letters";

/// The sink's environment variable that carries the token.
pub const REPLAY_TOKEN_ENV: &str = "MILLRACE_REPLAY_TOKEN";

/// The consumer group that replays the pipeline's dead letters.
pub fn replay_group(namespace: &str, name: &str) -> String {
    format!("{}.replay", crate::consumer_group(namespace, name))
}

/// The replay token the annotation asks for, if it is a valid one.
pub fn requested_token(value: Option<&str>) -> Result<Option<&str>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if is_replay_token(t) => Ok(Some(t)),
        Some(t) => Err(format!(
            "{REPLAY_ANNOTATION}={t:?} is not a replay token: use 1 to 63 letters, digits, '.', '_' or '-'"
        )),
    }
}

/// A token is 1 to 63 letters, digits, '.', '_' or '-': it travels in an
/// environment variable and in commit metadata, whose separators it must
/// not hold.
pub fn is_replay_token(token: &str) -> bool {
    (1..=63).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

const PREFIX: &str = "millrace.replay=";

/// What the replay group commits with each offset of a dead-letter
/// partition. Text, `millrace.replay=<token>;end=<offset>;ok=<n>;failed=<n>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayMetadata {
    /// The replay this progress belongs to.
    pub token: String,
    /// The partition's end offset when the replay began: records at or
    /// after it (among them what fails again) wait for the next token.
    pub end: i64,
    /// Records of the partition this replay wrote to the table.
    pub replayed: u64,
    /// Records of the partition that failed again (dead-lettered anew).
    pub failed_again: u64,
}

impl ReplayMetadata {
    pub fn encode(&self) -> String {
        format!(
            "{PREFIX}{};end={};ok={};failed={}",
            self.token, self.end, self.replayed, self.failed_again
        )
    }

    /// The metadata, if it is ours.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.strip_prefix(PREFIX)?.split(';');
        let token = parts.next().filter(|t| is_replay_token(t))?.to_owned();
        let mut out = Self {
            token,
            end: -1,
            ..Self::default()
        };
        for part in parts {
            let (key, value) = part.split_once('=')?;
            match key {
                "end" => out.end = value.parse().ok()?,
                "ok" => out.replayed = value.parse().ok()?,
                "failed" => out.failed_again = value.parse().ok()?,
                _ => {}
            }
        }
        (out.end >= 0).then_some(out)
    }

    /// Whether this progress, committed at `offset`, is the end of the
    /// replay of `token`.
    pub fn done(&self, token: &str, offset: i64) -> bool {
        self.token == token && offset >= self.end
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let m = ReplayMetadata {
            token: "fix-1".into(),
            end: 40,
            replayed: 38,
            failed_again: 2,
        };
        assert_eq!(m.encode(), "millrace.replay=fix-1;end=40;ok=38;failed=2");
        assert_eq!(ReplayMetadata::decode(&m.encode()), Some(m.clone()));
        assert!(m.done("fix-1", 40));
        assert!(!m.done("fix-1", 39));
        assert!(!m.done("fix-2", 40), "another token starts over");
    }

    #[test]
    fn metadata_that_is_not_ours_is_ignored() {
        for text in [
            "",
            "millrace.wt=5;dl=1",
            "millrace.replay=;end=1",
            "millrace.replay=a b;end=1",
            "millrace.replay=t",
            "millrace.replay=t;end=x",
        ] {
            assert_eq!(ReplayMetadata::decode(text), None, "{text}");
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert_eq!(requested_token(None), Ok(None));
        assert_eq!(requested_token(Some(" ")), Ok(None));
        assert_eq!(requested_token(Some("fix-1")), Ok(Some("fix-1")));
        assert!(requested_token(Some("a;b")).is_err());
        assert!(requested_token(Some(&"x".repeat(64))).is_err());
    }

    #[test]
    fn the_replay_group_is_the_sinks_with_a_suffix() {
        assert_eq!(replay_group("ns", "p"), "millrace.ns.p.replay");
    }
}
