//! Every Kubernetes object of a pipeline's runner, built in one pure call,
//! so the whole desired set can be checked at once and then applied.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role as RbacRole, RoleBinding};

use super::deployment::{self, Role, RunnerDefaults};
use super::{Pipeline, config_map, network_policy, rbac, service};
use crate::error::Result;

/// One of the runner's Deployments and the replicas it should have.
#[derive(Clone, Debug)]
pub struct RunnerDeployment {
    pub role: Role,
    pub deployment: Deployment,
    pub replicas: i32,
}

/// The identity of a runner that uses the Kubernetes API (a pulling
/// ingest's Leases).
#[derive(Clone, Debug)]
pub struct RunnerIdentity {
    pub service_account: ServiceAccount,
    pub role: RbacRole,
    pub role_binding: RoleBinding,
}

/// The runner's objects. All but the Deployments are independent of each
/// other; the Deployments name the ConfigMap and the ServiceAccount.
/// Each `None` is an object the pipeline should not have (and one the
/// operator made is removed): a runner that does not pull uses no API, so
/// it gets no identity of its own; one that takes no pushes, no Service.
#[derive(Clone, Debug)]
pub struct RunnerObjects {
    pub config_map: ConfigMap,
    pub identity: Option<RunnerIdentity>,
    pub service: Option<Service>,
    pub network_policy: Option<NetworkPolicy>,
    /// In [`Role::ALL`] order; no ingest for a pipeline without sources
    /// ([`Pipeline::ingests`]).
    pub deployments: Vec<RunnerDeployment>,
}

/// `autoscaled`: the sink's replicas as the autoscaler decided them, which
/// replace `spec.runner.sinkReplicas` (a suspended pipeline still gets none).
/// `secrets_version`: the versions of the Secrets the runner reads
/// ([`super::secrets_version`]).
pub fn runner_objects(
    p: &Pipeline<'_>,
    defaults: &RunnerDefaults,
    autoscaled: Option<i32>,
    secrets_version: Option<&str>,
) -> Result<RunnerObjects> {
    let replicas = |role: Role| match (role, autoscaled) {
        (Role::Sink, Some(n)) if !p.sp.spec.suspend => n,
        _ => deployment::replicas(&p.sp.spec, role),
    };
    Ok(RunnerObjects {
        config_map: config_map::config_map(p)?,
        identity: p.pulls().then(|| RunnerIdentity {
            service_account: rbac::service_account(p),
            role: rbac::role(p),
            role_binding: rbac::role_binding(p),
        }),
        service: p.pushes().then(|| service::service(p)),
        network_policy: network_policy::network_policy(p, &defaults.network_policy),
        deployments: Role::ALL
            .into_iter()
            .filter(|role| *role != Role::Ingest || p.ingests())
            .map(|role| {
                let mut deployment = deployment::deployment(p, role, defaults, secrets_version);
                if let Some(spec) = deployment.spec.as_mut() {
                    spec.replicas = Some(replicas(role));
                }
                RunnerDeployment {
                    role,
                    deployment,
                    replicas: replicas(role),
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use kube::ResourceExt;

    #[test]
    fn the_seed_pipeline_gets_its_whole_runner() {
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        let objects = runner_objects(&p, &RunnerDefaults::default(), None, None).expect("objects");
        assert_eq!(objects.config_map.name_any(), "randomuser-pipeline");
        assert!(
            objects.identity.is_none(),
            "the seed pushes and generates: no API, no ServiceAccount"
        );
        assert_eq!(
            objects
                .service
                .as_ref()
                .map(ResourceExt::name_any)
                .as_deref(),
            Some("randomuser")
        );
        let deployments: Vec<(Role, String, i32)> = objects
            .deployments
            .iter()
            .map(|d| (d.role, d.deployment.name_any(), d.replicas))
            .collect();
        assert_eq!(
            deployments,
            [
                (
                    Role::Ingest,
                    "randomuser-ingest".to_owned(),
                    sp.spec.runner.ingest_replicas
                ),
                (
                    Role::Sink,
                    "randomuser-sink".to_owned(),
                    sp.spec.runner.sink_replicas
                ),
            ]
        );
        for d in &objects.deployments {
            assert_eq!(
                d.deployment.namespace().as_deref(),
                Some("data"),
                "{:?}",
                d.role
            );
        }
        for d in &objects.deployments {
            let pod = d
                .deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod");
            assert_eq!(pod.service_account_name, None, "{:?}", d.role);
            assert_eq!(pod.automount_service_account_token, Some(false));
        }
    }

    #[test]
    fn a_pulling_runner_gets_an_identity_and_one_without_pushes_no_service() {
        let mut sp = fixtures::seed();
        sp.spec.sources = vec![serde_json::from_value(serde_json::json!(
            {"name": "api", "httpPull": {"url": "http://example.test/users", "schedule": "* * * * *"}}
        ))
        .expect("source")];
        let p = Pipeline::new(&sp).expect("pipeline");
        let objects = runner_objects(&p, &RunnerDefaults::default(), None, None).expect("objects");
        let identity = objects.identity.expect("identity");
        assert_eq!(identity.service_account.name_any(), "randomuser-runner");
        assert_eq!(identity.role.name_any(), "randomuser-runner");
        assert_eq!(identity.role_binding.name_any(), "randomuser-runner");
        assert!(objects.service.is_none());
        for d in &objects.deployments {
            assert_eq!(
                d.deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .and_then(|s| s.service_account_name.as_deref()),
                Some("randomuser-runner"),
                "{:?} runs as the runner's ServiceAccount",
                d.role
            );
        }
    }

    #[test]
    fn a_pipeline_without_sources_has_no_ingest_deployment() {
        let mut sp = fixtures::seed();
        sp.spec.sources.clear();
        let p = Pipeline::new(&sp).expect("pipeline");
        let objects = runner_objects(&p, &RunnerDefaults::default(), None, None).expect("objects");
        let roles: Vec<Role> = objects.deployments.iter().map(|d| d.role).collect();
        assert_eq!(roles, [Role::Sink]);
        assert!(objects.service.is_none() && objects.identity.is_none());
        // Suspended, a pipeline with sources keeps its ingest, at zero.
        let mut suspended = fixtures::seed();
        suspended.spec.suspend = true;
        let p = Pipeline::new(&suspended).expect("pipeline");
        let objects = runner_objects(&p, &RunnerDefaults::default(), None, None).expect("objects");
        let roles: Vec<(Role, i32)> = objects
            .deployments
            .iter()
            .map(|d| (d.role, d.replicas))
            .collect();
        assert_eq!(roles, [(Role::Ingest, 0), (Role::Sink, 0)]);
    }

    #[test]
    fn the_autoscaled_replicas_replace_sink_replicas_unless_suspended() {
        let mut sp = fixtures::seed();
        let sink_replicas = |sp: &millrace_api::StreamPipeline| {
            let p = Pipeline::new(sp).expect("pipeline");
            let objects =
                runner_objects(&p, &RunnerDefaults::default(), Some(4), None).expect("objects");
            let sink = &objects.deployments[1];
            let ingest = &objects.deployments[0];
            assert_eq!(
                sink.deployment.spec.as_ref().and_then(|s| s.replicas),
                Some(sink.replicas)
            );
            (ingest.replicas, sink.replicas)
        };
        assert_eq!(sink_replicas(&sp), (sp.spec.runner.ingest_replicas, 4));
        sp.spec.suspend = true;
        assert_eq!(sink_replicas(&sp), (0, 0));
    }
}
