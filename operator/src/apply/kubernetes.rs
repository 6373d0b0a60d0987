//! Server-side apply (field manager `millrace-operator`) of the runner's
//! objects. An object is written only when it is missing, its
//! `millrace.io/desired-hash` differs from what the operator would write
//! now, or someone else changed or removed a field the operator set (its
//! managed fields say so: [`crate::desired::drift`]); so a hand edit is
//! undone and a steady-state resync writes nothing.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use millrace_api::RunnerStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use super::PartOutcome;
use crate::cache::Cached;
use crate::context::Context;
use crate::desired::deployment::Role;
use crate::desired::{
    FIELD_MANAGER, Pipeline, RunnerObjects, desired_hash, drift, push_tls, push_tokens,
    with_desired_hash,
};
use crate::error::{Error, Result};
use crate::events::Notice;
use crate::metrics::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Created,
    Updated,
    Deleted,
}

/// Applies `desired` unless the live object already is what the operator
/// last applied, with every field still the operator's (and `in_sync`
/// agrees).
pub async fn ensure<K>(
    ctx: &Context,
    desired: K,
    in_sync: impl Fn(&K) -> bool,
) -> Result<(K, Change)>
where
    K: Cached + Serialize + DeserializeOwned + Debug,
{
    let namespace = desired
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let existing = live(ctx, &namespace, &desired.name_any()).await?;
    ensure_from(ctx, desired, existing, in_sync).await
}

/// The live object from the watch cache. The apiserver is asked only
/// before the watch's first list: after it, an object missing from the
/// cache does not exist, or was created a moment ago (its apply is then
/// repeated, which changes nothing), or lacks the operator's label (the
/// apply takes it over, as it would after a read). At a thousand new
/// pipelines those reads, each a 404, were half of the operator's GETs.
pub async fn live<K>(ctx: &Context, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: Cached + DeserializeOwned + Debug,
{
    let cache = ctx.cache();
    if let Some(cached) = cache.get::<K>(namespace, name) {
        return Ok(Some((*cached).clone()));
    }
    if cache.listed::<K>() {
        return Ok(None);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api.get_opt(name).await?)
}

/// [`ensure`], with the live object (or its absence) already read.
pub async fn ensure_from<K>(
    ctx: &Context,
    desired: K,
    existing: Option<K>,
    in_sync: impl Fn(&K) -> bool,
) -> Result<(K, Change)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let desired = with_desired_hash(desired)?;
    let name = desired.name_any();
    let namespace = desired
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(live) = &existing
        && desired_hash(live) == desired_hash(&desired)
        && live.meta().deletion_timestamp.is_none()
        && in_sync(live)
        && !drifted(&desired, live)?
    {
        return Ok((live.clone(), Change::None));
    }
    let apply = || async {
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&desired),
            )
            .await;
        if !matches!(&applied, Err(e) if crate::leader::refused_write(e)) {
            ctx.metrics.write(Target::Kubernetes);
        }
        applied
    };
    let applied = match apply().await {
        // Someone else's entry stands in the way of the declared one (a
        // Service port renumbered by hand keeps its name, and the declared
        // port would repeat it): apply cannot remove what it does not own,
        // so the object is replaced as declared, then applied again so the
        // operator's managed fields hold it all. The object is read here
        // when the cache did not hold it (unlabelled, say).
        Err(kube::Error::Api(e)) if e.code == 422 => {
            let live = match &existing {
                Some(live) => live.clone(),
                None => match api.get_opt(&name).await? {
                    Some(live) => live,
                    None => return Err(kube::Error::Api(e).into()),
                },
            };
            info!(
                kind = %K::kind(&()),
                %name,
                error = %e.message,
                "another manager's fields conflict with the declared ones: replacing the object"
            );
            let mut replacement = desired.clone();
            replacement.meta_mut().resource_version = live.meta().resource_version.clone();
            api.replace(&name, &PostParams::default(), &replacement)
                .await?;
            ctx.metrics.write(Target::Kubernetes);
            apply().await?
        }
        result => result?,
    };
    // Not in the cache and not created by this apply: an object of the
    // declared name that someone else made (the cache holds only the
    // operator's labelled objects) and the apply took over.
    let taken_over = || {
        applied
            .meta()
            .managed_fields
            .iter()
            .flatten()
            .any(drift::by_hand)
    };
    let change = if existing.is_some() || taken_over() {
        Change::Updated
    } else {
        Change::Created
    };
    Ok((applied, change))
}

/// Deletes the pipeline's NetworkPolicy once it should have none
/// (`enabled: false`, or `--network-policies=false`), if this pipeline
/// owns it: one of the same name made by anyone else stays. Whether it
/// deleted one.
/// Deletes `name` of kind `K` if the operator made it for this pipeline
/// (its controller owner reference says so); says whether it did.
///
/// Only the watch cache is asked: most pipelines never had the object, and
/// a GET for each absent one on every reconcile was most of the reads. An
/// object the cache has not seen yet (created a moment ago, before the
/// spec dropped it) is removed by the next reconcile.
async fn remove_own<K>(ctx: &Context, p: &Pipeline<'_>, name: &str) -> Result<bool>
where
    K: Cached + DeserializeOwned + Debug,
{
    let Some(live) = ctx.cache().get::<K>(&p.namespace, name) else {
        return Ok(false);
    };
    let ours = live
        .owner_references()
        .iter()
        .any(|o| o.uid == p.uid && o.controller == Some(true));
    if !ours || live.meta().deletion_timestamp.is_some() {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &p.namespace);
    let deleted = api.delete(name, &kube::api::DeleteParams::default()).await;
    if !matches!(&deleted, Err(e) if crate::leader::refused_write(e)) {
        ctx.metrics.write(Target::Kubernetes);
    }
    match deleted {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Applies `desired`, or, where the pipeline should have no such object,
/// removes the one the operator made for it.
async fn ensure_or_remove<K>(
    ctx: &Context,
    p: &Pipeline<'_>,
    name: &str,
    desired: Option<K>,
) -> Result<Change>
where
    K: Cached + Serialize + DeserializeOwned + Debug,
{
    match desired {
        Some(desired) => Ok(ensure(ctx, desired, |_| true).await?.1),
        None if remove_own::<K>(ctx, p, name).await? => Ok(Change::Deleted),
        None => Ok(Change::None),
    }
}

/// Makes the tokens Secret of the push sources that name none, once: it is
/// never written again, since clients hold its token and may have added
/// their own. Then checks that the tokens Secrets the spec names exist.
/// Reads only, in a steady state.
async fn push_tokens(ctx: &Context, p: &Pipeline<'_>) -> Result<Change> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &p.namespace);
    for name in push_tokens::named_token_secrets(&p.sp.spec) {
        if api.get_metadata_opt(name).await?.is_none() {
            return Err(Error::SecretNotFound {
                namespace: p.namespace.clone(),
                name: name.to_owned(),
            });
        }
    }
    // The push endpoint's certificate and client CA: a missing Secret or
    // key would leave the ingest Pod waiting for its volume, unexplained.
    for (name, keys) in push_tls::tls_secret_keys(&p.sp.spec) {
        let Some(secret) = api.get_opt(name).await? else {
            return Err(Error::SecretNotFound {
                namespace: p.namespace.clone(),
                name: name.to_owned(),
            });
        };
        let data = secret.data.unwrap_or_default();
        if let Some(key) = keys.into_iter().find(|k| !data.contains_key(*k)) {
            return Err(Error::SecretKeyMissing {
                namespace: p.namespace.clone(),
                name: name.to_owned(),
                key: key.to_owned(),
            });
        }
    }
    let Some(secret) = push_tokens::generated_secret(p, &push_tokens::new_token()) else {
        return Ok(Change::None);
    };
    if api.get_metadata_opt(&secret.name_any()).await?.is_some() {
        return Ok(Change::None);
    }
    let created = api.create(&PostParams::default(), &secret).await;
    if !matches!(&created, Err(e) if crate::leader::refused_write(e)) {
        ctx.metrics.write(Target::Kubernetes);
    }
    match created {
        Ok(_) => Ok(Change::Created),
        // Made by a reconcile that ran a moment before: keep its token.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Change::None),
        Err(e) => Err(e.into()),
    }
}

/// Whether someone else changed or removed a field of `desired` in `live`
/// (logged, with the first such field).
fn drifted<K: Resource<DynamicType = ()> + Serialize>(desired: &K, live: &K) -> Result<bool> {
    let json = |o: &K| {
        serde_json::to_value(o).map_err(|e| Error::Render {
            what: "object",
            message: e.to_string(),
        })
    };
    let Some(field) = drift::drifted(&json(desired)?, &json(live)?) else {
        return Ok(false);
    };
    info!(
        kind = %K::kind(&()),
        name = %live.name_any(),
        %field,
        "changed by someone else: applying it again"
    );
    Ok(true)
}

/// A label selector as `kubectl` and the scale subresource write it:
/// `k1=v1,k2=v2`, keys in order.
fn selector_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Applies the runner's objects. Deployments are created only once the
/// topic and table can be used (`dependencies_ready`); once they exist they
/// follow the spec (so `suspend` always scales them down).
pub async fn reconcile_runner(
    ctx: &Context,
    p: &Pipeline<'_>,
    objects: &RunnerObjects,
    dependencies_ready: bool,
) -> PartOutcome<RunnerStatus> {
    let mut events = Vec::new();
    let outcome =
        match reconcile_runner_inner(ctx, p, objects, dependencies_ready, &mut events).await {
            Ok(outcome) => outcome,
            Err(e) => PartOutcome::failed(e, "applying the runner's objects"),
        };
    outcome.with_events(events)
}

async fn reconcile_runner_inner(
    ctx: &Context,
    p: &Pipeline<'_>,
    objects: &RunnerObjects,
    dependencies_ready: bool,
    events: &mut Vec<Notice>,
) -> Result<PartOutcome<RunnerStatus>> {
    let mut changed: Vec<String> = Vec::new();
    let mut note = |kind: &str, name: String, change: Change| {
        if change != Change::None {
            let verb = match change {
                Change::Created => "created",
                Change::Deleted => "deleted",
                _ => "updated",
            };
            changed.push(format!("{verb} {kind} {name}"));
        }
    };
    // Independent objects: their round trips overlap. The Deployments,
    // which name the ConfigMap and the ServiceAccount, come after.
    let runner_name = p.runner_name();
    let service_name = p.service_name();
    let identity = objects.identity.clone();
    let (cm, sa, role, binding, svc, policy) = futures::try_join!(
        ensure(ctx, objects.config_map.clone(), |_| true),
        ensure_or_remove(
            ctx,
            p,
            &runner_name,
            identity.as_ref().map(|i| i.service_account.clone())
        ),
        ensure_or_remove(
            ctx,
            p,
            &runner_name,
            identity.as_ref().map(|i| i.role.clone())
        ),
        ensure_or_remove(
            ctx,
            p,
            &runner_name,
            identity.as_ref().map(|i| i.role_binding.clone())
        ),
        ensure_or_remove(ctx, p, &service_name, objects.service.clone()),
        ensure_or_remove(ctx, p, &runner_name, objects.network_policy.clone()),
    )?;
    note("ConfigMap", p.config_map_name(), cm.1);
    note("ServiceAccount", runner_name.clone(), sa);
    note("Role", runner_name.clone(), role);
    note("RoleBinding", runner_name.clone(), binding);
    note("Service", service_name, svc);
    note("NetworkPolicy", runner_name, policy);

    match push_tokens(ctx, p).await {
        Ok(Change::Created) => note(
            "Secret",
            millrace_api::push_auth::generated_secret_name(&p.name),
            Change::Created,
        ),
        Ok(_) => {}
        Err(e) => {
            // The ingest Pod could not mount the tokens or its TLS files: say which Secret
            // is missing instead of leaving it stuck in ContainerCreating.
            return Ok(PartOutcome::failed(
                e,
                "the push endpoint's Secrets (tokens, spec.runner.pushTls)",
            ));
        }
    }

    let mut applied_deployments = Vec::new();
    for role in Role::ALL {
        let name = p.deployment_name(role);
        let Some(d) = objects.deployments.iter().find(|d| d.role == role) else {
            // The pipeline lost its last source: its ingest goes.
            if remove_own::<Deployment>(ctx, p, &name).await? {
                note("Deployment", name, Change::Deleted);
            }
            continue;
        };
        let existing = live::<Deployment>(ctx, &p.namespace, &name).await?;
        if !dependencies_ready && existing.is_none() {
            continue;
        }
        let want = d.replicas;
        let (applied, c) = ensure_from(ctx, d.deployment.clone(), existing, |d: &Deployment| {
            d.spec.as_ref().and_then(|s| s.replicas) == Some(want)
        })
        .await?;
        note("Deployment", name, c);
        applied_deployments.push((d.role, want, applied));
    }
    if !changed.is_empty() {
        events.push(Notice::normal("RunnerApplied", changed.join(", ")));
    }

    let mut status = RunnerStatus {
        service: objects.service.as_ref().map(|_| p.service_name()),
        ..RunnerStatus::default()
    };
    if applied_deployments.len() < objects.deployments.len() {
        return Ok(PartOutcome::waiting(
            "the runner starts once the topic and the table are ready",
            status,
        ));
    }
    let mut all_ready = true;
    let mut parts = Vec::new();
    for (role, want, d) in &applied_deployments {
        let s = d.status.clone().unwrap_or_default();
        let ready = s.ready_replicas.unwrap_or(0);
        let current = d.metadata.generation.unwrap_or(0) <= s.observed_generation.unwrap_or(-1);
        let rolled = s.updated_replicas.unwrap_or(0) >= *want && s.replicas.unwrap_or(0) == *want;
        all_ready &= current && rolled && ready >= *want;
        parts.push(format!("{} {ready}/{want}", role.as_str()));
        match role {
            Role::Ingest => {
                status.ingest_deployment = Some(d.name_any());
                status.ingest_ready_replicas = Some(ready);
            }
            Role::Sink => {
                status.sink_deployment = Some(d.name_any());
                status.sink_ready_replicas = Some(ready);
                status.sink_replicas = Some(s.replicas.unwrap_or(0));
                status.sink_selector = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.as_ref())
                    .map(selector_text);
            }
        }
    }
    let replicas = format!("ready replicas: {}", parts.join(", "));
    Ok(if p.sp.spec.suspend {
        PartOutcome::suspended(
            format!("spec.suspend is true: the runner is scaled to zero ({replicas})"),
            status,
        )
    } else if all_ready {
        PartOutcome::ready(format!("the runner is up ({replicas})"), status)
    } else {
        PartOutcome::progressing(
            format!("waiting for the runner's Pods ({replicas})"),
            status,
        )
    })
}
