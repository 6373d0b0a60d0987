//! Observe: read what the spec points at (the credentials Secrets). Values
//! are held in memory only; `Debug` never shows a password.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
pub use millrace_api::Credentials;
use millrace_api::{CassandraSpec, KafkaCredentialValues, KafkaSpec, StreamPipelineSpec};

use crate::error::{Error, Result};

/// Everything a Kafka client of the pipeline's cluster takes from its
/// Secrets: the SASL login and the TLS material.
pub type KafkaAuth = KafkaCredentialValues;

/// The Secrets of one pipeline, each read once per reconcile.
struct Secrets<'a> {
    api: Api<Secret>,
    namespace: &'a str,
    read: HashMap<String, Secret>,
}

impl<'a> Secrets<'a> {
    fn new(client: &kube::Client, namespace: &'a str) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            namespace,
            read: HashMap::new(),
        }
    }

    /// The value of `key` in Secret `name`, or `None` if the Secret has no
    /// such key; a missing Secret is an error.
    async fn value_opt(&mut self, name: &str, key: &str) -> Result<Option<String>> {
        if !self.read.contains_key(name) {
            let secret = self
                .api
                .get_opt(name)
                .await?
                .ok_or_else(|| Error::SecretNotFound {
                    namespace: self.namespace.to_owned(),
                    name: name.to_owned(),
                })?;
            self.read.insert(name.to_owned(), secret);
        }
        let secret = &self.read[name];
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|s| s.clone().into_bytes())
            });
        match bytes {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| self.missing(name, key)),
        }
    }

    async fn value(&mut self, name: &str, key: &str) -> Result<String> {
        self.value_opt(name, key)
            .await?
            .ok_or_else(|| self.missing(name, key))
    }

    fn missing(&self, name: &str, key: &str) -> Error {
        Error::SecretKeyMissing {
            namespace: self.namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        }
    }
}

/// What the Kafka clients take from the pipeline's Secrets, or `None` when
/// the spec names no Secret.
pub async fn kafka_credentials(
    client: &kube::Client,
    namespace: &str,
    kafka: &KafkaSpec,
) -> Result<Option<KafkaAuth>> {
    if kafka.credentials_secret_ref.is_none() && kafka.tls.is_none() {
        return Ok(None);
    }
    let mut secrets = Secrets::new(client, namespace);
    let mut values = KafkaCredentialValues::default();
    if let Some(r) = &kafka.credentials_secret_ref {
        let found = secrets.value_opt(&r.name, &r.username_key).await?;
        let username = r
            .username(found)
            .ok_or_else(|| secrets.missing(&r.name, &r.username_key))?;
        values.login = Some(Credentials {
            username,
            password: secrets.value(&r.name, &r.password_key).await?,
        });
    }
    if let Some(ca) = kafka.ca_ref() {
        values.ca_pem = Some(secrets.value(&ca.name, &ca.key).await?);
    }
    if let Some(cert) = kafka.client_cert_ref() {
        values.client_cert_pem = Some(secrets.value(&cert.name, &cert.cert_key).await?);
        values.client_key_pem = Some(secrets.value(&cert.name, &cert.key_key).await?);
    }
    Ok(Some(values))
}

pub async fn cassandra_credentials(
    client: &kube::Client,
    namespace: &str,
    cassandra: &CassandraSpec,
) -> Result<Option<Credentials>> {
    let Some(r) = &cassandra.credentials_secret_ref else {
        return Ok(None);
    };
    let mut secrets = Secrets::new(client, namespace);
    Ok(Some(Credentials {
        username: secrets.value(&r.name, &r.username_key).await?,
        password: secrets.value(&r.name, &r.password_key).await?,
    }))
}

/// `(name, resourceVersion)` of every Secret the runner reads (its Kafka
/// and Cassandra Secrets and its pull headers), for
/// [`crate::desired::secrets_version`]: versions only, no value. A missing
/// Secret has the version `""` (its absence is reported where it is used).
pub async fn runner_secret_versions(
    client: &kube::Client,
    namespace: &str,
    spec: &StreamPipelineSpec,
) -> Result<Vec<(String, String)>> {
    let mut names: Vec<&str> = spec.kafka.secret_names();
    names.extend(
        spec.cassandra
            .credentials_secret_ref
            .as_ref()
            .map(|r| r.name.as_str()),
    );
    names.extend(spec.sources.iter().filter_map(|s| {
        s.http_pull
            .as_ref()?
            .headers_from_secret
            .as_ref()
            .map(|r| r.name.as_str())
    }));
    names.sort_unstable();
    names.dedup();
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut versions = Vec::with_capacity(names.len());
    for name in names {
        let version = api
            .get_metadata_opt(name)
            .await?
            .and_then(|m| m.metadata.resource_version)
            .unwrap_or_default();
        versions.push((name.to_owned(), version));
    }
    Ok(versions)
}
