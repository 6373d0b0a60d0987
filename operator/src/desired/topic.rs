//! What it takes to bring a Kafka topic to the declared one.

use std::collections::BTreeMap;

use millrace_api::TopicSpec;

/// A topic as Kafka describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Configs set on the topic itself (source `DYNAMIC_TOPIC_CONFIG`).
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicAction {
    Create {
        partitions: i32,
        replication_factor: i32,
        config: BTreeMap<String, String>,
    },
    IncreasePartitions(i32),
    /// Sets the topic's own config to exactly this (undeclared overrides are
    /// removed: a manual change is reverted).
    SetConfig(BTreeMap<String, String>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    /// Declared changes Kafka cannot make, each explained.
    pub unsupported: Vec<String>,
}

pub fn plan_topic(declared: &TopicSpec, observed: Option<&ObservedTopic>) -> TopicPlan {
    let mut plan = TopicPlan::default();
    let Some(observed) = observed else {
        plan.actions.push(TopicAction::Create {
            partitions: declared.partitions,
            replication_factor: declared.replication_factor,
            config: declared.config.clone(),
        });
        return plan;
    };
    if declared.partitions > observed.partitions {
        plan.actions
            .push(TopicAction::IncreasePartitions(declared.partitions));
    } else if declared.partitions < observed.partitions {
        plan.unsupported.push(format!(
            "topic {:?} has {} partitions and the spec declares {}: Kafka cannot remove partitions; declare {} or more, or use a new topic",
            declared.name, observed.partitions, declared.partitions, observed.partitions
        ));
    }
    if declared.replication_factor != observed.replication_factor {
        plan.unsupported.push(format!(
            "topic {:?} has replication factor {} and the spec declares {}: the operator does not reassign replicas; change it with Kafka's reassignment tool or declare {}",
            declared.name,
            observed.replication_factor,
            declared.replication_factor,
            observed.replication_factor
        ));
    }
    if declared.config != observed.config {
        plan.actions
            .push(TopicAction::SetConfig(declared.config.clone()));
    }
    plan
}

/// How a topic millrace does not manage (`managed: false`) differs from
/// what the spec expects, in words for the condition; nothing is changed.
pub fn unmanaged_differences(declared: &TopicSpec, observed: &ObservedTopic) -> Vec<String> {
    let mut notes = Vec::new();
    if declared.partitions != observed.partitions {
        notes.push(format!(
            "it has {} partitions where the spec expects {}",
            observed.partitions, declared.partitions
        ));
    }
    if declared.replication_factor != observed.replication_factor {
        notes.push(format!(
            "replication factor {} where the spec expects {}",
            observed.replication_factor, declared.replication_factor
        ));
    }
    notes
}

/// The dead-letter topic is created like the main one, and otherwise left
/// as it is.
pub fn plan_dead_letter(declared: &TopicSpec, exists: bool) -> Option<TopicAction> {
    (!exists).then(|| TopicAction::Create {
        partitions: declared.partitions,
        replication_factor: declared.replication_factor,
        config: dead_letter_config(declared),
    })
}

/// Room for the headers a dead letter carries besides the record (why, and
/// where it came from).
pub const DEAD_LETTER_HEADROOM: i64 = 64 * 1024;

/// A dead-letter topic takes anything the topic takes: where the topic
/// allows larger records than the broker's default, so does it, with room
/// for the headers. (A record that still does not fit is dead-lettered
/// without its payload; see the runner's `Producer::dead_letter`.)
fn dead_letter_config(declared: &TopicSpec) -> BTreeMap<String, String> {
    declared
        .config
        .get("max.message.bytes")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|max| {
            BTreeMap::from([(
                "max.message.bytes".to_owned(),
                max.saturating_add(DEAD_LETTER_HEADROOM).to_string(),
            )])
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmanaged_topic_is_only_compared() {
        let mut t = declared();
        t.managed = false;
        let same = ObservedTopic {
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            config: BTreeMap::from([("retention.ms".to_owned(), "1".to_owned())]),
        };
        assert!(
            unmanaged_differences(&t, &same).is_empty(),
            "config is not compared"
        );
        let other = ObservedTopic {
            partitions: 12,
            replication_factor: 3,
            ..same
        };
        assert_eq!(
            unmanaged_differences(&t, &other),
            [
                format!(
                    "it has 12 partitions where the spec expects {}",
                    t.partitions
                ),
                format!(
                    "replication factor 3 where the spec expects {}",
                    t.replication_factor
                ),
            ]
        );
    }

    #[test]
    fn the_dead_letter_topic_takes_what_the_topic_takes_and_its_headers() {
        let mut t = declared();
        let Some(TopicAction::Create { config, .. }) = plan_dead_letter(&t, false) else {
            panic!("created");
        };
        assert!(config.is_empty(), "the broker's default, like the topic");
        t.config
            .insert("max.message.bytes".into(), "5242880".into());
        let Some(TopicAction::Create { config, .. }) = plan_dead_letter(&t, false) else {
            panic!("created");
        };
        assert_eq!(
            config["max.message.bytes"],
            (5_242_880 + 65_536).to_string()
        );
        assert_eq!(plan_dead_letter(&t, true), None);
    }

    fn declared() -> TopicSpec {
        let mut t = TopicSpec::named("users_created");
        t.partitions = 3;
        t.config.insert("retention.ms".into(), "604800000".into());
        t
    }

    fn observed(partitions: i32, rf: i32, config: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_missing_topic_is_created_as_declared() {
        let plan = plan_topic(&declared(), None);
        assert_eq!(
            plan.actions,
            [TopicAction::Create {
                partitions: 3,
                replication_factor: 1,
                config: declared().config
            }]
        );
    }

    #[test]
    fn a_matching_topic_is_adopted_without_writes() {
        let plan = plan_topic(
            &declared(),
            Some(&observed(3, 1, &[("retention.ms", "604800000")])),
        );
        assert_eq!(plan, TopicPlan::default());
    }

    #[test]
    fn more_partitions_and_a_changed_config_are_applied() {
        let mut d = declared();
        d.partitions = 6;
        let plan = plan_topic(
            &d,
            Some(&observed(
                3,
                1,
                &[("retention.ms", "1000"), ("cleanup.policy", "compact")],
            )),
        );
        assert_eq!(
            plan.actions,
            [
                TopicAction::IncreasePartitions(6),
                TopicAction::SetConfig(d.config.clone())
            ]
        );
        assert!(plan.unsupported.is_empty());
    }

    #[test]
    fn fewer_partitions_or_another_replication_factor_is_not_supported() {
        let mut d = declared();
        d.partitions = 2;
        d.replication_factor = 3;
        let plan = plan_topic(&d, Some(&observed(3, 1, &[("retention.ms", "604800000")])));
        assert!(plan.actions.is_empty());
        assert_eq!(plan.unsupported.len(), 2, "{:?}", plan.unsupported);
        assert!(plan.unsupported[0].contains("cannot remove partitions"));
        assert!(plan.unsupported[1].contains("replication factor 1"));
    }

    #[test]
    fn the_dead_letter_topic_is_only_created() {
        assert!(plan_dead_letter(&declared(), true).is_none());
        assert!(matches!(
            plan_dead_letter(&declared(), false),
            Some(TopicAction::Create { partitions: 3, .. })
        ));
    }
}
