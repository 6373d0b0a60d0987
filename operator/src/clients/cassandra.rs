//! CQL sessions, one per cluster and identity, and the lock schema changes
//! take.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use millrace_api::CassandraSpec;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::credentials::Credentials;
use crate::desired::fnv64;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// CQL sessions, one per cluster and identity, reused across reconciles.
#[derive(Default)]
pub struct Sessions {
    cache: tokio::sync::Mutex<HashMap<u64, Arc<Session>>>,
    /// Held while changing a schema. Pipelines often share a keyspace (and
    /// may share a table): when many are created at once, each would
    /// otherwise see the keyspace missing and send its own CREATE, and a
    /// node applies schema changes one at a time anyway (each waits for
    /// agreement). Under the lock the schema is read again, so only the
    /// first pipeline changes it and the others find it made.
    ddl: tokio::sync::Mutex<()>,
}

/// The cluster could not be reached (or did not answer in time).
pub fn unavailable(spec: &CassandraSpec, e: impl std::fmt::Display) -> Error {
    Error::Cassandra {
        contact_points: spec.contact_points.join(","),
        message: e.to_string(),
    }
}

fn key(spec: &CassandraSpec, creds: Option<&Credentials>) -> u64 {
    let mut key = spec.contact_points.join(",");
    if let Some(c) = creds {
        key.push_str(&format!("\0{}\0{}", c.username, c.password));
    }
    fnv64(key.as_bytes())
}

impl Sessions {
    pub async fn get(
        &self,
        spec: &CassandraSpec,
        creds: Option<&Credentials>,
    ) -> Result<Arc<Session>> {
        let key = key(spec, creds);
        let mut cache = self.cache.lock().await;
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        let mut builder = SessionBuilder::new()
            .known_nodes(&spec.contact_points)
            .connection_timeout(CONNECT_TIMEOUT);
        if let Some(c) = creds {
            builder = builder.user(&c.username, &c.password);
        }
        let session =
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), builder.build())
                .await
                .map_err(|_| unavailable(spec, "timed out connecting"))?
                .map_err(|e| unavailable(spec, e))?;
        let session = Arc::new(session);
        cache.insert(key, session.clone());
        Ok(session)
    }

    /// Forgets a session after a failure, so the next attempt reconnects.
    pub async fn forget(&self, spec: &CassandraSpec, creds: Option<&Credentials>) {
        self.cache.lock().await.remove(&key(spec, creds));
    }

    /// The schema-change lock (see the field).
    pub async fn lock_ddl(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ddl.lock().await
    }
}
