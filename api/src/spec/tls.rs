//! TLS material from Secrets, in the shape cert-manager and Strimzi write
//! it: PEM values under `ca.crt`, `user.crt` and `user.key` by default.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// A Secret key holding a PEM bundle of CA certificates to trust.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretRef {
    /// Name of the Secret, in the StreamPipeline's namespace: for a Strimzi
    /// cluster, `CLUSTER-cluster-ca-cert`.
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key of the PEM bundle in the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub key: String,
}

/// A Secret holding a client certificate and its private key (PEM), for
/// mutual TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertSecretRef {
    /// Name of the Secret, in the StreamPipeline's namespace: for Strimzi,
    /// the Secret of a KafkaUser with `tls` authentication (named after the
    /// user).
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key of the certificate (PEM, optionally followed by its chain).
    #[serde(default = "default_cert_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub cert_key: String,

    /// Key of the private key (PEM, unencrypted).
    #[serde(default = "default_key_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub key_key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

fn default_cert_key() -> String {
    "user.crt".to_owned()
}

fn default_key_key() -> String {
    "user.key".to_owned()
}

impl CaSecretRef {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: default_ca_key(),
        }
    }
}

impl ClientCertSecretRef {
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            cert_key: default_cert_key(),
            key_key: default_key_key(),
        }
    }
}
