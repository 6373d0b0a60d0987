//! Observe: read what the spec points at (the Secrets), each once per
//! reconcile, and take from them what the clients need. Values are held in
//! memory only; `Debug` never shows a password.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::GetParams;
pub use millrace_api::Credentials;
use millrace_api::{
    CassandraCredentialValues, CassandraSpec, KafkaCredentialValues, KafkaSpec, StreamPipelineSpec,
};

use crate::error::{Error, Result};

/// Everything a Kafka client of the pipeline's cluster takes from its
/// Secrets: the SASL login and the TLS material.
pub type KafkaAuth = KafkaCredentialValues;

/// Everything a Cassandra client of the pipeline's cluster takes from its
/// Secrets: the login and the TLS material.
pub type CassandraAuth = CassandraCredentialValues;

/// Every Secret the runner reads: its Kafka, Cassandra and Schema Registry
/// Secrets and its pull headers.
pub fn runner_secret_names(spec: &StreamPipelineSpec) -> Vec<&str> {
    let mut names: Vec<&str> = spec.kafka.secret_names();
    names.extend(
        spec.avro_registry()
            .map(|r| r.secret_names())
            .unwrap_or_default(),
    );
    names.extend(spec.cassandra.secret_names());
    names.extend(spec.sources.iter().filter_map(|s| {
        s.http_pull
            .as_ref()?
            .headers_from_secret
            .as_ref()
            .map(|r| r.name.as_str())
    }));
    names.sort_unstable();
    names.dedup();
    names
}

/// The Secrets a pipeline names, read at once: each name with the Secret,
/// or `None` when it does not exist.
pub struct SecretsRead {
    namespace: String,
    read: BTreeMap<String, Option<Secret>>,
}

impl SecretsRead {
    pub async fn fetch<'a>(
        client: &kube::Client,
        namespace: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self> {
        let api = Api::<Secret>::namespaced(client.clone(), namespace);
        // From the apiserver's watch cache (`resourceVersion=0`), not a
        // quorum read of etcd on every reconcile. It can trail a write by a
        // moment; a pipeline woken by a Secret's change reads the version
        // that woke it, since that watch is served from the same cache.
        let any = GetParams::any();
        let reads = names.into_iter().map(|name| {
            let api = api.clone();
            let any = any.clone();
            async move {
                let secret = match api.get_with(name, &any).await {
                    Ok(secret) => Some(secret),
                    Err(kube::Error::Api(e)) if e.code == 404 => None,
                    Err(e) => return Err(Error::Kube(e)),
                };
                Ok::<_, Error>((name.to_owned(), secret))
            }
        });
        Ok(Self {
            namespace: namespace.to_owned(),
            read: futures::future::try_join_all(reads)
                .await?
                .into_iter()
                .collect(),
        })
    }

    /// `(name, resourceVersion)` of each Secret, for
    /// [`crate::desired::secrets_version`]: versions only, no value. A
    /// missing Secret has the version `""` (its absence is reported where
    /// it is used).
    pub fn versions(&self) -> Vec<(String, String)> {
        self.read
            .iter()
            .map(|(name, secret)| {
                let version = secret
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone())
                    .unwrap_or_default();
                (name.clone(), version)
            })
            .collect()
    }

    /// The value of `key` in Secret `name`, or `None` if the Secret has no
    /// such key; a missing (or unread) Secret is an error.
    fn value_opt(&self, name: &str, key: &str) -> Result<Option<String>> {
        let secret = self
            .read
            .get(name)
            .and_then(Option::as_ref)
            .ok_or_else(|| Error::SecretNotFound {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
            })?;
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

    fn value(&self, name: &str, key: &str) -> Result<String> {
        self.value_opt(name, key)?
            .ok_or_else(|| self.missing(name, key))
    }

    fn missing(&self, name: &str, key: &str) -> Error {
        Error::SecretKeyMissing {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            key: key.to_owned(),
        }
    }

    /// What the Kafka clients take from the Secrets, or `None` when the
    /// spec names none.
    pub fn kafka(&self, kafka: &KafkaSpec) -> Result<Option<KafkaAuth>> {
        if kafka.credentials_secret_ref.is_none() && kafka.tls.is_none() {
            return Ok(None);
        }
        let mut values = KafkaCredentialValues::default();
        if let Some(r) = &kafka.credentials_secret_ref {
            let found = self.value_opt(&r.name, &r.username_key)?;
            let username = r
                .username(found)
                .ok_or_else(|| self.missing(&r.name, &r.username_key))?;
            values.login = Some(Credentials {
                username,
                password: self.value(&r.name, &r.password_key)?,
            });
        }
        if let Some(ca) = kafka.ca_ref() {
            values.ca_pem = Some(self.value(&ca.name, &ca.key)?);
        }
        if let Some(cert) = kafka.client_cert_ref() {
            values.client_cert_pem = Some(self.value(&cert.name, &cert.cert_key)?);
            values.client_key_pem = Some(self.value(&cert.name, &cert.key_key)?);
        }
        Ok(Some(values))
    }

    /// What the Cassandra clients take from the Secrets, or `None` when
    /// the spec names none.
    pub fn cassandra(&self, cassandra: &CassandraSpec) -> Result<Option<CassandraAuth>> {
        if cassandra.credentials_secret_ref.is_none() && cassandra.tls.is_none() {
            return Ok(None);
        }
        let mut values = CassandraAuth::default();
        if let Some(r) = &cassandra.credentials_secret_ref {
            values.login = Some(Credentials {
                username: self.value(&r.name, &r.username_key)?,
                password: self.value(&r.name, &r.password_key)?,
            });
        }
        if let Some(tls) = &cassandra.tls {
            let ca = &tls.ca_secret_ref;
            values.ca_pem = Some(self.value(&ca.name, &ca.key)?);
            if let Some(cert) = &tls.client_cert_secret_ref {
                values.client_cert_pem = Some(self.value(&cert.name, &cert.cert_key)?);
                values.client_key_pem = Some(self.value(&cert.name, &cert.key_key)?);
            }
        }
        Ok(Some(values))
    }
}

/// [`SecretsRead::kafka`], reading only the Kafka Secrets.
pub async fn kafka_credentials(
    client: &kube::Client,
    namespace: &str,
    kafka: &KafkaSpec,
) -> Result<Option<KafkaAuth>> {
    SecretsRead::fetch(client, namespace, kafka.secret_names())
        .await?
        .kafka(kafka)
}

/// [`SecretsRead::cassandra`], reading only the Cassandra Secrets.
pub async fn cassandra_credentials(
    client: &kube::Client,
    namespace: &str,
    cassandra: &CassandraSpec,
) -> Result<Option<CassandraAuth>> {
    SecretsRead::fetch(client, namespace, cassandra.secret_names())
        .await?
        .cassandra(cassandra)
}
