//! What every reconcile shares: the Kubernetes client, the operator's
//! settings, its metrics, the cached clients, and what it remembers about
//! each pipeline between reconciles (in memory only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use millrace_api::StreamPipeline;
use millrace_api::lease::{Gate, NotLeader};

use crate::cache;
use crate::clients;
use crate::credentials::{CassandraAuth, KafkaAuth};
use crate::hold::HeldStatuses;
use crate::metrics::Metrics;
use crate::slots::Slots;

#[derive(Clone, Debug)]
pub struct Config {
    /// The runner image and Pod annotations used unless the spec says
    /// otherwise.
    pub runner: crate::desired::deployment::RunnerDefaults,
    /// Watch Secrets, so a pipeline reacts at once when the Secret it names
    /// appears or changes (needs list/watch on Secrets; without it a missing
    /// Secret is retried with back-off).
    pub watch_secrets: bool,
    /// How often a reconciled pipeline is checked again against Kafka and
    /// Cassandra (which send no watch events).
    pub resync: Duration,
    /// How often a pipeline's lag and flow figures are read again (and
    /// with them, how soon the autoscaler sees a backlog).
    pub flow_refresh: Duration,
    /// The namespace to watch, or all.
    pub namespace: Option<String>,
    /// Where the ConfigMaps that record each topic's owner live.
    pub claims_namespace: String,
    /// Reconciles that may run at once (0: no limit).
    pub concurrency: u16,
}

pub struct Context {
    /// Refuses every write (any request but a read) while `leadership` is
    /// closed.
    pub client: kube::Client,
    /// Open while this process holds the leader Lease within its renew
    /// deadline (always, without leader election). Kafka and Cassandra
    /// writes ask it themselves; `client` asks it for every Kubernetes one.
    pub leadership: Gate,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// At most `config.concurrency` reconciles at once, in the order
    /// [`crate::slots`] says.
    pub slots: Arc<Slots>,
    /// Statuses kept back for a moment instead of written ([`crate::hold`]).
    pub held: HeldStatuses,
    /// Who publishes the Events ([`Context::recorder_for`]).
    reporter: Reporter,
    /// One Recorder per distinct reason and note ([`Context::recorder_for`]).
    recorders: Mutex<lru::LruCache<u64, Recorder>>,
    pub kafka: clients::kafka::Clients,
    /// What reads the sinks' and replays' committed offsets.
    pub kafka_offsets: clients::lag::Readers,
    pub cassandra: clients::cassandra::Sessions,
    /// What the controller's watches hold of the objects the operator
    /// owns; each run of the controller (each term as leader) fills a
    /// fresh one.
    cache: RwLock<cache::Owned>,
    /// The controller's store of the pipelines: a reconcile that waited
    /// for a slot reads the pipeline again from it.
    pipelines: RwLock<Option<Store<StreamPipeline>>>,
    /// The credentials each pipeline (by uid) last used, in memory only: a
    /// `Delete` cleanup can still reach Kafka and Cassandra when the Secret
    /// went first (as when the whole namespace is deleted).
    remembered: Mutex<HashMap<String, Remembered>>,
    /// Failures in a row per pipeline, and when the last one was.
    failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

/// The credentials a pipeline last used, and the topics this process saw
/// recorded as its own.
#[derive(Clone, Default)]
pub struct Remembered {
    pub kafka: Option<KafkaAuth>,
    pub cassandra: Option<CassandraAuth>,
    /// When the pipeline's namespace is also the claims namespace (an
    /// operator watching one namespace), deleting the namespace removes the
    /// ownership records before the `Delete` cleanup runs; this lets the
    /// cleanup still know what was the pipeline's.
    pub topics: Vec<String>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        config: Config,
        metrics: Arc<Metrics>,
        instance: String,
        leadership: Gate,
    ) -> Self {
        let reporter = Reporter {
            controller: "millrace-operator".to_owned(),
            instance: Some(instance),
        };
        let slots = Slots::new(usize::from(config.concurrency), metrics.waiting());
        Self {
            client,
            leadership,
            config,
            metrics,
            slots,
            held: HeldStatuses::default(),
            reporter,
            recorders: Mutex::new(lru::LruCache::new(RECORDERS_MAX)),
            kafka: Default::default(),
            kafka_offsets: Default::default(),
            cassandra: Default::default(),
            cache: RwLock::new(cache::Owned::new().0),
            pipelines: RwLock::default(),
            remembered: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// The watch caches of the running controller.
    pub fn cache(&self) -> cache::Owned {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs the caches a new run of the controller fills.
    pub fn set_cache(&self, owned: cache::Owned) {
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = owned;
    }

    /// Installs the store of pipelines a new run of the controller fills.
    pub fn set_pipelines(&self, store: Store<StreamPipeline>) {
        *self.pipelines.write().unwrap_or_else(|e| e.into_inner()) = Some(store);
    }

    /// The pipeline as the controller's store holds it now (`None`: it is
    /// gone), or `sp` itself before any store is installed.
    pub fn latest(&self, sp: &Arc<StreamPipeline>) -> Option<Arc<StreamPipeline>> {
        let pipelines = self.pipelines.read().unwrap_or_else(|e| e.into_inner());
        match pipelines.as_ref() {
            Some(store) => store.get(&ObjectRef::from_obj(sp.as_ref())),
            None => Some(sp.clone()),
        }
    }

    /// Before a Kafka or Cassandra write: only the leader writes.
    pub fn may_write(&self) -> Result<(), NotLeader> {
        self.leadership.check()
    }

    /// Failures in a row for `key` after one more (or 0, with `reset`).
    pub fn failure_count(&self, key: &str, reset: bool) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if reset {
            failures.remove(key);
            return 0;
        }
        let now = std::time::Instant::now();
        let (n, last) = failures.entry(key.to_owned()).or_insert((0, now));
        // A retry set off at once by our own status write is the same
        // failure, not one more in a row.
        if *n == 0 || now.duration_since(*last) >= Duration::from_secs(2) {
            *n = n.saturating_add(1);
        }
        *last = now;
        *n
    }

    pub fn remember(&self, uid: &str, update: impl FnOnce(&mut Remembered)) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        update(map.entry(uid.to_owned()).or_default());
    }

    pub fn recall(&self, uid: &str) -> Remembered {
        let map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid).cloned().unwrap_or_default()
    }

    pub fn forget(&self, uid: &str) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
    }
}

/// Distinct reasons and notes whose Recorders are kept, least recently used
/// out first (an Event published again after its Recorder went is a new
/// Event, not a repeat). Each Recorder keeps the Events it published for
/// six minutes; with a Recorder per note, 1,000 new pipelines left about
/// 2,000 of them, each holding its Event, when this was 4,096 and cleared
/// all at once.
const RECORDERS_MAX: std::num::NonZeroUsize = std::num::NonZeroUsize::new(256).unwrap();

impl Context {
    /// The Recorder to publish an Event with `reason` and `note`. kube's
    /// Recorder sends an Event whose type, action and reason match one it
    /// sent within its cache's 6 minutes as a repeat of that one: its count
    /// goes up and the first one's note stays. Two scaling steps (`from 4
    /// to 2`, then `from 2 to 1`) or two added columns read as the first
    /// one twice. A Recorder per distinct reason and note keeps each
    /// message its own Event, while an identical repeat is still counted.
    pub fn recorder_for(&self, reason: &str, note: &str) -> Recorder {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        (reason, note).hash(&mut h);
        let key = h.finish();
        let mut recorders = self
            .recorders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recorders
            .get_or_insert(key, || {
                Recorder::new(self.client.clone(), self.reporter.clone())
            })
            .clone()
    }
}
