//! Checks of `spec.kafka` and the dead-letter topic.

use super::accumulator::Problems;
use super::names::{
    is_host, is_port, is_secret_key, is_secret_name, is_topic_name, split_host_port,
};
use super::problem::Problem;
use crate::spec::{KafkaSpec, StreamPipelineSpec, limits};

pub(super) fn check_kafka(v: &mut Problems, kafka: &KafkaSpec) {
    let servers = &kafka.bootstrap_servers;
    let server_ok = |s: &str| matches!(split_host_port(s), Some((host, Some(port))) if is_host(host) && is_port(port));
    if servers.is_empty() || servers.len() > 1024 || !servers.split(',').all(server_ok) {
        v.push(
            "spec.kafka.bootstrapServers",
            Problem::BootstrapServers(servers.clone()),
        );
    }
    if let Some(creds) = &kafka.credentials_secret_ref {
        let at = "spec.kafka.credentialsSecretRef";
        if !is_secret_name(&creds.name) {
            v.push(
                format!("{at}.name"),
                Problem::SecretName(creds.name.clone()),
            );
        }
        let keys = [
            ("usernameKey", Some(&creds.username_key)),
            ("passwordKey", Some(&creds.password_key)),
            ("caKey", creds.ca_key.as_ref()),
        ];
        for (field, key) in keys {
            if let Some(key) = key.filter(|k| !is_secret_key(k)) {
                v.push(format!("{at}.{field}"), Problem::SecretKey(key.clone()));
            }
        }
    }
    let topic = &kafka.topic;
    if !is_topic_name(&topic.name) {
        v.push(
            "spec.kafka.topic.name",
            Problem::TopicName(topic.name.clone()),
        );
    }
    v.range(
        "spec.kafka.topic.partitions",
        topic.partitions.into(),
        limits::PARTITIONS,
    );
    v.range(
        "spec.kafka.topic.replicationFactor",
        topic.replication_factor.into(),
        limits::TOPIC_REPLICATION_FACTOR,
    );
    v.count(
        "spec.kafka.topic.config",
        topic.config.len(),
        limits::TOPIC_CONFIG_MAX,
    );
    for key in topic.config.keys() {
        let ok = !key.is_empty()
            && key.len() <= 255
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.');
        if !ok {
            v.push(
                "spec.kafka.topic.config",
                Problem::TopicConfigName(key.clone()),
            );
        }
    }
}

/// The dead-letter topic must be a topic name other than the input topic's.
/// Without one, the default name derived from the input topic must still
/// be a topic name, which is reported on the input topic.
pub(super) fn check_dead_letter(v: &mut Problems, spec: &StreamPipelineSpec) {
    if let Some(topic) = spec.dead_letter.as_ref().and_then(|dl| dl.topic.as_ref()) {
        let field = "spec.deadLetter.topic";
        if !is_topic_name(topic) {
            v.push(field, Problem::TopicName(topic.clone()));
        } else if *topic == spec.kafka.topic.name {
            v.push(field, Problem::DeadLetterIsTopic(topic.clone()));
        }
    } else if is_topic_name(&spec.kafka.topic.name) && !is_topic_name(&spec.dead_letter_topic()) {
        v.push(
            "spec.kafka.topic.name",
            Problem::TopicName(spec.dead_letter_topic()),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::validate::fixture::{problems, spec};
    use crate::validate_spec;

    #[test]
    fn kafka_topic_injection_is_refused() {
        for attempt in [".", "..", "a b", "a,b", "a\"b", "a/b", "", &"t".repeat(250)] {
            let mut s = spec();
            s.kafka.topic.name = attempt.to_owned();
            assert!(
                problems(&s)
                    .iter()
                    .any(|p| matches!(p.problem, Problem::TopicName(_))),
                "{attempt:?}"
            );
        }
        let mut s = spec();
        s.kafka.topic.name = "t".repeat(246);
        assert_eq!(
            problems(&s)[0].field,
            "spec.kafka.topic.name",
            "no room for the .dlq suffix"
        );
        s.dead_letter = Some(crate::spec::DeadLetterSpec {
            topic: Some("dlq".into()),
        });
        validate_spec(&s).unwrap();
    }
}
