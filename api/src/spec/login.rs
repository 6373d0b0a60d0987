//! A Secret holding a username and a password, as Cassandra and the
//! Schema Registry both take them. Kafka's login says more (its SASL
//! mechanism and protocol) and has a type of its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::patterns;

/// A Secret with a username and a password.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginSecretRef {
    /// Name of the Secret, in the StreamPipeline's namespace.
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,

    /// Key in the Secret whose value is the username.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub username_key: String,

    /// Key in the Secret whose value is the password.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253), pattern(patterns::SECRET_KEY))]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".to_owned()
}

fn default_password_key() -> String {
    "password".to_owned()
}
