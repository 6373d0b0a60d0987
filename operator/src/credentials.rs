//! Observe: read what the spec points at (the credentials Secrets). Values
//! are held in memory only; `Debug` never shows a password.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
pub use millrace_api::Credentials;
use millrace_api::{CassandraSpec, KafkaCredentials, KafkaSpec};

use crate::error::{Error, Result};

/// The Kafka credentials and the Secret reference they came from (which
/// also names the SASL mechanism and security protocol).
pub type KafkaAuth = (Credentials, KafkaCredentials);

async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    username_key: &str,
    password_key: &str,
) -> Result<Credentials> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| Error::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    let value = |key: &str| -> Result<String> {
        let missing = || Error::SecretKeyMissing {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            key: key.to_owned(),
        };
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
            })
            .ok_or_else(missing)?;
        String::from_utf8(bytes).map_err(|_| missing())
    };
    Ok(Credentials {
        username: value(username_key)?,
        password: value(password_key)?,
    })
}

pub async fn kafka_credentials(
    client: &kube::Client,
    namespace: &str,
    kafka: &KafkaSpec,
) -> Result<Option<KafkaAuth>> {
    let Some(r) = &kafka.credentials_secret_ref else {
        return Ok(None);
    };
    let creds = read(client, namespace, &r.name, &r.username_key, &r.password_key).await?;
    Ok(Some((creds, r.clone())))
}

pub async fn cassandra_credentials(
    client: &kube::Client,
    namespace: &str,
    cassandra: &CassandraSpec,
) -> Result<Option<Credentials>> {
    let Some(r) = &cassandra.credentials_secret_ref else {
        return Ok(None);
    };
    Ok(Some(
        read(client, namespace, &r.name, &r.username_key, &r.password_key).await?,
    ))
}
