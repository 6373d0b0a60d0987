//! What can go wrong in a reconcile, each kind with a fixed class (does
//! retrying help?) and a static category for metrics.

use millrace_api::InvalidSpec;

/// Whether retrying soon can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The spec or something it points at is wrong; a person must act.
    /// Retried slowly (the object's own changes trigger a reconcile anyway).
    User,
    /// A service was unreachable or refused for now; retried with back-off.
    Transient,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(#[from] InvalidSpec),

    #[error("Secret {namespace}/{name} does not exist")]
    SecretNotFound { namespace: String, name: String },

    #[error("Secret {namespace}/{name} has no key {key:?}")]
    SecretKeyMissing {
        namespace: String,
        name: String,
        key: String,
    },

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("Kafka at {bootstrap}: {message}")]
    Kafka { bootstrap: String, message: String },

    #[error("Kafka refused: {0}")]
    KafkaRejected(String),

    /// Kafka refused the identity from the Secret (wrong SASL username or
    /// password, or a mechanism the broker does not offer).
    #[error(
        "Kafka at {bootstrap} refused the SASL credentials from Secret {secret}: {message}; check the Secret's username and password"
    )]
    KafkaAuth {
        bootstrap: String,
        secret: String,
        message: String,
    },

    /// The TLS handshake with the brokers failed: a CA that did not sign
    /// their certificates, a broker name its certificate does not carry, or
    /// a client certificate the brokers refuse.
    #[error(
        "Kafka at {bootstrap}: TLS failed: {message}; check spec.kafka.tls (the CA that signed the brokers' certificates, the client certificate) and that the bootstrap names are in the brokers' certificates"
    )]
    KafkaTls { bootstrap: String, message: String },

    /// A topic the spec says millrace does not manage is not there.
    #[error(
        "{what} does not exist; spec.kafka.topic.managed is false, so millrace does not create it: create it where the topic is managed (for example a Strimzi KafkaTopic), or set managed: true"
    )]
    UnmanagedTopicMissing { what: String },

    #[error("Cassandra at {contact_points}: {message}")]
    Cassandra {
        contact_points: String,
        message: String,
    },

    #[error("Cassandra refused: {0}")]
    CassandraRejected(String),

    /// Cassandra refused the identity (wrong username or password).
    #[error(
        "Cassandra at {contact_points} refused the credentials{from}: {message}; check the username and password"
    )]
    CassandraAuth {
        contact_points: String,
        /// ` from Secret NAME`, or empty without a Secret.
        from: String,
        message: String,
    },

    /// TLS to the nodes failed: a CA that did not sign their certificates,
    /// a certificate that does not name the node, a client certificate the
    /// nodes refuse or none where they require one, or TLS material from
    /// the Secrets that cannot be used.
    #[error(
        "Cassandra at {contact_points}: TLS failed: {message}; check spec.cassandra.tls (the CA that signed the nodes' certificates, the client certificate, verifyHostname)"
    )]
    CassandraTls {
        contact_points: String,
        message: String,
    },

    #[error("finalizer: {0}")]
    Finalizer(String),

    #[error("could not render {what}: {message}")]
    Render { what: &'static str, message: String },

    #[error("the StreamPipeline has no {0}")]
    MissingMetadata(&'static str),

    /// A write refused because this process does not hold the leader
    /// Lease (or let its renew deadline pass).
    #[error("{0}")]
    NotLeader(#[from] millrace_api::lease::NotLeader),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidSpec(_)
            | Self::SecretNotFound { .. }
            | Self::SecretKeyMissing { .. }
            | Self::KafkaRejected(_)
            | Self::CassandraRejected(_)
            | Self::KafkaAuth { .. }
            | Self::KafkaTls { .. }
            | Self::UnmanagedTopicMissing { .. }
            | Self::CassandraAuth { .. }
            | Self::CassandraTls { .. }
            | Self::Render { .. }
            | Self::MissingMetadata(_) => ErrorClass::User,
            Self::Kube(_)
            | Self::Kafka { .. }
            | Self::Cassandra { .. }
            | Self::Finalizer(_)
            | Self::NotLeader(_) => ErrorClass::Transient,
        }
    }

    /// A small fixed set of labels for the failure metric.
    pub fn category(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "invalid_spec",
            Self::SecretNotFound { .. } | Self::SecretKeyMissing { .. } => "secret",
            Self::Kube(e) if crate::leader::refused_write(e) => "not_leader",
            Self::Kube(_) => "kubernetes",
            Self::Kafka { .. } => "kafka_unavailable",
            Self::KafkaRejected(_) => "kafka_rejected",
            Self::Cassandra { .. } => "cassandra_unavailable",
            Self::CassandraRejected(_) => "cassandra_rejected",
            Self::KafkaAuth { .. } => "kafka_auth",
            Self::KafkaTls { .. } => "kafka_tls",
            Self::UnmanagedTopicMissing { .. } => "topic_missing",
            Self::CassandraAuth { .. } => "cassandra_auth",
            Self::CassandraTls { .. } => "cassandra_tls",
            Self::Finalizer(_) => "finalizer",
            Self::NotLeader(_) => "not_leader",
            Self::Render { .. } | Self::MissingMetadata(_) => "internal",
        }
    }

    /// The condition reason this error shows as.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSpec(_) => "InvalidSpec",
            Self::SecretNotFound { .. } | Self::SecretKeyMissing { .. } => "SecretNotFound",
            Self::Kube(_) => "KubernetesError",
            Self::Kafka { .. } | Self::Cassandra { .. } => "Unavailable",
            Self::KafkaRejected(_) | Self::CassandraRejected(_) => "Rejected",
            Self::KafkaAuth { .. } => "KafkaAuthFailed",
            Self::KafkaTls { .. } | Self::CassandraTls { .. } => "TlsFailed",
            Self::UnmanagedTopicMissing { .. } => "TopicNotFound",
            Self::CassandraAuth { .. } => "CassandraAuthFailed",
            Self::Finalizer(_) => "FinalizerError",
            Self::NotLeader(_) => "NotLeader",
            Self::Render { .. } | Self::MissingMetadata(_) => "InternalError",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_services_are_transient_and_bad_secrets_are_user_errors() {
        let kafka = Error::Kafka {
            bootstrap: "k:9092".into(),
            message: "timed out".into(),
        };
        assert_eq!(kafka.class(), ErrorClass::Transient);
        assert_eq!(kafka.reason(), "Unavailable");
        let secret = Error::SecretNotFound {
            namespace: "ns".into(),
            name: "creds".into(),
        };
        assert_eq!(secret.class(), ErrorClass::User);
        assert_eq!(secret.category(), "secret");
    }

    #[test]
    fn refused_credentials_are_user_errors_with_their_own_reasons() {
        let kafka = Error::KafkaAuth {
            bootstrap: "k:9094".into(),
            secret: "ns/kafka-creds".into(),
            message: "SASL authentication error".into(),
        };
        assert_eq!(kafka.class(), ErrorClass::User);
        assert_eq!(kafka.reason(), "KafkaAuthFailed");
        assert!(
            kafka.to_string().contains("Secret ns/kafka-creds"),
            "{kafka}"
        );
        let cassandra = Error::CassandraAuth {
            contact_points: "c:9042".into(),
            from: " from Secret ns/cassandra-creds".into(),
            message: "Authentication failed - bad credentials".into(),
        };
        assert_eq!(cassandra.class(), ErrorClass::User);
        assert_eq!(cassandra.reason(), "CassandraAuthFailed");
        assert_eq!(cassandra.category(), "cassandra_auth");
    }
}
