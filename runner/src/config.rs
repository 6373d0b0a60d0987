//! The runner's configuration: the pipeline document, with the overrides and
//! credentials of `docs/runner-contract.md`.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use millrace_api::cassandra_client::CassandraTlsError;
use millrace_api::{
    CassandraCredentialValues, Credentials, KafkaCredentialValues, LogFormat, RowMapper,
    StreamPipelineSpec, kafka_client_settings, validate_pipeline,
};
use rdkafka::ClientConfig;
use serde::Deserialize;

/// Why the runner cannot start with the configuration it was given.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the pipeline file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the pipeline file {path} is not a StreamPipeline document: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("the pipeline file {path} has no metadata.name")]
    NoName { path: PathBuf },
    #[error("the pipeline {name} is invalid: {message}")]
    PushPath { name: String, message: String },
    #[error("the pipeline {name} is invalid: {source}")]
    Invalid {
        name: String,
        source: millrace_api::InvalidSpec,
    },
}

/// The parts of a StreamPipeline the runner reads; `apiVersion`, `kind` and
/// `status` may be present and are ignored.
#[derive(Deserialize)]
struct Document {
    metadata: ObjectMeta,
    spec: StreamPipelineSpec,
}

/// A validated pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub name: String,
    pub namespace: String,
    /// The StreamPipeline's uid, when the document has one (the operator's
    /// always does): what the runner makes for it, its pull Leases, is
    /// owned by it.
    pub uid: Option<String>,
    pub spec: StreamPipelineSpec,
}

impl Pipeline {
    /// Reads and validates a pipeline file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let doc: Document = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let name =
            doc.metadata
                .name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| ConfigError::NoName {
                    path: path.to_owned(),
                })?;
        let namespace = doc
            .metadata
            .namespace
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned());
        let invalid = |source| ConfigError::Invalid {
            name: format!("{namespace}/{name}"),
            source,
        };
        validate_pipeline(&name, &doc.spec).map_err(invalid)?;
        for (i, table) in doc.spec.cassandra.tables().iter().enumerate() {
            RowMapper::new_at(table, &doc.spec.cassandra.table_path(i)).map_err(invalid)?;
        }
        push_paths(&doc.spec).map_err(|message| ConfigError::PushPath {
            name: format!("{namespace}/{name}"),
            message,
        })?;
        Ok(Self {
            name,
            namespace,
            uid: doc.metadata.uid.filter(|u| !u.is_empty()),
            spec: doc.spec,
        })
    }

    /// The sink's consumer group, `millrace.NS.NAME`.
    pub fn consumer_group(&self) -> String {
        millrace_api::consumer_group(&self.namespace, &self.name)
    }
}

/// Paths the runner's HTTP server serves itself.
const RESERVED_PATHS: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Push sources need distinct paths of their own.
fn push_paths(spec: &StreamPipelineSpec) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for source in &spec.sources {
        let Some(push) = &source.http_push else {
            continue;
        };
        if RESERVED_PATHS.contains(&push.path.as_str()) {
            return Err(format!(
                "httpPush source {}: path {} is the runner's own; choose another",
                source.name, push.path
            ));
        }
        if !seen.insert(push.path.as_str()) {
            return Err(format!(
                "httpPush source {}: another push source already uses path {}",
                source.name, push.path
            ));
        }
    }
    Ok(())
}

/// Where the runner finds Kafka and Cassandra: the spec, overridden by flags
/// or environment, plus credentials from the environment.
#[derive(Clone, Debug)]
pub struct Connections {
    pub kafka_bootstrap: String,
    /// The login and TLS material the operator passes from the pipeline's
    /// Secrets ([`millrace_api::kafka_client::env`]).
    pub kafka_credentials: KafkaCredentialValues,
    pub cassandra_contact_points: Vec<String>,
    /// The login and TLS material the operator passes from the pipeline's
    /// Cassandra Secrets ([`millrace_api::cassandra_client::env`]).
    pub cassandra_credentials: CassandraCredentialValues,
    /// The Schema Registry login ([`millrace_api::avro::env`]).
    pub schema_registry_credentials: Option<Credentials>,
    /// The CA bundle (PEM) of `schemaRegistry.tls.caSecretRef`.
    pub schema_registry_ca_pem: Option<String>,
}

/// Why no CQL session could be made.
#[derive(Debug, thiserror::Error)]
pub enum CassandraConnectError {
    /// The TLS material from the Secrets cannot be used.
    #[error("spec.cassandra.tls: {0}")]
    Tls(#[from] CassandraTlsError),
    #[error(transparent)]
    Session(#[from] scylla::errors::NewSessionError),
}

impl Connections {
    pub fn new(
        pipeline: &Pipeline,
        kafka_bootstrap: Option<String>,
        cassandra_contact_points: Option<String>,
    ) -> Self {
        let contact_points = match cassandra_contact_points {
            Some(points) => points
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            None => pipeline.spec.cassandra.contact_points.clone(),
        };
        Self {
            kafka_bootstrap: kafka_bootstrap
                .unwrap_or_else(|| pipeline.spec.kafka.bootstrap_servers.clone()),
            kafka_credentials: kafka_credentials_from_env(&pipeline.spec.kafka, |name| {
                std::env::var(name).ok().filter(|s| !s.is_empty())
            }),
            cassandra_contact_points: contact_points.iter().map(|p| with_port(p)).collect(),
            cassandra_credentials: cassandra_credentials_from_env(env_value),
            schema_registry_credentials: login_from_env(
                env_value,
                millrace_api::avro::env::SCHEMA_REGISTRY_USERNAME,
                millrace_api::avro::env::SCHEMA_REGISTRY_PASSWORD,
            ),
            schema_registry_ca_pem: env_value(millrace_api::avro::env::SCHEMA_REGISTRY_CA_PEM),
        }
    }

    /// Base librdkafka settings: brokers and, when the spec names a
    /// credentials Secret, its security protocol and SASL mechanism.
    pub fn kafka_config(&self, pipeline: &Pipeline) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (key, value) in kafka_client_settings(
            &self.kafka_bootstrap,
            &pipeline.spec.kafka,
            &self.kafka_credentials,
        ) {
            cfg.set(key, value);
        }
        if let Some(contexts) = kafka_debug(std::env::var("MILLRACE_KAFKA_DEBUG").ok()) {
            cfg.set("debug", contexts);
        }
        cfg
    }

    /// A CQL session to the pipeline's cluster, token-aware and preferring
    /// the local datacenter.
    pub async fn cassandra_session(
        &self,
        pipeline: &Pipeline,
    ) -> Result<scylla::client::session::Session, CassandraConnectError> {
        use scylla::client::execution_profile::ExecutionProfile;
        use scylla::policies::load_balancing::DefaultPolicy;
        let policy = DefaultPolicy::builder()
            .prefer_datacenter(pipeline.spec.cassandra.local_datacenter.clone())
            .token_aware(true)
            .permit_dc_failover(true)
            .build();
        let profile = ExecutionProfile::builder()
            .load_balancing_policy(policy)
            .build();
        let mut builder = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&self.cassandra_contact_points)
            .default_execution_profile_handle(profile.into_handle());
        if let Some(creds) = &self.cassandra_credentials.login {
            builder = builder.user(&creds.username, &creds.password);
        }
        builder = builder.tls_context(millrace_api::cassandra_client::tls_context(
            pipeline.spec.cassandra.tls.as_ref(),
            &self.cassandra_credentials,
        )?);
        Ok(builder.build().await?)
    }
}

/// The Kafka login and TLS material from the variables the operator sets
/// (`get` reads one, `None` when unset or empty). Without a user name
/// variable, the login Secret's name is the user (Strimzi's KafkaUser
/// Secrets), when its `usernameKey` is the default.
fn kafka_credentials_from_env(
    kafka: &millrace_api::KafkaSpec,
    get: impl Fn(&str) -> Option<String>,
) -> KafkaCredentialValues {
    use millrace_api::kafka_client::env as names;
    let login = kafka.credentials_secret_ref.as_ref().and_then(|r| {
        Some(Credentials {
            username: r.username(get(names::KAFKA_USERNAME))?,
            password: get(names::KAFKA_PASSWORD)?,
        })
    });
    KafkaCredentialValues {
        login,
        ca_pem: get(names::KAFKA_CA_PEM),
        client_cert_pem: get(names::KAFKA_CLIENT_CERT_PEM),
        client_key_pem: get(names::KAFKA_CLIENT_KEY_PEM),
    }
}

/// A variable of the environment, `None` when unset or empty.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// A login from two variables: both set, or none.
fn login_from_env(
    get: impl Fn(&str) -> Option<String>,
    user: &str,
    password: &str,
) -> Option<Credentials> {
    Some(Credentials {
        username: get(user)?,
        password: get(password)?,
    })
}

/// The Cassandra login and TLS material from the variables the operator
/// sets (`get` reads one, `None` when unset or empty).
fn cassandra_credentials_from_env(
    get: impl Fn(&str) -> Option<String>,
) -> CassandraCredentialValues {
    use millrace_api::cassandra_client::env as names;
    CassandraCredentialValues {
        login: login_from_env(&get, names::CASSANDRA_USERNAME, names::CASSANDRA_PASSWORD),
        ca_pem: get(names::CASSANDRA_CA_PEM),
        client_cert_pem: get(names::CASSANDRA_CLIENT_CERT_PEM),
        client_key_pem: get(names::CASSANDRA_CLIENT_KEY_PEM),
    }
}

/// librdkafka's debug contexts (`debug`, e.g. `cgrp,fetch,broker`) from
/// `MILLRACE_KAFKA_DEBUG`, for troubleshooting: none when unset or blank.
/// Its lines go to the log at debug level (target `librdkafka`).
fn kafka_debug(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `host` or `host:port` (IPv6 in brackets), with Cassandra's port 9042
/// when none is given.
fn with_port(point: &str) -> String {
    let has_port = match point.rfind(']') {
        Some(close) => point[close..].contains(':'),
        None => point.contains(':'),
    };
    if has_port {
        point.to_owned()
    } else {
        format!("{point}:9042")
    }
}

/// The log format: the flag or env, else the spec's.
pub fn log_format(flag: Option<&str>, pipeline: Option<&Pipeline>) -> LogFormat {
    match flag {
        Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        _ => pipeline
            .map(|p| p.spec.runner.log_format)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
apiVersion: millrace.io/v1alpha1
kind: StreamPipeline
metadata: {name: users, namespace: team-a}
spec:
  kafka: {bootstrapServers: "k:9092", topic: {name: users_created}}
  cassandra:
    contactPoints: ["c1", "c2:9043", "[::1]"]
    keyspace: {name: ks, replication: {class: SimpleStrategy, replicationFactor: 1}}
    table:
      name: t
      columns: [{name: id, type: uuid, from: /id}]
      partitionKey: [id]
"#;

    #[test]
    fn the_kafka_login_and_tls_material_come_from_the_operators_variables() {
        use millrace_api::kafka_client::env as names;
        let kafka: millrace_api::KafkaSpec = serde_json::from_value(serde_json::json!({
            "bootstrapServers": "k:9093",
            "topic": {"name": "t"},
            "tls": {"caSecretRef": {"name": "cluster-ca"}, "clientCertSecretRef": {"name": "app"}},
            "credentialsSecretRef": {"name": "app-user"},
        }))
        .expect("spec");
        let vars = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            kafka_credentials_from_env(&kafka, move |k| map.get(k).cloned())
        };
        let strimzi = vars(&[
            (names::KAFKA_PASSWORD, "pw"),
            (names::KAFKA_CA_PEM, "CA"),
            (names::KAFKA_CLIENT_CERT_PEM, "CERT"),
            (names::KAFKA_CLIENT_KEY_PEM, "KEY"),
        ]);
        let login = strimzi.login.as_ref().expect("login");
        assert_eq!(login.username, "app-user", "the Secret's name");
        assert_eq!(login.password, "pw");
        assert_eq!(strimzi.ca_pem.as_deref(), Some("CA"));
        assert_eq!(strimzi.client_key_pem.as_deref(), Some("KEY"));
        let named = vars(&[
            (names::KAFKA_USERNAME, "alice"),
            (names::KAFKA_PASSWORD, "pw"),
        ]);
        assert_eq!(named.login.expect("login").username, "alice");
        assert!(vars(&[]).login.is_none(), "no password, no login");
    }

    #[test]
    fn a_pipeline_document_loads_with_its_consumer_group() {
        let p = Pipeline::parse(PIPELINE, Path::new("p.yaml")).unwrap();
        assert_eq!(p.consumer_group(), "millrace.team-a.users");
        assert_eq!(p.uid, None, "a hand-written document may have no uid");
        let with_uid = PIPELINE.replace("namespace: team-a}", "namespace: team-a, uid: u-1}");
        let owned = Pipeline::parse(&with_uid, Path::new("p.yaml")).unwrap();
        assert_eq!(owned.uid.as_deref(), Some("u-1"));
        let c = Connections::new(&p, None, None);
        assert_eq!(c.kafka_bootstrap, "k:9092");
        assert_eq!(
            c.cassandra_contact_points,
            ["c1:9042", "c2:9043", "[::1]:9042"]
        );
        let c = Connections::new(&p, Some("other:1".into()), Some("x:1, y".into()));
        assert_eq!(c.kafka_bootstrap, "other:1");
        assert_eq!(c.cassandra_contact_points, ["x:1", "y:9042"]);
    }

    #[test]
    fn librdkafka_debug_contexts_come_only_from_a_set_value() {
        assert_eq!(kafka_debug(None), None);
        assert_eq!(kafka_debug(Some("  ".into())), None);
        assert_eq!(
            kafka_debug(Some(" cgrp,fetch ".into())).as_deref(),
            Some("cgrp,fetch")
        );
    }

    #[test]
    fn a_bad_pipeline_is_refused_with_the_reason() {
        let bad = PIPELINE.replace("type: uuid", "type: uuidx");
        let err = Pipeline::parse(&bad, Path::new("p.yaml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("team-a/users") && text.contains("uuidx"),
            "{text}"
        );

        let reserved =
            format!("{PIPELINE}  sources: [{{name: e, httpPush: {{path: /metrics}}}}]\n");
        let err = Pipeline::parse(&reserved, Path::new("p.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("/metrics is the runner's own"),
            "{err}"
        );

        let err = Pipeline::parse("spec: 3", Path::new("p.yaml")).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }
}
