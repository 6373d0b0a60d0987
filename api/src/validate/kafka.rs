//! Checks of `spec.kafka` and the dead-letter topic.

use super::accumulator::Problems;
use super::names::{
    is_host, is_port, is_secret_key, is_secret_name, is_topic_name, split_host_port,
};
use super::problem::Problem;
use crate::spec::{KafkaSpec, SecurityProtocol, StreamPipelineSpec, limits};

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
        let protocol = creds.security_protocol;
        if !protocol.uses_sasl() {
            v.push(
                format!("{at}.securityProtocol"),
                Problem::LoginWithoutSasl(protocol.as_str().to_owned()),
            );
        } else if protocol == SecurityProtocol::SaslPlaintext {
            if kafka.tls.is_some() {
                v.push(
                    format!("{at}.securityProtocol"),
                    Problem::TlsWithPlaintextLogin,
                );
            }
            if creds.ca_key.is_some() {
                v.push(format!("{at}.caKey"), Problem::CaWithoutTls);
            }
        }
        if creds.ca_key.is_some()
            && kafka
                .tls
                .as_ref()
                .is_some_and(|t| t.ca_secret_ref.is_some())
        {
            v.push(format!("{at}.caKey"), Problem::CaGivenTwice);
        }
    }
    if let Some(tls) = &kafka.tls {
        let at = "spec.kafka.tls";
        let mut refs = Vec::new();
        if let Some(ca) = &tls.ca_secret_ref {
            refs.push(("caSecretRef", &ca.name, vec![("key", &ca.key)]));
        }
        if let Some(cert) = &tls.client_cert_secret_ref {
            refs.push((
                "clientCertSecretRef",
                &cert.name,
                vec![("certKey", &cert.cert_key), ("keyKey", &cert.key_key)],
            ));
        }
        for (field, name, keys) in refs {
            if !is_secret_name(name) {
                v.push(
                    format!("{at}.{field}.name"),
                    Problem::SecretName(name.clone()),
                );
            }
            for (key_field, key) in keys {
                if !is_secret_key(key) {
                    v.push(
                        format!("{at}.{field}.{key_field}"),
                        Problem::SecretKey(key.clone()),
                    );
                }
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
    if !topic.managed && !topic.config.is_empty() {
        v.push("spec.kafka.topic.config", Problem::ConfigOfUnmanagedTopic);
    }
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
    use crate::spec::{CaSecretRef, KafkaCredentials, KafkaTls};
    use crate::validate::fixture::{problems, spec};
    use crate::validate_spec;

    fn login(protocol: &str, ca_key: Option<&str>) -> KafkaCredentials {
        let mut creds = serde_json::json!({"name": "login", "securityProtocol": protocol});
        if let Some(key) = ca_key {
            creds["caKey"] = key.into();
        }
        serde_json::from_value(creds).unwrap()
    }

    fn tls_with_ca() -> KafkaTls {
        KafkaTls {
            ca_secret_ref: Some(CaSecretRef::named("cluster-ca")),
            client_cert_secret_ref: None,
        }
    }

    #[test]
    fn tls_and_logins_combine_only_in_ways_that_mean_something() {
        let check = |tls: Option<KafkaTls>, creds: Option<KafkaCredentials>| {
            let mut s = spec();
            s.kafka.tls = tls;
            s.kafka.credentials_secret_ref = creds;
            problems(&s)
                .into_iter()
                .map(|p| (p.field, p.problem))
                .collect::<Vec<_>>()
        };
        for ok in [
            check(Some(tls_with_ca()), None),
            check(Some(KafkaTls::default()), Some(login("SASL_SSL", None))),
            check(None, Some(login("SASL_SSL", Some("ca.crt")))),
            check(None, Some(login("SASL_PLAINTEXT", None))),
        ] {
            assert_eq!(ok, []);
        }
        let at = |f: &str| format!("spec.kafka.credentialsSecretRef.{f}");
        assert_eq!(
            check(None, Some(login("SSL", None))),
            [(
                at("securityProtocol"),
                Problem::LoginWithoutSasl("SSL".into())
            )]
        );
        assert_eq!(
            check(Some(tls_with_ca()), Some(login("SASL_PLAINTEXT", None))),
            [(at("securityProtocol"), Problem::TlsWithPlaintextLogin)]
        );
        assert_eq!(
            check(None, Some(login("SASL_PLAINTEXT", Some("ca.crt")))),
            [(at("caKey"), Problem::CaWithoutTls)]
        );
        assert_eq!(
            check(Some(tls_with_ca()), Some(login("SASL_SSL", Some("ca.crt")))),
            [(at("caKey"), Problem::CaGivenTwice)]
        );
        let mut bad = tls_with_ca();
        bad.ca_secret_ref.as_mut().unwrap().key = "a/b".into();
        assert_eq!(
            check(Some(bad), None),
            [(
                "spec.kafka.tls.caSecretRef.key".to_owned(),
                Problem::SecretKey("a/b".into())
            )]
        );
    }

    #[test]
    fn the_protocol_follows_the_login_and_tls() {
        let mut s = spec().kafka;
        assert_eq!(s.security_protocol(), SecurityProtocol::Plaintext);
        s.tls = Some(KafkaTls::default());
        assert_eq!(s.security_protocol(), SecurityProtocol::Ssl);
        s.credentials_secret_ref = Some(login("SASL_SSL", Some("ca.pem")));
        assert_eq!(s.security_protocol(), SecurityProtocol::SaslSsl);
        assert_eq!(
            s.ca_ref(),
            Some(CaSecretRef {
                name: "login".into(),
                key: "ca.pem".into()
            }),
            "the login Secret's caKey, when tls names no CA"
        );
    }

    #[test]
    fn a_strimzi_scram_secret_names_its_user() {
        let creds = login("SASL_SSL", None);
        assert_eq!(creds.username(None).as_deref(), Some("login"));
        assert_eq!(
            creds.username(Some("alice".into())).as_deref(),
            Some("alice")
        );
        let explicit: KafkaCredentials =
            serde_json::from_value(serde_json::json!({"name": "login", "usernameKey": "user"}))
                .unwrap();
        assert_eq!(explicit.username(None), None, "a named key must be there");
    }

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
