//! Kafka admin clients, one per cluster and identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use millrace_api::KafkaSpec;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;

use crate::credentials::KafkaAuth;
use crate::desired::fnv64;
use crate::error::{Error, Result};

pub type Admin = AdminClient<DefaultClientContext>;

/// Admin clients, one per cluster and identity, reused across reconciles.
#[derive(Default)]
pub struct Clients {
    cache: Mutex<HashMap<u64, Arc<Admin>>>,
}

impl Clients {
    pub fn get(&self, spec: &KafkaSpec, auth: Option<&KafkaAuth>) -> Result<Arc<Admin>> {
        let mut key = spec.bootstrap_servers.clone();
        if let Some((c, r)) = auth {
            key.push_str(&format!(
                "\0{}\0{}\0{}\0{}",
                c.username,
                c.password,
                r.mechanism.as_str(),
                r.security_protocol.as_str()
            ));
        }
        let key = fnv64(key.as_bytes());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(admin) = cache.get(&key) {
            return Ok(admin.clone());
        }
        let config = client_config(spec, auth);
        let admin: Admin = config.create().map_err(|e| unavailable(spec, e))?;
        let admin = Arc::new(admin);
        cache.insert(key, admin.clone());
        Ok(admin)
    }
}

pub fn client_config(spec: &KafkaSpec, auth: Option<&KafkaAuth>) -> ClientConfig {
    let mut config = settings(spec, auth);
    config
        .set("allow.auto.create.topics", "false")
        .set("socket.connection.setup.timeout.ms", "5000")
        // librdkafka's log level follows the `log` crate's, which nothing
        // raises here: without this the refused login is not logged at all.
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// The settings every client of the pipeline's cluster shares with the
/// runner's ([`millrace_api::kafka_client_settings`]).
pub fn settings(spec: &KafkaSpec, auth: Option<&KafkaAuth>) -> ClientConfig {
    let values = millrace_api::KafkaCredentialValues {
        login: auth.map(|(c, _)| c.clone()),
        ca_pem: None,
    };
    let mut config = ClientConfig::new();
    for (key, value) in
        millrace_api::kafka_client_settings(&spec.bootstrap_servers, auth.map(|(_, r)| r), &values)
    {
        config.set(key, value);
    }
    config
}

/// The cluster could not be reached (or did not answer in time).
pub fn unavailable(spec: &KafkaSpec, e: impl std::fmt::Display) -> Error {
    Error::Kafka {
        bootstrap: spec.bootstrap_servers.clone(),
        message: e.to_string(),
    }
}
