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

impl Credentials {
    /// From two environment variables: both set and non-empty, or none.
    pub fn from_env(user_var: &str, password_var: &str) -> Option<Self> {
        let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
        Some(Self {
            username: get(user_var)?,
            password: get(password_var)?,
        })
    }
}

/// What a Kafka client takes from the Secret of
/// `spec.kafka.credentialsSecretRef`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct KafkaCredentialValues {
    /// The SASL username and password.
    pub login: Option<Credentials>,
    /// PEM of the CA that signed the brokers' certificates (`caKey`).
    pub ca_pem: Option<String>,
}

impl fmt::Debug for KafkaCredentialValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaCredentialValues")
            .field("login", &self.login)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
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
        };
        let text = format!("{kafka:?}");
        assert!(text.contains("\"u\"") && !text.contains("s3cret"), "{text}");
    }
}
