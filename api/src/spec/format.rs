//! How the records on the topic are encoded: JSON (the default), or Avro in
//! the Confluent wire format with its writer schemas in a Schema Registry.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits;
use super::tls::CaSecretRef;

/// The encoding of the records the sink reads from the topic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'avro' || has(self.schemaRegistry)")
        .message("format.type avro needs format.schemaRegistry, where the writer schemas are")
        .field_path(".schemaRegistry"),
    validation = Rule::new("self.type == 'avro' || !has(self.schemaRegistry)")
        .message("format.schemaRegistry is only read for format.type avro")
        .field_path(".schemaRegistry")
)]
pub struct FormatSpec {
    /// `json` (default): each record is a JSON document. `avro`: each record
    /// is Avro in the Confluent wire format (a zero byte, the writer
    /// schema's id as four bytes big-endian, the Avro binary datum), its
    /// schema read from `schemaRegistry`.
    #[serde(rename = "type", default)]
    pub type_: FormatType,

    /// The Confluent-compatible Schema Registry that holds the writer
    /// schemas of `Avro` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
}

/// The record encodings the sink reads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FormatType {
    #[default]
    Json,
    Avro,
}

/// A Confluent-compatible Schema Registry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.tls) || self.url.startsWith('https://')")
        .message("schemaRegistry.tls is for an https url")
        .field_path(".tls")
)]
pub struct SchemaRegistrySpec {
    /// Base URL of the registry's Confluent API, `http` or `https`, for
    /// example `http://registry:8080/apis/ccompat/v7`; the sink reads
    /// `{url}/schemas/ids/{id}`. An `https` registry's certificate is
    /// checked against the public CA roots the runner carries, or against
    /// `tls.caSecretRef`.
    #[schemars(length(min = 1, max = limits::URL_MAX))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''")
        .message("must be an absolute http or https URL"))]
    pub url: String,

    /// A Secret with the username and password of the registry's HTTP
    /// basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<RegistryCredentials>,

    /// TLS to a registry whose certificate a private CA signed (a
    /// cert-manager Issuer, a company CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,
}

/// How the sink checks an `https` registry's certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryTls {
    /// The CA bundle (PEM) that signed the registry's certificate, such as
    /// the `ca.crt` of its cert-manager Certificate. Only these CAs are
    /// trusted for the registry; its certificate must also name the URL's
    /// host.
    pub ca_secret_ref: CaSecretRef,
}

/// A Secret with the username and password for a Schema Registry.
pub type RegistryCredentials = super::LoginSecretRef;

impl SchemaRegistrySpec {
    /// The Secrets the sink reads for the registry: the login and the CA.
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        names.extend(
            self.credentials_secret_ref
                .as_ref()
                .map(|r| r.name.as_str()),
        );
        names.extend(self.tls.as_ref().map(|t| t.ca_secret_ref.name.as_str()));
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl FormatSpec {
    /// The registry of an `avro` format.
    pub fn avro_registry(&self) -> Option<&SchemaRegistrySpec> {
        match self.type_ {
            FormatType::Avro => self.schema_registry.as_ref(),
            FormatType::Json => None,
        }
    }
}
