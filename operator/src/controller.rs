//! The StreamPipeline controller. Each reconcile reads top to bottom:
//! observe (the credentials Secrets) → validate → desired (pure,
//! `desired/`) → apply (`apply/`: Kafka, Cassandra, Kubernetes) → report
//! (`status/`). The steps hand back the Events they call for; this module
//! publishes them. A finalizer applies `deletionPolicy` when the pipeline is
//! deleted.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Event;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use millrace_api::backfill_annotation;
use millrace_api::{
    DeletionPolicy, StreamPipeline, StreamPipelineStatus, condition_type, validate_pipeline,
};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::apply::{self, PartOutcome};
use crate::cache;
pub use crate::context::{Config, Context};
use crate::credentials;
use crate::desired::ownership::Owner;
use crate::desired::{self, Pipeline};
use crate::error::{Error, ErrorClass, Result};
use crate::events::Notice;
use crate::hold;
use crate::metrics::{Step, Target};
use crate::slots::Class;
use crate::status::{self, Cond, RUNNER_READY, reasons};
use crate::wake;

pub use crate::desired::finalizer::FINALIZER;
/// Set to `"true"` to let a pipeline with `deletionPolicy: Delete` go
/// without removing its topic and table (when Kafka or Cassandra is gone
/// for good).
pub const FORCE_DELETE_ANNOTATION: &str = "millrace.io/force-delete";

/// Publishes Events about the pipeline, in order; a failure to do so is
/// logged, never fatal.
async fn publish(ctx: &Context, sp: &StreamPipeline, notices: Vec<Notice>) {
    for notice in notices {
        if ctx.may_write().is_err() {
            debug!("not the leader: Events left unpublished");
            return;
        }
        let mut note = notice.note;
        if note.len() > 1000 {
            let mut end = 1000;
            while !note.is_char_boundary(end) {
                end -= 1;
            }
            note.truncate(end);
        }
        let event = Event {
            type_: notice.type_,
            reason: notice.reason,
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        ctx.metrics.write(Target::Kubernetes);
        let recorder = ctx.recorder_for(&event.reason, event.note.as_deref().unwrap_or_default());
        if let Err(e) = recorder.publish(&event, &sp.object_ref(&())).await {
            warn!(error = %e, "could not publish an Event");
        }
    }
}

/// Writes the status and publishes the Events its condition changes call
/// for.
async fn report(
    ctx: &Context,
    sp: &StreamPipeline,
    new: StreamPipelineStatus,
    hold: bool,
) -> Result<()> {
    let notices = status::update(ctx, sp, new, hold).await?;
    publish(ctx, sp, notices).await;
    Ok(())
}

fn key(sp: &StreamPipeline) -> String {
    format!("{}/{}", sp.namespace().unwrap_or_default(), sp.name_any())
}

pub async fn reconcile(sp: Arc<StreamPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let sp = ctx.held.overlay(sp);
    let status = sp.status.as_ref();
    let class = Class::of(
        sp.metadata.generation,
        status.and_then(|s| s.observed_generation),
        status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == condition_type::READY && c.status == "True")
        }),
    );
    let _slot = ctx.slots.take(class).await;
    // What changed while it waited is reconciled now, not by one more.
    let Some(sp) = ctx.latest(&sp) else {
        return Ok(Action::await_change());
    };
    // A task of its own: the many reconciles waiting for a slot each hold
    // only the small future above, not the whole reconcile's state, and
    // the reconcile's polls start at the bottom of a worker's stack rather
    // than under the controller's streams, leaving a debug build's 2 MiB
    // to the reconcile itself.
    let task = AbortOnDrop(tokio::spawn(reconcile_now(sp, ctx)));
    match task.join().await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => unreachable!("only dropping the AbortOnDrop aborts the task"),
    }
}

/// A reconcile's task, aborted when the controller drops the reconcile
/// (on shutdown or loss of leadership), as the reconcile would have been.
struct AbortOnDrop(tokio::task::JoinHandle<Result<Action>>);

impl AbortOnDrop {
    async fn join(mut self) -> std::result::Result<Result<Action>, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn reconcile_now(sp: Arc<StreamPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started();
    let namespace = sp
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<StreamPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let span = info_span!("reconcile", namespace = %namespace, name = %sp.name_any());
    let key = key(&sp);
    let sp = converge_finalizer(&ctx, &api, sp).await?;
    // The status a previous reconcile held back, in place of the stored one:
    // every step reads the pipeline's last report from it.
    let sp = ctx.held.overlay(sp);
    let result = if sp.finalizers().iter().any(|f| f == FINALIZER) {
        finalizer(&api, FINALIZER, sp, |event| async {
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
        })
    } else if sp.meta().deletion_timestamp.is_some() {
        // A `Retain` pipeline held only by others' finalizers: nothing of
        // ours to do while it goes.
        ctx.forget(&sp.uid().unwrap_or_default());
        Ok(Action::await_change())
    } else {
        apply(&sp, &ctx).instrument(span).await
    };
    if result.is_ok() {
        ctx.failure_count(&key, true);
    }
    result
}

/// The pipeline with the operator's finalizer exactly when its
/// `deletionPolicy` calls for one ([`desired::finalizer`]): added by the
/// reconcile that goes on to apply (kube's `finalizer` helper would add it
/// and stop, and the pipeline would wait for another reconcile), removed
/// when the policy turns to `Retain`. The patch names the resourceVersion it
/// read: a finalizer list changed meanwhile is a conflict, retried, never
/// overwritten.
async fn converge_finalizer(
    ctx: &Context,
    api: &Api<StreamPipeline>,
    sp: Arc<StreamPipeline>,
) -> Result<Arc<StreamPipeline>> {
    let Some(finalizers) = desired::finalizer::finalizers(
        sp.finalizers(),
        sp.spec.deletion_policy,
        sp.meta().deletion_timestamp.is_some(),
    ) else {
        return Ok(sp);
    };
    if !desired::finalizer::cleans_up(sp.spec.deletion_policy) {
        ctx.forget(&sp.uid().unwrap_or_default());
    }
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": sp.resource_version(),
        }
    });
    let patched = api
        .patch(
            &sp.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await;
    if !matches!(&patched, Err(e) if crate::leader::refused_write(e)) {
        ctx.metrics.write(Target::Kubernetes);
    }
    Ok(Arc::new(patched?))
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

    // Observe: every Secret the spec names, each read once; without them
    // nothing can be told (and the runner's Pods would roll for nothing),
    // so a failed read is retried.
    let step = ctx.metrics.step(Step::Secrets);
    let secrets = credentials::SecretsRead::fetch(
        &ctx.client,
        &p.namespace,
        credentials::runner_secret_names(&sp.spec),
    )
    .await?;
    drop(step);
    let kafka_auth = secrets.kafka(&sp.spec.kafka);
    let cassandra_auth = secrets.cassandra(&sp.spec.cassandra);

    // Validate: the apiserver's CEL rules catch nearly everything; this is
    // the same check in Rust, for what CEL cannot express. Then the
    // backfills asked for by annotation, which no admission rule sees.
    let checked = validate_pipeline(&p.name, &sp.spec).and_then(|()| {
        backfill_annotation::with_backfills(&sp.spec, sp.annotations(), Timestamp::now())
    });
    let annotated_spec = match checked {
        Ok(spec) => spec,
        Err(invalid) => {
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
            report(ctx, sp, new, false).await?;
            return Err(Error::InvalidSpec(invalid));
        }
    };
    // Once per change of the spec, not every resync: an open endpoint is
    // a choice the user made, and is told about loudly, once.
    if old.observed_generation != Some(p.generation) {
        let open: Vec<&str> = sp
            .spec
            .sources
            .iter()
            .filter(|s| {
                s.http_push
                    .as_ref()
                    .is_some_and(|push| push.auth_type() == millrace_api::PushAuthType::None)
            })
            .map(|s| s.name.as_str())
            .collect();
        if !open.is_empty() {
            let note = format!(
                "push source {} accepts records from anyone who can reach the Service {} (auth.type None): \
                 set auth.type BearerToken, or limit who reaches it with a NetworkPolicy",
                open.join(", "),
                p.service_name()
            );
            publish(
                ctx,
                sp,
                vec![Notice::warning(reasons::UNAUTHENTICATED_PUSH, note)],
            )
            .await;
        }
    }
    let secrets_version = desired::secrets_version(&secrets.versions());
    // Kept for a cleanup that finds its Secrets gone.
    if desired::finalizer::cleans_up(sp.spec.deletion_policy) {
        if let Ok(auth) = &kafka_auth {
            ctx.remember(&p.uid, |r| r.kafka = auth.clone());
        }
        if let Ok(auth) = &cassandra_auth {
            ctx.remember(&p.uid, |r| r.cassandra = auth.clone());
        }
    }

    // Apply: topic and table first, then the runner that needs them. Topic
    // and table do not depend on each other: one's round trips overlap the
    // other's.
    let (mut topic, mut table) = tokio::join!(
        async {
            match &kafka_auth {
                Ok(auth) => {
                    let _step = ctx.metrics.step(Step::Topic);
                    apply::kafka::reconcile_topic(ctx, &p, auth.as_ref()).await
                }
                Err(_) => credentials_failed(kafka_auth.as_ref().err(), "Kafka credentials"),
            }
        },
        async {
            match &cassandra_auth {
                Ok(auth) => {
                    let _step = ctx.metrics.step(Step::Tables);
                    apply::cassandra::reconcile_tables(ctx, &p, auth.as_ref()).await
                }
                Err(_) => {
                    credentials_failed(cassandra_auth.as_ref().err(), "Cassandra credentials")
                }
            }
        },
    );
    // What the steps changed, published once the runner is applied too.
    let mut changes = std::mem::take(&mut topic.events);
    changes.append(&mut table.events);
    let dependencies_ready = topic.usable && table.usable;

    // Desired: the runner's whole set of objects. A pipeline in conflict
    // over its topic or table must not write into another pipeline's data:
    // a runner it already has is scaled to zero, as if suspended.
    let conflict = topic.is_conflict() || table.is_conflict();
    // While the spec asks for a table change Cassandra cannot make, the
    // runner keeps writing that table as it is, and the others as
    // declared: good records keep flowing.
    let held_tables: Vec<(usize, millrace_api::TableSpec)> = match &table.status {
        Some(statuses) if table.reason == reasons::NOT_SUPPORTED => sp
            .spec
            .cassandra
            .tables()
            .iter()
            .enumerate()
            .filter_map(|(i, declared)| {
                let observed = statuses.iter().find(|t| t.name == declared.name)?;
                desired::table::runner_table(declared, &observed.columns).map(|t| (i, t))
            })
            .collect(),
        _ => Vec::new(),
    };
    let held;
    let backfill_asked = annotated_spec != sp.spec;
    let runner_p = if (conflict && !sp.spec.suspend) || !held_tables.is_empty() || backfill_asked {
        let mut runner_sp = sp.clone();
        runner_sp.spec = annotated_spec;
        runner_sp.spec.suspend |= conflict;
        for (i, t) in held_tables {
            if let Some(slot) = runner_sp.spec.cassandra.tables_mut().get_mut(i) {
                *slot = t;
            }
        }
        held = runner_sp;
        Pipeline::new(&held)?
    } else {
        p.clone()
    };
    // The flow comes before the runner: the autoscaler decides the sink's
    // replicas from its lag.
    let partitions = topic.status.as_ref().and_then(|t| t.partitions);
    let flow = match (&kafka_auth, topic.usable) {
        (Ok(auth), true) => {
            let _step = ctx.metrics.step(Step::Offsets);
            status::flow::flow(
                ctx.config.flow_refresh,
                &ctx.kafka_offsets,
                &ctx.client,
                &p.namespace,
                &p.name,
                &sp.spec,
                partitions,
                auth.as_ref(),
                old.flow.as_ref(),
            )
            .await
        }
        _ => old.flow.clone(),
    };
    if let Some(note) = status::flow::skipped_note(old.flow.as_ref(), flow.as_ref()) {
        publish(
            ctx,
            sp,
            vec![Notice::warning(reasons::RECORDS_SKIPPED, note)],
        )
        .await;
    }
    let flowing_cond = status::flow::flowing(
        old.flow.as_ref(),
        flow.as_ref(),
        status::previous(&old.conditions, condition_type::FLOWING).as_ref(),
        &sp.spec.dead_letter_topic(),
        Timestamp::now(),
    );
    // `runner_p`: a pipeline in conflict has its runner suspended.
    let autoscaled = autoscale(runner_p.sp, &old, flow.as_ref(), partitions, &flowing_cond);
    let runner_objects = desired::runner_objects(
        &runner_p,
        &ctx.config.runner,
        autoscaled.as_ref().map(|d| d.status.replicas),
        secrets_version.as_deref(),
    );
    let mut runner = match runner_objects {
        Ok(objects) => {
            let _step = ctx.metrics.step(Step::Runner);
            apply::kubernetes::reconcile_runner(ctx, &runner_p, &objects, dependencies_ready).await
        }
        Err(e) => PartOutcome::failed(e, "applying the runner's objects"),
    };
    let runner_changed = !runner.events.is_empty();
    changes.append(&mut runner.events);
    if old.observed_generation.is_none() {
        changes = crate::events::created(changes);
    }
    let step = ctx.metrics.step(Step::Report);
    publish(ctx, sp, changes).await;
    drop(step);

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
    let replay = match (&kafka_auth, topic.usable) {
        (Ok(auth), true) => {
            let _step = ctx.metrics.step(Step::Offsets);
            status::replay::replay(
                &ctx.kafka_offsets,
                sp,
                &sp.spec.kafka,
                auth.as_ref(),
                old.dead_letter_replay.as_ref(),
            )
            .await
        }
        _ => old.dead_letter_replay.clone(),
    };
    publish(
        ctx,
        sp,
        status::replay::notices(
            old.dead_letter_replay.as_ref(),
            replay.as_ref(),
            &sp.spec.dead_letter_topic(),
        ),
    )
    .await;
    // A failed part is retried with back-off (once the status says so);
    // the others were still done.
    let failed = [topic.error, table.error, runner.error]
        .into_iter()
        .flatten()
        .chain(kafka_auth.err())
        .chain(cassandra_auth.err())
        .next();
    let hold = hold::may_hold(&hold::Outcome {
        observed_generation: old.observed_generation,
        generation: p.generation,
        others_ready: topic_cond.ready && table_cond.ready && flowing_cond.ready,
        runner_ready: runner_cond.ready,
        runner_reason: &runner_cond.reason,
        runner_changed,
        anything_else: failed.is_some() || autoscaled.as_ref().is_some_and(|d| d.notice.is_some()),
        suspended: sp.spec.suspend,
    });
    let ready = status::ready(
        &[&topic_cond, &table_cond, &runner_cond, &flowing_cond],
        sp.spec.suspend,
    );
    let conds = [
        ready,
        topic_cond,
        table_cond,
        runner_cond,
        flowing_cond,
        status::suspended(sp.spec.suspend),
    ];
    let new = StreamPipelineStatus {
        observed_generation: Some(p.generation),
        conditions: status::merge(&old.conditions, &conds, p.generation, &now),
        topic: topic.status.clone().or(old.topic.clone()),
        table: match &table.status {
            Some(statuses) => statuses.first().cloned(),
            None => old.table.clone(),
        },
        // Listed only for a spec with `tables`: one table is `table`.
        tables: match (&table.status, &sp.spec.cassandra.tables) {
            (_, None) => Vec::new(),
            (Some(statuses), Some(_)) => statuses.clone(),
            (None, Some(_)) => old.tables.clone(),
        },
        runner: runner.status.clone().or(old.runner.clone()),
        flow,
        dead_letter_replay: replay,
        autoscale: match (&sp.spec.runner.autoscale, &autoscaled) {
            (None, _) => None,
            (Some(_), Some(d)) => Some(d.status.clone()),
            // Suspended: the last decision stands until the sink runs again.
            (Some(_), None) => old.autoscale.clone(),
        },
    };
    let step = ctx.metrics.step(Step::Report);
    report(ctx, sp, new, hold).await?;
    drop(step);
    // Once the decision is in the status: an Event for a decision that
    // was not recorded would be made again on the next reconcile.
    if let Some(notice) = autoscaled.and_then(|d| d.notice) {
        info!(reason = %notice.reason, "{}", notice.note);
        publish(ctx, sp, vec![notice]).await;
    }

    if let Some(error) = failed {
        return Err(error);
    }
    info!("reconciled");
    // Kafka sends no events: the flow figures and the Flowing condition are
    // only as fresh as the last reconcile.
    let next = if sp.spec.suspend {
        ctx.config.resync
    } else {
        ctx.config.resync.min(ctx.config.flow_refresh)
    };
    Ok(Action::requeue(if hold { hold::HOLD } else { next }))
}

/// The autoscaler's decision (`spec.runner.autoscale`), unless the
/// pipeline is suspended (its sink then has no replicas to decide).
fn autoscale(
    sp: &StreamPipeline,
    old: &StreamPipelineStatus,
    flow: Option<&millrace_api::FlowStatus>,
    partitions: Option<i32>,
    flowing: &Cond,
) -> Option<desired::autoscale::Decision> {
    let spec = sp.spec.runner.autoscale.as_ref()?;
    if sp.spec.suspend {
        return None;
    }
    let sink_ready = old.runner.as_ref().and_then(|r| r.sink_ready_replicas);
    let observed = desired::autoscale::Observed {
        lag: flow.and_then(|f| f.sink_lag),
        partitions,
        previous: old.autoscale.as_ref(),
        current: sp.spec.runner.sink_replicas,
        pushback: status::flow::cassandra_pushback(flow, flowing, sink_ready),
        now: Timestamp::now(),
    };
    Some(desired::autoscale::decide(spec, &observed))
}

fn credentials_failed<S>(error: Option<&Error>, what: &str) -> PartOutcome<S> {
    match error {
        Some(e) => PartOutcome::not_attempted(e.reason(), format!("{what}: {e}")),
        None => PartOutcome::not_attempted("SecretNotFound", what.to_owned()),
    }
}

/// The finalizer: `Retain` keeps topic and table; `Delete` removes them,
/// retrying with back-off (and saying why) while Kafka or Cassandra cannot
/// be reached, unless `millrace.io/force-delete: "true"` is set.
async fn cleanup(sp: &StreamPipeline, ctx: &Context) -> Result<Action> {
    let spec = &sp.spec;
    let topic = &spec.kafka.topic.name;
    let tables: Vec<String> = spec
        .cassandra
        .tables()
        .iter()
        .map(|t| format!("{}.{}", spec.cassandra.keyspace.name, t.name))
        .collect();
    // "table ks.t", or "tables ks.a, ks.b", for messages.
    let table = match tables.as_slice() {
        [one] => format!("table {one}"),
        many => format!("tables {}", many.join(", ")),
    };
    let forced = sp
        .annotations()
        .get(FORCE_DELETE_ANNOTATION)
        .is_some_and(|v| v == "true");
    if spec.deletion_policy == DeletionPolicy::Retain || forced {
        ctx.forget(&sp.uid().unwrap_or_default());
    }
    if spec.deletion_policy == DeletionPolicy::Retain {
        let note = format!("deletionPolicy is Retain: kept topic {topic} and {table}");
        publish(ctx, sp, vec![Notice::normal("Retained", note)]).await;
        return Ok(Action::await_change());
    }
    if forced {
        let note = format!(
            "{FORCE_DELETE_ANNOTATION} is set: topic {topic} and {table} were left in place"
        );
        publish(ctx, sp, vec![Notice::warning("ForceDeleted", note)]).await;
        return Ok(Action::await_change());
    }
    let uid = sp.uid().unwrap_or_default();
    let namespace = sp.namespace().unwrap_or_default();
    let owner = Owner::new(&namespace, &sp.name_any());
    let result = async {
        let remembered = ctx.recall(&uid);
        let kafka_auth =
            match credentials::kafka_credentials(&ctx.client, &namespace, &spec.kafka).await {
                Err(Error::SecretNotFound { .. } | Error::SecretKeyMissing { .. })
                    if remembered.kafka.is_some() =>
                {
                    remembered.kafka
                }
                other => other?,
            };
        let cassandra_auth = match credentials::cassandra_credentials(
            &ctx.client,
            &namespace,
            &spec.cassandra,
        )
        .await
        {
            Err(Error::SecretNotFound { .. } | Error::SecretKeyMissing { .. })
                if remembered.cassandra.is_some() =>
            {
                remembered.cassandra
            }
            other => other?,
        };
        let topics =
            apply::kafka::delete_topics(ctx, spec, &owner, &remembered.topics, kafka_auth.as_ref())
                .await?;
        let mut dropped = Vec::new();
        for (t, name) in spec.cassandra.tables().iter().zip(&tables) {
            let outcome = apply::cassandra::drop_table(
                ctx,
                &spec.cassandra,
                &t.name,
                &owner,
                cassandra_auth.as_ref(),
            )
            .await?;
            dropped.push((name.clone(), outcome));
        }
        Ok::<_, Error>((topics, dropped))
    }
    .await;
    match result {
        Ok((topics, dropped)) => {
            ctx.forget(&uid);
            let mut notices = Vec::new();
            let mut done = Vec::new();
            if !topics.deleted.is_empty() {
                done.push(format!("deleted topic {}", topics.deleted.join(" and ")));
            }
            for (name, outcome) in &dropped {
                if *outcome == apply::cassandra::Dropped::Dropped {
                    done.push(format!("dropped table {name}"));
                }
            }
            if !done.is_empty() {
                notices.push(Notice::normal(
                    "Deleted",
                    format!("deletionPolicy is Delete: {}", done.join(", ")),
                ));
            }
            for name in &topics.unmanaged {
                notices.push(Notice::normal(
                    "LeftInPlace",
                    format!(
                        "deletionPolicy is Delete, but topic {name} is not managed by millrace (spec.kafka.topic.managed: false): left in place"
                    ),
                ));
            }
            for (name, recorded) in &topics.kept {
                notices.push(Notice::warning(
                    "LeftInPlace",
                    left_in_place(&format!("topic {name}"), recorded.as_ref()),
                ));
            }
            for (name, outcome) in &dropped {
                if let apply::cassandra::Dropped::NotOurs(recorded) = outcome {
                    notices.push(Notice::warning(
                        "LeftInPlace",
                        left_in_place(&format!("table {name}"), recorded.as_ref()),
                    ));
                }
            }
            publish(ctx, sp, notices).await;
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
                    "deleting (deletionPolicy Delete) is blocked: {e}; retrying with back-off. To delete the StreamPipeline and leave topic {topic} and {table} in place, set the annotation {FORCE_DELETE_ANNOTATION}=true"
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
            report(ctx, sp, new, false).await?;
            Err(e)
        }
    }
}

/// Why `Delete` kept something: it is recorded as another pipeline's, or
/// as nobody's (then it was never this pipeline's to delete).
fn left_in_place(what: &str, recorded: Option<&Owner>) -> String {
    match recorded {
        Some(owner) => format!(
            "deletionPolicy is Delete, but {what} belongs to StreamPipeline {owner}: left in place"
        ),
        None => format!(
            "deletionPolicy is Delete, but {what} is not recorded as this pipeline's: left in place"
        ),
    }
}

/// Whether the pipeline (its clients or its runner) takes credentials or
/// keys from the Secret `name`: a change of it is reconciled at once.
fn uses_secret(sp: &StreamPipeline, name: &str) -> bool {
    credentials::runner_secret_names(&sp.spec).contains(&name)
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

/// Reconciles that would follow each other within this long (the
/// controller-manager's updates of both Deployments' status, which it makes
/// a few milliseconds apart) run as one. It is also the least time from a
/// change to its reconcile, twice over for a new pipeline (created, then
/// rolled out): 1 s made one pipeline's apply->Ready 2.3 s where the work
/// took 0.3 s, and [`crate::wake`] already drops the updates that need no
/// reconcile, so this only has to cover a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// What of a pipeline calls for a reconcile: its spec (generation, which
/// the apiserver also bumps when deletion starts), its annotations (a
/// replay or force-delete request) and labels. Not its status, nor its
/// finalizers: the operator's own status writes and its finalizer would
/// otherwise set off a reconcile each (a finalizer removed by hand is put
/// back at the next resync).
fn needs_work(sp: &StreamPipeline) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sp.metadata.generation.hash(&mut h);
    sp.annotations().hash(&mut h);
    sp.labels().hash(&mut h);
    sp.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// A watch of one kind the operator owns, filling its cache as it goes and
/// passing on only the changes that call for a reconcile ([`wake`]).
fn owned<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = std::result::Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + wake::Wakes
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let config =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=millrace-operator");
    let mut filter = wake::Filter::default();
    let mut writer = writer;
    watcher(scoped::<K>(client, namespace), config)
        .default_backoff()
        .filter_map(move |event| {
            futures::future::ready(match event {
                Ok(event) => {
                    // The filter reads every manager's managed fields;
                    // the cache keeps only what drift detection reads.
                    let wakes = filter.wakes(&event);
                    let event = event.modify(|obj| desired::drift::keep_for_drift(obj.meta_mut()));
                    writer.apply_watcher_event(&event);
                    match event {
                        watcher::Event::Apply(obj)
                        | watcher::Event::Delete(obj)
                        | watcher::Event::InitApply(obj)
                            if wakes =>
                        {
                            Some(Ok(obj))
                        }
                        _ => None,
                    }
                }
                Err(e) => Some(Err(e)),
            })
        })
}

/// Runs the controller until `shutdown` resolves or a signal arrives,
/// with watch caches of its own (installed in `ctx`).
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let (owned_cache, writers) = cache::Owned::new();
    ctx.set_cache(owned_cache);
    let client = ctx.client.clone();
    let ns = ctx.config.namespace.clone();
    let ns = ns.as_deref();
    let (store, writer) = reflector::store();
    ctx.set_pipelines(store.clone());
    let pipelines = watcher(
        scoped::<StreamPipeline>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    // Nothing reads a pipeline's managed fields.
    .modify(|sp| sp.meta_mut().managed_fields = None)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(needs_work, Default::default());
    let controller = Controller::for_stream(pipelines, store.clone());
    // A pipeline waiting for a credentials Secret (or using one that is
    // rotated) is reconciled as soon as the Secret changes.
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
        .owns_stream(owned(&client, ns, writers.deployments))
        .owns_stream(owned(&client, ns, writers.services))
        .owns_stream(owned(&client, ns, writers.config_maps))
        .owns_stream(owned(&client, ns, writers.service_accounts))
        .owns_stream(owned(&client, ns, writers.roles))
        .owns_stream(owned(&client, ns, writers.role_bindings))
        .owns_stream(owned(&client, ns, writers.network_policies));
    let controller = if ctx.config.watch_secrets {
        controller.watches(
            scoped::<Secret>(&client, ns),
            watcher::Config::default(),
            secret_users,
        )
    } else {
        controller
    };
    controller
        .with_config(
            kube::runtime::controller::Config::default()
                // `ctx.slots` limits and orders them instead.
                .concurrency(0)
                .debounce(DEBOUNCE),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
