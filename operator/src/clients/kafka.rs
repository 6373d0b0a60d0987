//! Kafka clients, one per cluster and identity: the admin clients here,
//! and the offset readers of `lag.rs` in the same kind of cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use millrace_api::KafkaSpec;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;

use crate::clients::create_topics::{Created, TopicCreations, TopicToCreate};
use crate::credentials::KafkaAuth;
use crate::error::{Error, Result};

/// An admin client, and the topic creations sent through it together
/// ([`TopicCreations`]).
pub struct Admin {
    client: Arc<AdminClient<DefaultClientContext>>,
    creations: TopicCreations,
}

impl Admin {
    pub fn new(client: AdminClient<DefaultClientContext>) -> Self {
        Self {
            client: Arc::new(client),
            creations: TopicCreations::default(),
        }
    }

    /// Creates `topics`, in one request with those other reconciles ask
    /// for meanwhile: what became of each, in order.
    pub async fn create_topics_together(
        &self,
        topics: Vec<TopicToCreate>,
        options: AdminOptions,
    ) -> Vec<Created> {
        self.creations.create(&self.client, topics, options).await
    }
}

impl std::ops::Deref for Admin {
    type Target = AdminClient<DefaultClientContext>;

    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

/// What an admin client is cached by: the bootstrap servers and the public
/// parts of the identity (protocol, SASL mechanism and user, CA and client
/// certificate). Neither the password nor the private key is part of the
/// key: a client whose secret changed is replaced, not kept beside the new
/// one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub bootstrap_servers: String,
    pub protocol: &'static str,
    pub login: Option<(&'static str, String)>,
    pub ca_pem: Option<String>,
    pub client_cert_pem: Option<String>,
}

impl ClientKey {
    pub fn new(spec: &KafkaSpec, auth: Option<&KafkaAuth>) -> Self {
        let login = spec
            .credentials_secret_ref
            .as_ref()
            .zip(auth.and_then(|a| a.login.as_ref()))
            .map(|(r, c)| (r.mechanism.as_str(), c.username.clone()));
        Self {
            bootstrap_servers: spec.bootstrap_servers.clone(),
            protocol: spec.security_protocol().as_str(),
            login,
            ca_pem: auth.and_then(|a| a.ca_pem.clone()),
            client_cert_pem: auth.and_then(|a| a.client_cert_pem.clone()),
        }
    }
}

/// A cached client and the credentials it was made with (compared on each
/// use: a changed password or key replaces the client).
pub type WithCredentials<A> = (Option<KafkaAuth>, Arc<A>);

/// Admin clients, one per cluster and login, reused across reconciles.
pub type Clients = ClientCache<Admin>;

/// Clients of one kind, one per cluster and login: [`Clients`] and
/// `lag::Readers` (the tests use plain values).
pub struct ClientCache<A> {
    /// Each client with the credentials it was made with.
    cache: Mutex<HashMap<ClientKey, WithCredentials<A>>>,
}

impl<A> Default for ClientCache<A> {
    fn default() -> Self {
        Self {
            cache: Mutex::default(),
        }
    }
}

impl Clients {
    pub fn get(&self, spec: &KafkaSpec, auth: Option<&KafkaAuth>) -> Result<Arc<Admin>> {
        self.get_with(spec, auth, || {
            client_config(spec, auth)
                .create()
                .map(Admin::new)
                .map_err(|e| unavailable(spec, e))
        })
    }
}

impl<A> ClientCache<A> {
    /// The cached client for the login if it was made with the same
    /// credentials; else one made by `make` (creating a client does not
    /// wait for the cluster), which replaces the old one.
    pub fn get_with(
        &self,
        spec: &KafkaSpec,
        auth: Option<&KafkaAuth>,
        make: impl FnOnce() -> Result<A>,
    ) -> Result<Arc<A>> {
        let key = ClientKey::new(spec, auth);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((used, client)) = cache.get(&key)
            && used.as_ref() == auth
        {
            return Ok(client.clone());
        }
        let client = Arc::new(make()?);
        cache.insert(key, (auth.cloned(), client.clone()));
        Ok(client)
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
    let none = KafkaAuth::default();
    let values = auth.unwrap_or(&none);
    let mut config = ClientConfig::new();
    for (key, value) in millrace_api::kafka_client_settings(&spec.bootstrap_servers, spec, values) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::desired::fixtures;

    fn auth(username: &str, password: &str) -> KafkaAuth {
        KafkaAuth {
            login: Some(crate::credentials::Credentials {
                username: username.into(),
                password: password.into(),
            }),
            ..KafkaAuth::default()
        }
    }

    #[test]
    fn clients_are_kept_per_login_and_replaced_when_the_password_changes() {
        let mut spec = fixtures::seed().spec.kafka;
        spec.credentials_secret_ref =
            Some(serde_json::from_value(serde_json::json!({"name": "kafka-creds"})).expect("ref"));
        let cache = ClientCache::<usize>::default();
        let made = AtomicUsize::new(0);
        let get = |a: Option<&KafkaAuth>| {
            *cache
                .get_with(&spec, a, || Ok(made.fetch_add(1, Ordering::SeqCst)))
                .expect("made")
        };
        let alice = auth("alice", "old");
        let first = get(Some(&alice));
        assert_eq!(get(Some(&alice)), first);
        assert_ne!(get(None), first);
        assert_ne!(get(Some(&auth("bob", "old"))), first);
        // "a\0b" + "c" and "a" + "b\0c" joined with NULs read alike.
        assert_ne!(get(Some(&auth("a\0b", "c"))), get(Some(&auth("a", "b\0c"))));
        let rotated = get(Some(&auth("alice", "new")));
        assert_ne!(rotated, first, "made again with the new password");
        assert_eq!(get(Some(&auth("alice", "new"))), rotated);
        assert_eq!(
            cache.cache.lock().expect("lock").len(),
            5,
            "the client with the old password is gone"
        );
    }
}
