//! How the records on the topic are encoded: JSON (the default), or Avro in
//! the Confluent wire format with its writer schemas in a Schema Registry.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::limits;

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
pub struct SchemaRegistrySpec {
    /// Base URL of the registry's Confluent API, `http` or `https` (system
    /// CA roots), for example `http://registry:8080/apis/ccompat/v7`; the
    /// sink reads `{url}/schemas/ids/{id}`.
    #[schemars(length(min = 1, max = limits::URL_MAX))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''")
        .message("must be an absolute http or https URL"))]
    pub url: String,

    /// A Secret with the username and password of the registry's HTTP
    /// basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<RegistryCredentials>,
}

/// A Secret with the username and password for a Schema Registry.
pub type RegistryCredentials = super::LoginSecretRef;

impl FormatSpec {
    /// The registry of an `avro` format.
    pub fn avro_registry(&self) -> Option<&SchemaRegistrySpec> {
        match self.type_ {
            FormatType::Avro => self.schema_registry.as_ref(),
            FormatType::Json => None,
        }
    }
}
