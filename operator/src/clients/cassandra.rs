//! CQL sessions, one per cluster and login, and the locks schema changes
//! take, one per cluster and keyspace.
//!
//! One cluster that cannot be reached slows only the pipelines that use it:
//! no lock shared by every cluster is held while a session connects or a
//! schema change waits for agreement.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use millrace_api::CassandraSpec;
use scylla::client::caching_session::CachingSession;
use scylla::client::session_builder::SessionBuilder;

use crate::credentials::CassandraAuth;
use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A cluster, by its contact points (in any order).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cluster(BTreeSet<String>);

impl Cluster {
    pub fn of(spec: &CassandraSpec) -> Self {
        Self(spec.contact_points.iter().cloned().collect())
    }
}

/// What a session is cached by: the cluster, the user it logs in as, and
/// whether it uses TLS (checking node names or not). The password and the
/// TLS material are not part of the key: a session whose password or
/// certificates changed is replaced, not kept beside the new one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub cluster: Cluster,
    pub username: Option<String>,
    /// `Some(verify_hostname)` with TLS.
    pub tls: Option<bool>,
}

impl SessionKey {
    pub fn new(spec: &CassandraSpec, creds: Option<&CassandraAuth>) -> Self {
        Self {
            cluster: Cluster::of(spec),
            username: creds
                .and_then(|c| c.login.as_ref())
                .map(|c| c.username.clone()),
            tls: spec.tls.as_ref().map(|t| t.verify_hostname),
        }
    }
}

/// One identity's session, or the last failure to connect it.
struct Slot<S> {
    /// The session and the credentials it logged in with.
    session: Option<(Option<CassandraAuth>, Arc<S>)>,
    /// When the last attempt to connect failed, with which credentials,
    /// and why: who waited for that attempt gets its answer rather than
    /// trying again at once.
    failed: Option<(Instant, Option<CassandraAuth>, String)>,
}

impl<S> Default for Slot<S> {
    fn default() -> Self {
        Self {
            session: None,
            failed: None,
        }
    }
}

/// Values per key: the map's lock is held only to find a key's slot, never
/// while a value is made; a slot's own lock is held while its value is
/// made, so one identity connects once at a time and others do not wait.
struct PerKey<K, V> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<V>>>>,
}

impl<K, V> Default for PerKey<K, V> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone, V: Default> PerKey<K, V> {
    fn slot(&self, key: &K) -> Arc<tokio::sync::Mutex<V>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }
}

/// CQL sessions, one per cluster and login, reused across reconciles, each
/// with the statements it prepared.
pub type Sessions = SessionCache<CachingSession>;

/// Prepared statements kept per session: the few schema reads of a
/// reconcile, with room to spare.
const PREPARED_STATEMENTS_MAX: usize = 16;

/// [`Sessions`], for any kind of session (the tests use plain values).
pub struct SessionCache<S> {
    sessions: PerKey<SessionKey, Slot<S>>,
    /// Held while changing a schema, per cluster and keyspace. Pipelines
    /// often share a keyspace (and may share a table): when many are
    /// created at once, each would otherwise see the keyspace missing and
    /// send its own CREATE. Under the lock the schema is read again, so
    /// only the first pipeline changes it and the others find it made.
    /// Changes to other keyspaces, or on other clusters, do not wait.
    ddl: PerKey<(Cluster, String), ()>,
}

impl<S> Default for SessionCache<S> {
    fn default() -> Self {
        Self {
            sessions: PerKey::default(),
            ddl: PerKey::default(),
        }
    }
}

/// The cluster could not be reached (or did not answer in time).
pub fn unavailable(spec: &CassandraSpec, e: impl std::fmt::Display) -> Error {
    Error::Cassandra {
        contact_points: spec.contact_points.join(","),
        message: e.to_string(),
    }
}

impl Sessions {
    /// The session for the cluster and login, connecting it if there is
    /// none yet (or its credentials changed).
    pub async fn get(
        &self,
        spec: &CassandraSpec,
        creds: Option<&CassandraAuth>,
    ) -> Result<Arc<CachingSession>> {
        self.get_with(spec, creds, || async {
            connect(spec, creds)
                .await
                .map(|session| CachingSession::from(session, PREPARED_STATEMENTS_MAX))
        })
        .await
    }
}

impl<S> SessionCache<S> {
    /// The cached session for the identity if it logged in with `creds`;
    /// else one made by `connect` (which replaces a session with other
    /// credentials: it is dropped, and with it its connections).
    pub async fn get_with<F>(
        &self,
        spec: &CassandraSpec,
        creds: Option<&CassandraAuth>,
        connect: impl FnOnce() -> F,
    ) -> Result<Arc<S>>
    where
        F: std::future::Future<Output = Result<S>>,
    {
        let asked = Instant::now();
        let slot = self.sessions.slot(&SessionKey::new(spec, creds));
        let mut slot = slot.lock().await;
        if let Some((used, session)) = &slot.session
            && used.as_ref() == creds
        {
            return Ok(session.clone());
        }
        // An attempt with the same credentials ended while this one
        // waited: its answer is this one's too.
        if let Some((at, used, message)) = &slot.failed
            && *at >= asked
            && used.as_ref() == creds
        {
            return Err(unavailable(spec, message));
        }
        match connect().await {
            Ok(s) => {
                let s = Arc::new(s);
                slot.session = Some((creds.cloned(), s.clone()));
                slot.failed = None;
                Ok(s)
            }
            Err(e) => {
                let message = match &e {
                    Error::Cassandra { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                slot.session = None;
                slot.failed = Some((Instant::now(), creds.cloned(), message));
                Err(e)
            }
        }
    }

    /// Forgets a session after a failure, so the next attempt reconnects.
    pub async fn forget(&self, spec: &CassandraSpec, creds: Option<&CassandraAuth>) {
        let slot = self.sessions.slot(&SessionKey::new(spec, creds));
        slot.lock().await.session = None;
    }

    /// The schema-change lock for the pipeline's cluster and keyspace (see
    /// the field).
    pub async fn lock_ddl(&self, spec: &CassandraSpec) -> tokio::sync::OwnedMutexGuard<()> {
        let key = (Cluster::of(spec), spec.keyspace.name.clone());
        self.ddl.slot(&key).lock_owned().await
    }
}

async fn connect(
    spec: &CassandraSpec,
    creds: Option<&CassandraAuth>,
) -> Result<scylla::client::session::Session> {
    // The operator reads the schema it compares from `system_schema`
    // itself: the driver's copy of every table and column of the cluster,
    // read again on each schema change anywhere and every minute, would
    // only cost Cassandra (`bench/src/bin/cql-schema-reads.rs`).
    let mut builder = SessionBuilder::new()
        .known_nodes(&spec.contact_points)
        .connection_timeout(CONNECT_TIMEOUT)
        .fetch_full_schema_metadata(false);
    let values = creds.cloned().unwrap_or_default();
    if let Some(c) = &values.login {
        builder = builder.user(&c.username, &c.password);
    }
    let tls =
        millrace_api::cassandra_client::tls_context(spec.tls.as_ref(), &values).map_err(|e| {
            Error::CassandraTls {
                contact_points: spec.contact_points.join(","),
                message: e.to_string(),
            }
        })?;
    builder = builder.tls_context(tls);
    tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), builder.build())
        .await
        .map_err(|_| unavailable(spec, "timed out connecting"))?
        .map_err(|e| unavailable(spec, e))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::desired::fixtures;

    fn spec(points: &[&str]) -> CassandraSpec {
        let mut spec = fixtures::seed().spec.cassandra;
        spec.contact_points = points.iter().map(|p| (*p).to_owned()).collect();
        spec
    }

    fn login(username: &str, password: &str) -> CassandraAuth {
        CassandraAuth {
            login: Some(crate::credentials::Credentials {
                username: username.into(),
                password: password.into(),
            }),
            ..Default::default()
        }
    }

    /// A cache whose "sessions" are the number of the connect that made
    /// them.
    struct Counted {
        cache: SessionCache<usize>,
        connects: AtomicUsize,
    }

    impl Counted {
        fn new() -> Self {
            Self {
                cache: SessionCache::default(),
                connects: AtomicUsize::new(0),
            }
        }

        async fn get(&self, spec: &CassandraSpec, creds: Option<&CassandraAuth>) -> usize {
            let s = self
                .cache
                .get_with(spec, creds, || async {
                    Ok(self.connects.fetch_add(1, Ordering::SeqCst) + 1)
                })
                .await
                .expect("connects");
            *s
        }
    }

    #[tokio::test]
    async fn one_session_per_cluster_and_login() {
        let c = Counted::new();
        let alice = login("alice", "pw");
        let a = spec(&["10.0.0.1:9042", "10.0.0.2:9042"]);
        let first = c.get(&a, Some(&alice)).await;
        let reordered = spec(&["10.0.0.2:9042", "10.0.0.1:9042"]);
        assert_eq!(
            c.get(&reordered, Some(&alice)).await,
            first,
            "the same cluster"
        );
        assert_ne!(c.get(&a, Some(&login("bob", "pw"))).await, first);
        assert_ne!(c.get(&a, None).await, first);
        assert_ne!(c.get(&spec(&["10.0.0.3:9042"]), Some(&alice)).await, first);
        assert_eq!(c.connects.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn logins_that_would_read_alike_as_one_string_are_kept_apart() {
        // "a\0b" + "c" and "a" + "b\0c" joined with NULs are the same text.
        let c = Counted::new();
        let a = spec(&["10.0.0.1:9042"]);
        let one = c.get(&a, Some(&login("a\0b", "c"))).await;
        let other = c.get(&a, Some(&login("a", "b\0c"))).await;
        assert_ne!(one, other);
    }

    #[tokio::test]
    async fn a_changed_password_replaces_the_session() {
        let c = Counted::new();
        let a = spec(&["10.0.0.1:9042"]);
        let old = c.get(&a, Some(&login("alice", "old"))).await;
        let new = c.get(&a, Some(&login("alice", "new"))).await;
        assert_ne!(old, new, "connected again with the new password");
        assert_eq!(c.get(&a, Some(&login("alice", "new"))).await, new);
        // The old session was dropped, not kept beside the new one: going
        // back to the old password connects again.
        assert_ne!(c.get(&a, Some(&login("alice", "old"))).await, old);
        assert_eq!(c.connects.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn new_tls_material_or_a_changed_name_check_replaces_the_session() {
        let c = Counted::new();
        let mut a = spec(&["10.0.0.1:9042"]);
        a.tls = Some(millrace_api::CassandraTls {
            ca_secret_ref: millrace_api::CaSecretRef::named("ca"),
            client_cert_secret_ref: None,
            verify_hostname: true,
        });
        let with_ca = |pem: &str| CassandraAuth {
            ca_pem: Some(pem.into()),
            ..Default::default()
        };
        let first = c.get(&a, Some(&with_ca("CA 1"))).await;
        assert_eq!(c.get(&a, Some(&with_ca("CA 1"))).await, first);
        let rotated = c.get(&a, Some(&with_ca("CA 2"))).await;
        assert_ne!(rotated, first, "a rotated CA connects again");
        let mut lax = a.clone();
        if let Some(t) = lax.tls.as_mut() {
            t.verify_hostname = false;
        }
        assert_ne!(c.get(&lax, Some(&with_ca("CA 2"))).await, rotated);
        let plain = spec(&["10.0.0.1:9042"]);
        assert_ne!(c.get(&plain, None).await, rotated, "TLS or not");
    }

    #[tokio::test]
    async fn a_forgotten_session_is_connected_again() {
        let c = Counted::new();
        let a = spec(&["10.0.0.1:9042"]);
        let first = c.get(&a, None).await;
        c.cache.forget(&a, None).await;
        assert_ne!(c.get(&a, None).await, first);
    }

    #[tokio::test]
    async fn a_cluster_that_hangs_does_not_hold_up_another() {
        let cache = Arc::new(SessionCache::<usize>::default());
        let dead = spec(&["127.0.0.1:1"]);
        let (_never, hang) = tokio::sync::oneshot::channel::<()>();
        let stuck = {
            let cache = cache.clone();
            let dead = dead.clone();
            tokio::spawn(async move {
                cache
                    .get_with(&dead, None, || async {
                        let _ = hang.await;
                        Ok(0)
                    })
                    .await
                    .map(|s| *s)
            })
        };
        tokio::task::yield_now().await;
        let good = spec(&["10.0.0.1:9042"]);
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            cache.get_with(&good, None, || async { Ok(1) }),
        )
        .await
        .expect("the good cluster connects while the other hangs")
        .expect("connects");
        assert_eq!(*got, 1);
        // Schema changes on the good cluster, and on another keyspace of
        // the hanging one, do not wait for a lock held on the other.
        let held = cache.lock_ddl(&dead).await;
        let mut other_keyspace = dead.clone();
        other_keyspace.keyspace.name = "elsewhere".into();
        for spec in [&good, &other_keyspace] {
            tokio::time::timeout(Duration::from_secs(5), cache.lock_ddl(spec))
                .await
                .expect("another cluster's or keyspace's lock is free");
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(50), cache.lock_ddl(&dead))
                .await
                .is_err(),
            "the same keyspace's lock is held"
        );
        drop(held);
        stuck.abort();
    }

    #[tokio::test]
    async fn who_waited_for_a_failed_connect_gets_its_answer() {
        let cache = Arc::new(SessionCache::<usize>::default());
        let dead = spec(&["127.0.0.1:1"]);
        let connects = Arc::new(AtomicUsize::new(0));
        let (release, hang) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (cache, dead, connects) = (cache.clone(), dead.clone(), connects.clone());
            tokio::spawn(async move {
                cache
                    .get_with(&dead, None, || async {
                        connects.fetch_add(1, Ordering::SeqCst);
                        let _ = hang.await;
                        Err::<usize, _>(unavailable(&dead, "connection refused"))
                    })
                    .await
                    .map(|s| *s)
            })
        };
        while connects.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let (cache, dead, connects) = (cache.clone(), dead.clone(), connects.clone());
            tokio::spawn(async move {
                cache
                    .get_with(&dead, None, || async {
                        connects.fetch_add(1, Ordering::SeqCst);
                        Ok(2)
                    })
                    .await
                    .map(|s| *s)
            })
        };
        tokio::task::yield_now().await;
        release.send(()).expect("first is waiting");
        let (first, second) = (first.await.expect("task"), second.await.expect("task"));
        assert!(first.is_err() && second.is_err(), "{first:?} {second:?}");
        assert!(
            second
                .expect_err("failed")
                .to_string()
                .contains("connection refused")
        );
        assert_eq!(connects.load(Ordering::SeqCst), 1, "one attempt for both");
        // A later attempt tries again.
        let again = cache.get_with(&dead, None, || async { Ok(3) }).await;
        assert_eq!(again.map(|s| *s).ok(), Some(3));
    }
}
