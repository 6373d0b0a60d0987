//! Credentials read from a pipeline's Secrets: by the operator from the
//! Secret itself, by the runner from the environment the operator gives it.
//! Values are held in memory only; `Debug` never shows a password.

use std::fmt;

/// A user name and password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a Kafka client takes from the Secrets of `spec.kafka`: the SASL
/// login of `credentialsSecretRef` and the TLS material of `tls` (or the
/// login Secret's `caKey`).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KafkaCredentialValues {
    /// The SASL username and password.
    pub login: Option<Credentials>,
    /// PEM of the CA that signed the brokers' certificates.
    pub ca_pem: Option<String>,
    /// PEM of the client certificate, for mutual TLS.
    pub client_cert_pem: Option<String>,
    /// PEM of the client certificate's private key.
    pub client_key_pem: Option<String>,
}

impl fmt::Debug for KafkaCredentialValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pem = |v: &Option<String>| v.as_ref().map(|_| "<pem>");
        f.debug_struct("KafkaCredentialValues")
            .field("login", &self.login)
            .field("ca_pem", &pem(&self.ca_pem))
            .field("client_cert_pem", &pem(&self.client_cert_pem))
            .field("client_key_pem", &pem(&self.client_key_pem))
            .finish()
    }
}

/// What a Cassandra client takes from the Secrets of `spec.cassandra`: the
/// login of `credentialsSecretRef` and the TLS material of `tls`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CassandraCredentialValues {
    /// The username and password.
    pub login: Option<Credentials>,
    /// PEM of the CA that signed the nodes' certificates.
    pub ca_pem: Option<String>,
    /// PEM of the client certificate, for clusters that require one.
    pub client_cert_pem: Option<String>,
    /// PEM of the client certificate's private key.
    pub client_key_pem: Option<String>,
}

impl fmt::Debug for CassandraCredentialValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pem = |v: &Option<String>| v.as_ref().map(|_| "<pem>");
        f.debug_struct("CassandraCredentialValues")
            .field("login", &self.login)
            .field("ca_pem", &pem(&self.ca_pem))
            .field("client_cert_pem", &pem(&self.client_cert_pem))
            .field("client_key_pem", &pem(&self.client_key_pem))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "s3cret".into(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
        let kafka = KafkaCredentialValues {
            login: Some(c),
            ca_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            client_cert_pem: Some("-----BEGIN CERTIFICATE-----".into()),
            client_key_pem: Some("-----BEGIN PRIVATE KEY-----".into()),
        };
        let text = format!("{kafka:?}");
        assert!(text.contains("\"u\"") && !text.contains("s3cret"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
        let cassandra = CassandraCredentialValues {
            login: kafka.login.clone(),
            ca_pem: kafka.ca_pem.clone(),
            client_cert_pem: kafka.client_cert_pem.clone(),
            client_key_pem: kafka.client_key_pem.clone(),
        };
        let text = format!("{cassandra:?}");
        assert!(text.contains("\"u\"") && !text.contains("s3cret"), "{text}");
        assert!(!text.contains("BEGIN"), "{text}");
    }
}
