//! Who owns a topic or a table. A topic, a dead-letter topic and a table
//! belong to one pipeline; a second pipeline that names one of them gets a
//! conflict and touches nothing of it (Strimzi's `ResourceConflict` is the
//! model).
//!
//! The record of ownership must outlive the operator process and be the
//! same for every replica, so it is kept outside the operator:
//! - a table's owner is written into the table's own `comment` option,
//!   where the data lives: whatever address a pipeline uses to reach the
//!   cluster, it reads the same record, and `cqlsh` shows it;
//! - a topic's owner is a ConfigMap in the operator's namespace, named from
//!   the Kafka cluster's id and the topic. Kafka refuses topic configs it
//!   does not know, so the record cannot live on the topic itself; the
//!   apiserver's create-if-absent makes the claim atomic.

use std::fmt;

use crate::desired::fnv64;

/// A pipeline, as an owner: namespace and name. A pipeline deleted with
/// `Retain` and applied again under the same name finds its data again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl Owner {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `namespace/name`, as the records hold it.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        (valid(namespace) && valid(name)).then(|| Self::new(namespace, name))
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What a pipeline may do with a topic or table, given its recorded owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Recorded as this pipeline's.
    Ours,
    /// No owner recorded: this pipeline records itself and goes on (a new
    /// resource, or one from before ownership was recorded).
    Free,
    /// Another pipeline's: change nothing, report the conflict.
    Theirs(Owner),
}

pub fn claim(me: &Owner, recorded: Option<Owner>) -> Claim {
    match recorded {
        None => Claim::Free,
        Some(owner) if &owner == me => Claim::Ours,
        Some(owner) => Claim::Theirs(owner),
    }
}

const MARK_OPEN: &str = "[millrace owner=";

/// The owner recorded in a table comment, if any.
pub fn owner_in_comment(comment: &str) -> Option<Owner> {
    let start = comment.find(MARK_OPEN)? + MARK_OPEN.len();
    let rest = &comment[start..];
    Owner::parse(&rest[..rest.find(']')?])
}

/// The table comment that records `owner`, keeping any text a person wrote
/// there (a table created by hand and then adopted keeps its comment).
pub fn comment_with_owner(comment: &str, owner: &Owner) -> String {
    let mark = format!("{MARK_OPEN}{owner}]");
    let kept = match comment.find(MARK_OPEN) {
        Some(start) => {
            let end = comment[start..]
                .find(']')
                .map_or(comment.len(), |e| start + e + 1);
            format!("{}{}", &comment[..start], &comment[end..])
        }
        None => comment.to_owned(),
    };
    let kept = kept.trim();
    if kept.is_empty() {
        mark
    } else {
        format!("{kept} {mark}")
    }
}

/// The comment with the owner record removed (the hand-over a person makes
/// with `ALTER TABLE ... WITH comment`).
pub fn comment_without_owner(comment: &str) -> String {
    match comment.find(MARK_OPEN) {
        Some(start) => {
            let end = comment[start..]
                .find(']')
                .map_or(comment.len(), |e| start + e + 1);
            format!("{}{}", &comment[..start], &comment[end..])
                .trim()
                .to_owned()
        }
        None => comment.to_owned(),
    }
}

/// Labels and annotations of a topic's ownership record.
pub const CLAIM_KIND_LABEL: &str = "millrace.io/claim";
pub const OWNER_ANNOTATION: &str = "millrace.io/owner";
pub const TOPIC_ANNOTATION: &str = "millrace.io/topic";
pub const KAFKA_CLUSTER_ANNOTATION: &str = "millrace.io/kafka-cluster";

/// The name of the ConfigMap that records who owns `topic` on the Kafka
/// cluster `cluster_id`. Topic names can be 249 characters of a wider
/// alphabet than object names allow, so the name carries a digest and the
/// annotations carry the names in full.
pub fn topic_claim_name(cluster_id: &str, topic: &str) -> String {
    let digest = fnv64(format!("{cluster_id}\0{topic}").as_bytes());
    let readable: String = topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let readable = readable.trim_matches('-');
    format!("millrace-topic-{readable}-{digest:016x}")
}

/// Why a pipeline may not use a resource: the text of its condition.
pub fn conflict_message(what: &str, owner: &Owner, how_to_release: &str) -> String {
    format!(
        "{what} belongs to StreamPipeline {owner}; this pipeline creates, alters and deletes nothing of it and its runner does not run. Point this pipeline at another name, or hand it over: {how_to_release}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Owner {
        Owner::new("team-a", "users")
    }

    #[test]
    fn a_record_of_another_pipeline_is_a_conflict_and_none_is_free() {
        assert_eq!(claim(&me(), None), Claim::Free);
        assert_eq!(claim(&me(), Some(me())), Claim::Ours);
        let other = Owner::new("team-b", "users");
        assert_eq!(claim(&me(), Some(other.clone())), Claim::Theirs(other));
        // Same name, other namespace: another pipeline.
        let twin = Owner::new("team-b", "users");
        assert_ne!(claim(&me(), Some(twin)), Claim::Ours);
    }

    #[test]
    fn the_owner_round_trips_through_the_table_comment_and_keeps_a_persons_text() {
        let c = comment_with_owner("", &me());
        assert_eq!(c, "[millrace owner=team-a/users]");
        assert_eq!(owner_in_comment(&c), Some(me()));

        let adopted = comment_with_owner("users by id, from the CRM", &me());
        assert_eq!(
            adopted,
            "users by id, from the CRM [millrace owner=team-a/users]"
        );
        assert_eq!(owner_in_comment(&adopted), Some(me()));
        assert_eq!(comment_without_owner(&adopted), "users by id, from the CRM");

        // Re-recording replaces the mark rather than adding a second one.
        let other = Owner::new("team-b", "orders");
        let moved = comment_with_owner(&adopted, &other);
        assert_eq!(moved.matches("[millrace owner=").count(), 1);
        assert_eq!(owner_in_comment(&moved), Some(other));
    }

    #[test]
    fn comments_without_a_valid_mark_record_no_owner() {
        assert_eq!(owner_in_comment(""), None);
        assert_eq!(owner_in_comment("just text"), None);
        assert_eq!(owner_in_comment("[millrace owner=no-slash]"), None);
        assert_eq!(owner_in_comment("[millrace owner=a/b"), None);
        assert_eq!(owner_in_comment("[millrace owner=A B/c]"), None);
    }

    #[test]
    fn topic_claim_names_are_valid_object_names_and_differ_by_cluster_and_topic() {
        let long = "t".repeat(249);
        for topic in ["users_created", "Users.Created-v2", long.as_str(), "__x"] {
            let name = topic_claim_name("abc", topic);
            assert!(name.len() <= 253, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{name}"
            );
            assert!(!name.ends_with('-'), "{name}");
        }
        assert_ne!(
            topic_claim_name("cluster-1", "users"),
            topic_claim_name("cluster-2", "users")
        );
        // Names that read the same after lowering still differ.
        assert_ne!(
            topic_claim_name("c", "Users"),
            topic_claim_name("c", "users")
        );
    }
}
