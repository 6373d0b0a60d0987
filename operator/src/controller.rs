//! The StreamPipeline controller. Each reconcile is a chain:
//! observe (Secrets) → validate → desired (pure, `desired/`) → apply
//! (`apply/`: Kafka, Cassandra, Kubernetes) → report (`status`).
//! A finalizer applies `deletionPolicy` when the pipeline is deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use millrace_api::{
    DeletionPolicy, StreamPipeline, StreamPipelineStatus, condition_type, validate_pipeline,
};
use tracing::{Instrument, info, info_span, warn};

use crate::apply::{self, PartOutcome};
use crate::desired::Pipeline;
use crate::error::{Error, ErrorClass, Result};
use crate::metrics::{Metrics, Target};
use crate::observe;
use crate::status::{self, Cond, RUNNER_READY, reasons};

pub const FINALIZER: &str = "millrace.io/cleanup";
/// Set to `"true"` to let a pipeline with `deletionPolicy: Delete` go
/// without removing its topic and table (when Kafka or Cassandra is gone
/// for good).
pub const FORCE_DELETE_ANNOTATION: &str = "millrace.io/force-delete";

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
    /// The namespace to watch, or all.
    pub namespace: Option<String>,
    /// Reconciles that may run at once (0: no limit).
    pub concurrency: u16,
}

pub struct Context {
    pub client: kube::Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub kafka: apply::kafka::Clients,
    pub cassandra: apply::cassandra::Sessions,
    pub lag: crate::flow::LagReaders,
    /// The credentials each pipeline (by uid) last used, in memory only: a
    /// `Delete` cleanup can still reach Kafka and Cassandra when the Secret
    /// went first (as when the whole namespace is deleted).
    remembered: Mutex<HashMap<String, Remembered>>,
    /// Failures in a row per pipeline, and when the last one was.
    failures: Mutex<HashMap<String, (u32, std::time::Instant)>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        config: Config,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "millrace-operator".to_owned(),
                instance: Some(instance),
            },
        );
        Self {
            client,
            config,
            metrics,
            recorder,
            kafka: Default::default(),
            cassandra: Default::default(),
            lag: Default::default(),
            remembered: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Publishes an Event about the pipeline; a failure to do so is logged,
    /// never fatal.
    pub async fn event(&self, sp: &StreamPipeline, type_: EventType, reason: &str, note: &str) {
        let mut note = note.to_owned();
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        self.metrics.write(Target::Kubernetes);
        if let Err(e) = self.recorder.publish(&event, &sp.object_ref(&())).await {
            warn!(error = %e, "could not publish an Event");
        }
    }

    fn failure_count(&self, key: &str, reset: bool) -> u32 {
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
}

#[derive(Clone, Default)]
struct Remembered {
    kafka: Option<apply::kafka::KafkaAuth>,
    cassandra: Option<observe::Credentials>,
}

impl Context {
    fn remember(&self, uid: &str, update: impl FnOnce(&mut Remembered)) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        update(map.entry(uid.to_owned()).or_default());
    }

    fn recall(&self, uid: &str) -> Remembered {
        let map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid).cloned().unwrap_or_default()
    }

    fn forget(&self, uid: &str) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
    }
}

fn key(sp: &StreamPipeline) -> String {
    format!("{}/{}", sp.namespace().unwrap_or_default(), sp.name_any())
}

pub async fn reconcile(sp: Arc<StreamPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = sp
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<StreamPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = info_span!("reconcile", namespace = %namespace, name = %sp.name_any());
    let key = key(&sp);
    let result = finalizer(&api, FINALIZER, sp, |event| async {
        match event {
            finalizer::Event::Apply(sp) => apply(&sp, &ctx).await,
            finalizer::Event::Cleanup(sp) => cleanup(&sp, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    if result.is_ok() {
        ctx.failure_count(&key, true);
    }
    result
}

/// Retries sooner for transient failures than for ones a person must fix,
/// doubling the wait on each failure in a row.
pub fn error_policy(sp: Arc<StreamPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(error.category());
    let n = ctx.failure_count(&key(&sp), false);
    let (base, cap) = match error.class() {
        ErrorClass::Transient => (2u64, 300u64),
        ErrorClass::User => (15, 300),
    };
    let wait = base
        .saturating_mul(1 << n.saturating_sub(1).min(10))
        .min(cap);
    warn!(
        namespace = %sp.namespace().unwrap_or_default(),
        name = %sp.name_any(),
        category = error.category(),
        retry_in_s = wait,
        "reconcile failed: {error}"
    );
    Action::requeue(Duration::from_secs(wait))
}

async fn apply(sp: &StreamPipeline, ctx: &Context) -> Result<Action> {
    let p = Pipeline::new(sp)?;
    let old = sp.status.clone().unwrap_or_default();
    let now = Time(Timestamp::now());

    // Validate: the apiserver's CEL rules catch nearly everything; this is
    // the same check in Rust, for what CEL cannot express.
    if let Err(invalid) = validate_pipeline(&p.name, &sp.spec) {
        let cond = Cond::new(
            condition_type::READY,
            false,
            reasons::INVALID_SPEC,
            invalid.to_string(),
        );
        let new = StreamPipelineStatus {
            observed_generation: Some(p.generation),
            conditions: status::merge(&old.conditions, &[cond], p.generation, &now),
            ..old.clone()
        };
        status::update(ctx, sp, new).await?;
        return Err(Error::InvalidSpec(invalid));
    }

    // Observe: the credentials the spec points at.
    let (kafka_auth, cassandra_auth) = tokio::join!(
        observe::kafka_credentials(&ctx.client, &p.namespace, &sp.spec.kafka),
        observe::cassandra_credentials(&ctx.client, &p.namespace, &sp.spec.cassandra),
    );

    // Apply: topic and table first, then the runner that needs them.
    if let Ok(auth) = &kafka_auth {
        ctx.remember(&p.uid, |r| r.kafka = auth.clone());
    }
    if let Ok(auth) = &cassandra_auth {
        ctx.remember(&p.uid, |r| r.cassandra = auth.clone());
    }
    // Topic and table do not depend on each other: one's round trips
    // overlap the other's.
    let (topic, table) = tokio::join!(
        async {
            match &kafka_auth {
                Ok(auth) => apply::kafka::reconcile_topic(ctx, &p, auth.as_ref()).await,
                Err(_) => credentials_failed(kafka_auth.as_ref().err(), "Kafka credentials"),
            }
        },
        async {
            match &cassandra_auth {
                Ok(auth) => apply::cassandra::reconcile_table(ctx, &p, auth.as_ref()).await,
                Err(_) => {
                    credentials_failed(cassandra_auth.as_ref().err(), "Cassandra credentials")
                }
            }
        },
    );
    let runner = apply::kubernetes::reconcile_runner(ctx, &p, topic.usable && table.usable).await;

    // Report.
    let topic_cond = Cond::new(
        condition_type::TOPIC_READY,
        topic.ready,
        &topic.reason,
        &topic.message,
    );
    let table_cond = Cond::new(
        condition_type::TABLE_READY,
        table.ready,
        &table.reason,
        &table.message,
    );
    let runner_cond = Cond::new(RUNNER_READY, runner.ready, &runner.reason, &runner.message);
    let ready = status::ready(&[&topic_cond, &table_cond, &runner_cond], sp.spec.suspend);
    let conds = [
        ready,
        topic_cond,
        table_cond,
        runner_cond,
        status::suspended(sp.spec.suspend),
    ];
    let new = StreamPipelineStatus {
        observed_generation: Some(p.generation),
        conditions: status::merge(&old.conditions, &conds, p.generation, &now),
        topic: topic.status.clone().or(old.topic.clone()),
        table: table.status.clone().or(old.table.clone()),
        runner: runner.status.clone().or(old.runner.clone()),
        flow: match (&kafka_auth, topic.usable) {
            (Ok(auth), true) => {
                crate::flow::flow(
                    &ctx.lag,
                    &ctx.client,
                    &p.namespace,
                    &p.name,
                    &sp.spec,
                    topic.status.as_ref().and_then(|t| t.partitions),
                    auth.as_ref(),
                    old.flow.as_ref(),
                )
                .await
            }
            _ => old.flow.clone(),
        },
    };
    status::update(ctx, sp, new).await?;

    // A failed part is retried with back-off; the others were still done.
    let failed = [topic.error, table.error, runner.error]
        .into_iter()
        .flatten()
        .chain(kafka_auth.err())
        .chain(cassandra_auth.err())
        .next();
    if let Some(error) = failed {
        return Err(error);
    }
    info!("reconciled");
    Ok(Action::requeue(ctx.config.resync))
}

fn credentials_failed<S>(error: Option<&Error>, what: &str) -> PartOutcome<S> {
    let (reason, message) = match error {
        Some(e) => (e.reason(), format!("{what}: {e}")),
        None => ("SecretNotFound", what.to_owned()),
    };
    PartOutcome {
        ready: false,
        reason: reason.to_owned(),
        message,
        usable: false,
        status: None,
        error: None,
    }
}

/// The finalizer: `Retain` keeps topic and table; `Delete` removes them,
/// retrying with back-off (and saying why) while Kafka or Cassandra cannot
/// be reached, unless `millrace.io/force-delete: "true"` is set.
async fn cleanup(sp: &StreamPipeline, ctx: &Context) -> Result<Action> {
    let spec = &sp.spec;
    let topic = &spec.kafka.topic.name;
    let table = format!(
        "{}.{}",
        spec.cassandra.keyspace.name, spec.cassandra.table.name
    );
    let forced = sp
        .annotations()
        .get(FORCE_DELETE_ANNOTATION)
        .is_some_and(|v| v == "true");
    if spec.deletion_policy == DeletionPolicy::Retain || forced {
        ctx.forget(&sp.uid().unwrap_or_default());
    }
    if spec.deletion_policy == DeletionPolicy::Retain {
        ctx.event(
            sp,
            EventType::Normal,
            "Retained",
            &format!("deletionPolicy is Retain: kept topic {topic} and table {table}"),
        )
        .await;
        return Ok(Action::await_change());
    }
    if forced {
        let note = format!(
            "{FORCE_DELETE_ANNOTATION} is set: topic {topic} and table {table} were left in place"
        );
        ctx.event(sp, EventType::Warning, "ForceDeleted", &note)
            .await;
        return Ok(Action::await_change());
    }
    let uid = sp.uid().unwrap_or_default();
    let namespace = sp.namespace().unwrap_or_default();
    let result = async {
        let remembered = ctx.recall(&uid);
        let kafka_auth =
            match observe::kafka_credentials(&ctx.client, &namespace, &spec.kafka).await {
                Err(Error::SecretNotFound { .. } | Error::SecretKeyMissing { .. })
                    if remembered.kafka.is_some() =>
                {
                    remembered.kafka
                }
                other => other?,
            };
        let cassandra_auth =
            match observe::cassandra_credentials(&ctx.client, &namespace, &spec.cassandra).await {
                Err(Error::SecretNotFound { .. } | Error::SecretKeyMissing { .. })
                    if remembered.cassandra.is_some() =>
                {
                    remembered.cassandra
                }
                other => other?,
            };
        apply::kafka::delete_topics(ctx, spec, kafka_auth.as_ref()).await?;
        apply::cassandra::drop_table(ctx, &spec.cassandra, cassandra_auth.as_ref()).await
    }
    .await;
    match result {
        Ok(()) => {
            ctx.forget(&uid);
            let note = format!(
                "deletionPolicy is Delete: deleted topic {topic} (and its dead-letter topic) and dropped table {table}"
            );
            ctx.event(sp, EventType::Normal, "Deleted", &note).await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let old = sp.status.clone().unwrap_or_default();
            let generation = sp.metadata.generation.unwrap_or_default();
            let cond = Cond::new(
                condition_type::READY,
                false,
                reasons::DELETION_BLOCKED,
                format!(
                    "deleting (deletionPolicy Delete) is blocked: {e}; retrying with back-off. To delete the StreamPipeline and leave topic {topic} and table {table} in place, set the annotation {FORCE_DELETE_ANNOTATION}=true"
                ),
            );
            let new = StreamPipelineStatus {
                conditions: status::merge(
                    &old.conditions,
                    &[cond],
                    generation,
                    &Time(Timestamp::now()),
                ),
                ..old
            };
            status::update(ctx, sp, new).await?;
            Err(e)
        }
    }
}

/// Whether the pipeline takes credentials from the Secret `name`.
fn uses_secret(sp: &StreamPipeline, name: &str) -> bool {
    let kafka = sp
        .spec
        .kafka
        .credentials_secret_ref
        .as_ref()
        .map(|r| r.name.as_str());
    let cassandra = sp
        .spec
        .cassandra
        .credentials_secret_ref
        .as_ref()
        .map(|r| r.name.as_str());
    kafka == Some(name) || cassandra == Some(name)
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves or a signal arrives.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = ctx.config.namespace.clone();
    let pipelines: Api<StreamPipeline> = scoped(&client, ns.as_deref());
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=millrace-operator");
    let controller = Controller::new(pipelines, watcher::Config::default().any_semantic());
    // A pipeline waiting for a credentials Secret (or using one that is
    // rotated) is reconciled as soon as the Secret changes.
    let store = controller.store();
    let secret_users = move |secret: Secret| {
        let namespace = secret.namespace();
        let name = secret.name_any();
        store
            .state()
            .into_iter()
            .filter(|sp| sp.namespace() == namespace && uses_secret(sp, &name))
            .map(|sp| ObjectRef::from_obj(&*sp))
            .collect::<Vec<_>>()
    };
    let controller = controller
        .owns(scoped::<Deployment>(&client, ns.as_deref()), owned.clone())
        .owns(scoped::<Service>(&client, ns.as_deref()), owned.clone())
        .owns(scoped::<ConfigMap>(&client, ns.as_deref()), owned);
    let controller = if ctx.config.watch_secrets {
        controller.watches(
            scoped::<Secret>(&client, ns.as_deref()),
            watcher::Config::default(),
            secret_users,
        )
    } else {
        controller
    };
    controller
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.config.concurrency),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
