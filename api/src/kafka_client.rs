//! How the operator and the runner connect to a pipeline's Kafka cluster:
//! the client settings from the spec and its credentials, and the sink's
//! consumer group.
//!
//! Settings are returned as librdkafka key/value pairs, so this crate does
//! not need rdkafka; each client adds the settings of its own role.

use crate::credentials::KafkaCredentialValues;
use crate::spec::KafkaSpec;

/// The runner's environment for what the operator takes from the pipeline's
/// Secrets (each by `secretKeyRef`, so no value is in the Deployment).
pub mod env {
    pub const KAFKA_USERNAME: &str = "MILLRACE_KAFKA_USERNAME";
    pub const KAFKA_PASSWORD: &str = "MILLRACE_KAFKA_PASSWORD";
    pub const KAFKA_CA_PEM: &str = "MILLRACE_KAFKA_CA_PEM";
    pub const KAFKA_CLIENT_CERT_PEM: &str = "MILLRACE_KAFKA_CLIENT_CERT_PEM";
    pub const KAFKA_CLIENT_KEY_PEM: &str = "MILLRACE_KAFKA_CLIENT_KEY_PEM";
}

/// librdkafka settings for `bootstrap_servers` of the cluster `kafka`
/// describes: its security protocol, and the SASL login and the TLS
/// material of `values` where that protocol uses them.
pub fn kafka_client_settings(
    bootstrap_servers: &str,
    kafka: &KafkaSpec,
    values: &KafkaCredentialValues,
) -> Vec<(&'static str, String)> {
    let mut settings = vec![("bootstrap.servers", bootstrap_servers.to_owned())];
    if kafka.credentials_secret_ref.is_none() && kafka.tls.is_none() {
        return settings;
    }
    let protocol = kafka.security_protocol();
    settings.push(("security.protocol", protocol.as_str().to_owned()));
    if let (true, Some(creds), Some(login)) = (
        protocol.uses_sasl(),
        &kafka.credentials_secret_ref,
        &values.login,
    ) {
        settings.extend([
            ("sasl.mechanism", creds.mechanism.as_str().to_owned()),
            ("sasl.username", login.username.clone()),
            ("sasl.password", login.password.clone()),
        ]);
    }
    if protocol.uses_tls() {
        // librdkafka's default since 1.9, stated so that no build or
        // future default turns the check of the brokers' names off.
        settings.push(("ssl.endpoint.identification.algorithm", "https".to_owned()));
        let pems = [
            ("ssl.ca.pem", &values.ca_pem),
            ("ssl.certificate.pem", &values.client_cert_pem),
            ("ssl.key.pem", &values.client_key_pem),
        ];
        for (key, pem) in pems {
            if let Some(pem) = pem {
                settings.push((key, pem.clone()));
            }
        }
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
    use crate::spec::{KafkaTls, TopicSpec};

    fn kafka(extra: serde_json::Value) -> KafkaSpec {
        let mut spec = serde_json::json!({
            "bootstrapServers": "k:9092",
            "topic": serde_json::to_value(TopicSpec::named("t")).unwrap(),
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        serde_json::from_value(spec).unwrap()
    }

    fn all_values() -> KafkaCredentialValues {
        KafkaCredentialValues {
            login: Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            ca_pem: Some("CA".into()),
            client_cert_pem: Some("CERT".into()),
            client_key_pem: Some("KEY".into()),
        }
    }

    fn keys(settings: &[(&'static str, String)]) -> Vec<&'static str> {
        settings.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn without_a_secret_only_the_brokers_are_set() {
        assert_eq!(
            kafka_client_settings("k:9092", &kafka(serde_json::json!({})), &all_values()),
            [("bootstrap.servers", "k:9092".to_owned())]
        );
    }

    #[test]
    fn a_plaintext_login_sets_sasl_and_nothing_of_tls() {
        let spec = kafka(serde_json::json!({"credentialsSecretRef": {
            "name": "kafka-login", "mechanism": "SCRAM-SHA-256", "securityProtocol": "SASL_PLAINTEXT",
        }}));
        assert_eq!(
            kafka_client_settings("k:9092", &spec, &KafkaCredentialValues::default()),
            [
                ("bootstrap.servers", "k:9092".to_owned()),
                ("security.protocol", "SASL_PLAINTEXT".to_owned()),
            ]
        );
        assert_eq!(
            kafka_client_settings("k:9092", &spec, &all_values()),
            [
                ("bootstrap.servers", "k:9092".to_owned()),
                ("security.protocol", "SASL_PLAINTEXT".to_owned()),
                ("sasl.mechanism", "SCRAM-SHA-256".to_owned()),
                ("sasl.username", "u".to_owned()),
                ("sasl.password", "p".to_owned()),
            ]
        );
    }

    #[test]
    fn tls_alone_is_ssl_with_the_ca_and_client_certificate() {
        let mut spec = kafka(serde_json::json!({}));
        spec.tls = Some(KafkaTls::default());
        let settings = kafka_client_settings("k:9093", &spec, &all_values());
        assert_eq!(
            keys(&settings),
            [
                "bootstrap.servers",
                "security.protocol",
                "ssl.endpoint.identification.algorithm",
                "ssl.ca.pem",
                "ssl.certificate.pem",
                "ssl.key.pem",
            ],
            "no SASL without a login Secret"
        );
        assert_eq!(settings[1].1, "SSL");
        assert_eq!(settings[2].1, "https", "brokers' names are checked");
    }

    #[test]
    fn a_tls_login_is_sasl_ssl() {
        let spec = kafka(serde_json::json!({"credentialsSecretRef": {"name": "app-user"}}));
        let settings = kafka_client_settings("k:9093", &spec, &all_values());
        assert_eq!(settings[1], ("security.protocol", "SASL_SSL".to_owned()));
        assert_eq!(settings[2], ("sasl.mechanism", "SCRAM-SHA-512".to_owned()));
        assert!(keys(&settings).contains(&"ssl.ca.pem"));
    }

    #[test]
    fn every_secret_the_clients_read_is_named_once() {
        let spec = kafka(serde_json::json!({
            "tls": {"caSecretRef": {"name": "ca"}, "clientCertSecretRef": {"name": "app"}},
            "credentialsSecretRef": {"name": "app"},
        }));
        assert_eq!(spec.secret_names(), ["app", "ca"]);
        assert!(kafka(serde_json::json!({})).secret_names().is_empty());
    }

    #[test]
    fn the_group_is_named_after_namespace_and_pipeline() {
        assert_eq!(
            consumer_group("data", "randomuser"),
            "millrace.data.randomuser"
        );
    }
}
