//! How the operator and the runner connect to a pipeline's Kafka cluster:
//! the client settings from the spec and its credentials, and the sink's
//! consumer group.
//!
//! Settings are returned as librdkafka key/value pairs, so this crate does
//! not need rdkafka; each client adds the settings of its own role.

use crate::credentials::KafkaCredentialValues;
use crate::spec::KafkaCredentials;

/// librdkafka settings for `bootstrap_servers`: with a credentials Secret
/// (`secret_ref`), its security protocol, and the SASL mechanism and login
/// and the CA when `values` has them.
pub fn kafka_client_settings(
    bootstrap_servers: &str,
    secret_ref: Option<&KafkaCredentials>,
    values: &KafkaCredentialValues,
) -> Vec<(&'static str, String)> {
    let mut settings = vec![("bootstrap.servers", bootstrap_servers.to_owned())];
    let Some(secret_ref) = secret_ref else {
        return settings;
    };
    settings.push((
        "security.protocol",
        secret_ref.security_protocol.as_str().to_owned(),
    ));
    if let Some(login) = &values.login {
        settings.extend([
            ("sasl.mechanism", secret_ref.mechanism.as_str().to_owned()),
            ("sasl.username", login.username.clone()),
            ("sasl.password", login.password.clone()),
        ]);
    }
    if let Some(pem) = &values.ca_pem {
        settings.push(("ssl.ca.pem", pem.clone()));
    }
    settings
}

/// The sink's consumer group, `millrace.NS.NAME`: the operator reads the
/// sink's lag from its committed offsets.
pub fn consumer_group(namespace: &str, name: &str) -> String {
    format!("millrace.{namespace}.{name}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::spec::{SaslMechanism, SecurityProtocol};

    fn secret_ref() -> KafkaCredentials {
        serde_json::from_value(serde_json::json!({
            "name": "kafka-login",
            "mechanism": "SCRAM-SHA-256",
            "securityProtocol": "SASL_PLAINTEXT",
        }))
        .unwrap()
    }

    #[test]
    fn without_a_secret_only_the_brokers_are_set() {
        let values = KafkaCredentialValues {
            login: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            ca_pem: None,
        };
        assert_eq!(
            kafka_client_settings("k:9092", None, &values),
            [("bootstrap.servers", "k:9092".to_owned())]
        );
    }

    #[test]
    fn a_secret_sets_the_protocol_and_the_login_and_ca_it_holds() {
        let r = secret_ref();
        assert_eq!(r.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(r.security_protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            kafka_client_settings("k:9092", Some(&r), &KafkaCredentialValues::default()),
            [
                ("bootstrap.servers", "k:9092".to_owned()),
                ("security.protocol", "SASL_PLAINTEXT".to_owned()),
            ]
        );
        let values = KafkaCredentialValues {
            login: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            ca_pem: Some("PEM".into()),
        };
        assert_eq!(
            kafka_client_settings("k:9092", Some(&r), &values),
            [
                ("bootstrap.servers", "k:9092".to_owned()),
                ("security.protocol", "SASL_PLAINTEXT".to_owned()),
                ("sasl.mechanism", "SCRAM-SHA-256".to_owned()),
                ("sasl.username", "u".to_owned()),
                ("sasl.password", "p".to_owned()),
                ("ssl.ca.pem", "PEM".to_owned()),
            ]
        );
    }

    #[test]
    fn the_group_is_named_after_namespace_and_pipeline() {
        assert_eq!(
            consumer_group("data", "randomuser"),
            "millrace.data.randomuser"
        );
    }
}
