//! `NAME-ingest` and `NAME-sink`: the runner's two roles, as the runner
//! contract (`docs/runner-contract.md`) describes their Pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretEnvSource, SecretKeySelector,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use millrace_api::{StreamPipelineSpec, ports};

use super::config_map::config_hash;
use super::{CONFIG_HASH_ANNOTATION, GENERATION_ANNOTATION, Pipeline, SECRETS_VERSION_ANNOTATION};
use super::{push_tls, push_tokens};

pub const PIPELINE_DIR: &str = "/etc/millrace";
pub const PIPELINE_FILE: &str = "/etc/millrace/pipeline.yaml";
pub const RUNNER_UID: i64 = 65532;

/// A runner container's resources when `spec.runner.resources` is unset:
/// a request, so the scheduler counts the runner and the kubelet does not
/// evict it first (BestEffort), and a memory limit with room above what
/// the runner was measured to use (every role's peak RSS at most 59 MiB
/// at full rate, bench/REPORT-sink-memory.md). No CPU limit: throttling
/// would only slow a sink that Cassandra already paces.
pub fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", "100m"), ("memory", "64Mi")]),
        limits: quantities(&[("memory", "256Mi")]),
        ..ResourceRequirements::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Sink,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Ingest, Role::Sink];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Sink => "sink",
        }
    }
}

/// Replicas for a role: none while suspended, and no ingest without sources.
pub fn replicas(spec: &StreamPipelineSpec, role: Role) -> i32 {
    if spec.suspend {
        return 0;
    }
    match role {
        Role::Ingest if spec.sources.is_empty() => 0,
        Role::Ingest => spec.runner.ingest_replicas,
        Role::Sink => spec.runner.sink_replicas,
    }
}

/// The image from the spec, else the operator's default.
pub fn image<'a>(spec: &'a StreamPipelineSpec, default_image: &'a str) -> &'a str {
    spec.runner.image.as_deref().unwrap_or(default_image)
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    secret_env_opt(name, secret, key, false)
}

/// An optional key leaves the variable unset when the Secret lacks it.
fn secret_env_opt(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The container's environment: downward API, listen address, and
/// credentials and keys only by `secretKeyRef`.
pub fn env(spec: &StreamPipelineSpec) -> Vec<EnvVar> {
    use millrace_api::cassandra_client::env as cassandra_names;
    use millrace_api::kafka_client::env as names;
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        EnvVar {
            name: ports::LISTEN_ENV.to_owned(),
            value: Some(format!("$(POD_IP):{}", ports::PUSH)),
            ..EnvVar::default()
        },
        EnvVar {
            name: ports::METRICS_LISTEN_ENV.to_owned(),
            value: Some(format!("$(POD_IP):{}", ports::METRICS)),
            ..EnvVar::default()
        },
    ];
    let kafka = &spec.kafka;
    if let Some(creds) = &kafka.credentials_secret_ref {
        // Without the default key, the runner takes the Secret's name
        // (`KafkaCredentials::username`), as Strimzi's Secrets need.
        env.push(secret_env_opt(
            names::KAFKA_USERNAME,
            &creds.name,
            &creds.username_key,
            creds.username_key_optional(),
        ));
        env.push(secret_env(
            names::KAFKA_PASSWORD,
            &creds.name,
            &creds.password_key,
        ));
    }
    if let Some(ca) = kafka.ca_ref() {
        env.push(secret_env(names::KAFKA_CA_PEM, &ca.name, &ca.key));
    }
    if let Some(cert) = kafka.client_cert_ref() {
        env.push(secret_env(
            names::KAFKA_CLIENT_CERT_PEM,
            &cert.name,
            &cert.cert_key,
        ));
        env.push(secret_env(
            names::KAFKA_CLIENT_KEY_PEM,
            &cert.name,
            &cert.key_key,
        ));
    }
    if let Some(creds) = spec
        .avro_registry()
        .and_then(|r| r.credentials_secret_ref.as_ref())
    {
        use millrace_api::avro::env as registry;
        env.push(secret_env(
            registry::SCHEMA_REGISTRY_USERNAME,
            &creds.name,
            &creds.username_key,
        ));
        env.push(secret_env(
            registry::SCHEMA_REGISTRY_PASSWORD,
            &creds.name,
            &creds.password_key,
        ));
    }
    if let Some(tls) = spec.avro_registry().and_then(|r| r.tls.as_ref()) {
        let ca = &tls.ca_secret_ref;
        env.push(secret_env(
            millrace_api::avro::env::SCHEMA_REGISTRY_CA_PEM,
            &ca.name,
            &ca.key,
        ));
    }
    if let Some(creds) = &spec.cassandra.credentials_secret_ref {
        env.push(secret_env(
            cassandra_names::CASSANDRA_USERNAME,
            &creds.name,
            &creds.username_key,
        ));
        env.push(secret_env(
            cassandra_names::CASSANDRA_PASSWORD,
            &creds.name,
            &creds.password_key,
        ));
    }
    if let Some(tls) = &spec.cassandra.tls {
        let ca = &tls.ca_secret_ref;
        env.push(secret_env(
            cassandra_names::CASSANDRA_CA_PEM,
            &ca.name,
            &ca.key,
        ));
        if let Some(cert) = &tls.client_cert_secret_ref {
            env.push(secret_env(
                cassandra_names::CASSANDRA_CLIENT_CERT_PEM,
                &cert.name,
                &cert.cert_key,
            ));
            env.push(secret_env(
                cassandra_names::CASSANDRA_CLIENT_KEY_PEM,
                &cert.name,
                &cert.key_key,
            ));
        }
    }
    env
}

/// Pull headers from Secrets (`headersFromSecret`): every key of the Secret
/// becomes `MILLRACE_PULL_HEADER_<SOURCE>_<key>`, which the runner sends as
/// the header `<key>` for that source. Only the ingest role pulls.
pub fn env_from(spec: &StreamPipelineSpec, role: Role) -> Option<Vec<EnvFromSource>> {
    if role != Role::Ingest {
        return None;
    }
    let from: Vec<EnvFromSource> = spec
        .sources
        .iter()
        .filter_map(|s| {
            let secret = s.http_pull.as_ref()?.headers_from_secret.as_ref()?;
            Some(EnvFromSource {
                prefix: Some(format!(
                    "MILLRACE_PULL_HEADER_{}_",
                    s.name.to_uppercase().replace('-', "_")
                )),
                secret_ref: Some(SecretEnvSource {
                    name: secret.name.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            })
        })
        .collect();
    (!from.is_empty()).then_some(from)
}

/// The metrics port on every runner; the push port only on an ingest
/// runner that has a push source, which alone listens there.
fn container_ports(spec: &StreamPipelineSpec, role: Role) -> Vec<ContainerPort> {
    let port = |name: &str, number: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    };
    let mut out = vec![port(ports::METRICS_NAME, ports::METRICS)];
    if role == Role::Ingest && spec.sources.iter().any(|s| s.http_push.is_some()) {
        out.push(port(ports::PUSH_NAME, ports::PUSH));
    }
    out
}

fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ports::METRICS_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

/// The operator's defaults for every runner: the image (when the spec has
/// none) and extra annotations for the Pod template (`--runner-pod-annotation`).
#[derive(Clone, Debug, Default)]
pub struct RunnerDefaults {
    pub image: String,
    pub pod_annotations: BTreeMap<String, String>,
    pub network_policy: super::network_policy::NetworkPolicyDefaults,
}

/// `secrets_version`: [`super::secrets_version`] of the Secrets the runner
/// reads, as observed.
pub fn deployment(
    p: &Pipeline<'_>,
    role: Role,
    defaults: &RunnerDefaults,
    secrets_version: Option<&str>,
) -> Deployment {
    let default_image = defaults.image.as_str();
    let spec = &p.sp.spec;
    let labels = p.labels(Some(role.as_str()));
    let selector: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| *k != "app.kubernetes.io/managed-by")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Only the ingest runner serves pushes, so only it sees the tokens and
    // the push endpoint's TLS key.
    let (token_volumes, token_mounts) = if role == Role::Ingest {
        let (mut volumes, mut mounts) = push_tokens::token_mounts(spec, &p.name);
        let (tls_volumes, tls_mounts) = push_tls::tls_mounts(spec);
        volumes.extend(tls_volumes);
        mounts.extend(tls_mounts);
        (volumes, mounts)
    } else {
        (Vec::new(), Vec::new())
    };
    let container = Container {
        name: "runner".to_owned(),
        image: Some(image(spec, default_image).to_owned()),
        image_pull_policy: spec.runner.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec![
            role.as_str().to_owned(),
            "--pipeline".to_owned(),
            PIPELINE_FILE.to_owned(),
        ]),
        env: Some({
            let mut env = env(spec);
            // A replay asked for by annotation runs in the sink; a new
            // token rolls the sink out with it.
            if role == Role::Sink
                && let Ok(Some(token)) = millrace_api::replay::requested_token(
                    p.sp.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(millrace_api::REPLAY_ANNOTATION))
                        .map(String::as_str),
                )
            {
                env.push(EnvVar {
                    name: millrace_api::REPLAY_TOKEN_ENV.to_owned(),
                    value: Some(token.to_owned()),
                    ..EnvVar::default()
                });
            }
            env
        }),
        env_from: env_from(spec, role),
        ports: Some(container_ports(spec, role)),
        readiness_probe: Some(http_probe("/readyz", 2, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        resources: Some(
            spec.runner
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUNNER_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "pipeline".to_owned(),
                mount_path: PIPELINE_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            })
            .chain(token_mounts)
            .collect(),
        ),
        ..Container::default()
    };
    let mut metadata = p.meta(p.deployment_name(role), Some(role.as_str()));
    metadata.annotations = Some(BTreeMap::from([(
        GENERATION_ANNOTATION.to_owned(),
        p.generation.to_string(),
    )]));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas(spec, role)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some({
                        let mut annotations = defaults.pod_annotations.clone();
                        annotations
                            .insert(CONFIG_HASH_ANNOTATION.to_owned(), config_hash(&p.sp.spec));
                        if let Some(version) = secrets_version {
                            annotations
                                .insert(SECRETS_VERSION_ANNOTATION.to_owned(), version.to_owned());
                        }
                        annotations
                    }),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // A runner that does not pull has no identity of its
                    // own ([`super::runner::RunnerIdentity`]): the
                    // namespace's default, with no token mounted.
                    service_account_name: p.pulls().then(|| p.runner_name()),
                    // Only a pulling ingest uses the API (its Lease); every
                    // other runner Pod gets no token to lose.
                    automount_service_account_token: Some(
                        role == Role::Ingest && spec.sources.iter().any(|s| s.http_pull.is_some()),
                    ),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUNNER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    volumes: Some(
                        std::iter::once(Volume {
                            name: "pipeline".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: p.config_map_name(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        })
                        .chain(token_volumes)
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use millrace_api::CassandraCredentials;

    fn container(d: &Deployment) -> &Container {
        &d.spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod")
            .containers[0]
    }

    #[test]
    fn a_runner_has_a_request_and_a_memory_limit_unless_the_spec_sets_its_own() {
        let resources = |sp: &millrace_api::StreamPipeline| {
            let p = Pipeline::new(sp).expect("pipeline");
            container(&deployment(
                &p,
                Role::Sink,
                &RunnerDefaults::default(),
                None,
            ))
            .resources
            .clone()
        };
        let mut sp = fixtures::seed();
        let unset = resources(&sp).expect("resources");
        let get = |m: &Option<BTreeMap<String, Quantity>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
        };
        assert_eq!(get(&unset.requests, "cpu").as_deref(), Some("100m"));
        assert_eq!(get(&unset.requests, "memory").as_deref(), Some("64Mi"));
        assert_eq!(get(&unset.limits, "memory").as_deref(), Some("256Mi"));
        assert_eq!(get(&unset.limits, "cpu"), None, "no CPU limit");

        let own: ResourceRequirements = serde_json::from_value(serde_json::json!({
            "limits": {"memory": "1Gi"},
        }))
        .expect("resources");
        sp.spec.runner.resources = Some(own.clone());
        assert_eq!(resources(&sp), Some(own), "the spec's own, as given");
    }

    #[test]
    fn only_a_pulling_ingest_gets_a_service_account_token() {
        let automount = |sp: &millrace_api::StreamPipeline, role| {
            let p = Pipeline::new(sp).expect("pipeline");
            deployment(&p, role, &RunnerDefaults::default(), None)
                .spec
                .and_then(|s| s.template.spec)
                .and_then(|p| p.automount_service_account_token)
        };
        let mut sp = fixtures::seed();
        assert_eq!(automount(&sp, Role::Sink), Some(false));
        assert_eq!(
            automount(&sp, Role::Ingest),
            Some(false),
            "generator and push"
        );
        sp.spec.sources.push(
            serde_json::from_value(serde_json::json!({
                "name": "api",
                "httpPull": {"url": "https://example.org/api", "schedule": "*/5 * * * *"},
            }))
            .expect("source"),
        );
        assert_eq!(automount(&sp, Role::Ingest), Some(true));
        assert_eq!(automount(&sp, Role::Sink), Some(false));
    }

    #[test]
    fn only_an_ingest_with_a_push_source_opens_the_push_port() {
        let names = |sp: &millrace_api::StreamPipeline, role| -> Vec<(String, i32)> {
            let p = Pipeline::new(sp).expect("pipeline");
            let pod = deployment(&p, role, &RunnerDefaults::default(), None)
                .spec
                .and_then(|s| s.template.spec)
                .expect("pod");
            let c = &pod.containers[0];
            for probe in [&c.readiness_probe, &c.liveness_probe] {
                let port = &probe
                    .as_ref()
                    .and_then(|p| p.http_get.as_ref())
                    .expect("probe")
                    .port;
                assert_eq!(port, &IntOrString::String("metrics".into()));
            }
            c.ports
                .iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                .collect()
        };
        let mut sp = fixtures::seed();
        assert!(sp.spec.sources.iter().any(|s| s.http_push.is_some()));
        let metrics = ("metrics".to_owned(), 9090);
        assert_eq!(
            names(&sp, Role::Ingest),
            [metrics.clone(), ("push".to_owned(), 8080)]
        );
        assert_eq!(names(&sp, Role::Sink), std::slice::from_ref(&metrics));
        sp.spec.sources.retain(|s| s.http_push.is_none());
        assert!(!sp.spec.sources.is_empty());
        assert_eq!(names(&sp, Role::Ingest), [metrics]);
    }

    #[test]
    fn push_tls_is_mounted_into_the_ingest_pod_only_and_probes_stay_plain_http() {
        let mut sp = fixtures::seed();
        sp.spec.runner.push_tls = Some(
            serde_json::from_value(serde_json::json!({
                "certificateSecretRef": {"name": "push-cert"},
                "clientCaSecretRef": {"name": "clients"}
            }))
            .expect("pushTls"),
        );
        let p = Pipeline::new(&sp).expect("pipeline");
        let pod = |role| {
            deployment(&p, role, &RunnerDefaults::default(), None)
                .spec
                .and_then(|s| s.template.spec)
                .expect("pod")
        };
        let ingest = pod(Role::Ingest);
        let c = &ingest.containers[0];
        let mounts: Vec<(&str, &str)> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.name.as_str(), m.mount_path.as_str()))
            .collect();
        assert!(mounts.contains(&(
            "push-tls-cert",
            "/var/run/secrets/millrace.io/push-tls/cert"
        )));
        assert!(mounts.contains(&(
            "push-tls-client-ca",
            "/var/run/secrets/millrace.io/push-tls/client-ca"
        )));
        let volumes: Vec<(&str, Option<&str>)> = ingest
            .volumes
            .iter()
            .flatten()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
                )
            })
            .collect();
        assert!(volumes.contains(&("push-tls-cert", Some("push-cert"))));
        assert!(volumes.contains(&("push-tls-client-ca", Some("clients"))));
        // The runner's default directory is where they are mounted: no
        // variable needed, none set.
        assert!(
            c.env
                .iter()
                .flatten()
                .all(|e| e.name != millrace_api::push_auth::TLS_DIR_ENV)
        );
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let get = probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .expect("probe");
            assert_eq!(get.port, IntOrString::String("metrics".into()));
            assert_eq!(
                get.scheme, None,
                "probes stay plain HTTP on the metrics port"
            );
        }

        let sink = pod(Role::Sink);
        assert!(
            sink.volumes
                .iter()
                .flatten()
                .all(|v| !v.name.starts_with("push-tls")),
            "the sink never sees the push endpoint's key"
        );
    }

    #[test]
    fn the_sink_pod_follows_the_runner_contract() {
        let mut sp = fixtures::seed();
        sp.spec.cassandra.credentials_secret_ref = Some(CassandraCredentials {
            name: "cassandra-creds".into(),
            username_key: "username".into(),
            password_key: "password".into(),
        });
        sp.spec.runner.sink_replicas = 2;
        let p = Pipeline::new(&sp).expect("pipeline");
        let defaults = RunnerDefaults {
            image: "ghcr.io/millrace-io/millrace-runner:0.1.0".into(),
            pod_annotations: BTreeMap::from([(
                "millrace.io/node-runtime".to_owned(),
                "podman".to_owned(),
            )]),
            ..RunnerDefaults::default()
        };
        let d = deployment(&p, Role::Sink, &defaults, None);
        assert_eq!(d.metadata.name.as_deref(), Some("randomuser-sink"));
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let c = container(&d);
        assert_eq!(c.name, "runner");
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/millrace-io/millrace-runner:0.1.0")
        );
        assert_eq!(
            c.args.as_deref(),
            Some(&["sink".to_owned(), "--pipeline".into(), PIPELINE_FILE.into()][..])
        );
        let env = c.env.as_ref().expect("env");
        let password = env
            .iter()
            .find(|e| e.name == "MILLRACE_CASSANDRA_PASSWORD")
            .expect("password env");
        assert!(password.value.is_none(), "never a literal credential");
        let key_ref = password
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("secretKeyRef");
        assert_eq!(key_ref.name, "cassandra-creds");
        for (name, address) in [
            ("MILLRACE_LISTEN", "$(POD_IP):8080"),
            ("MILLRACE_METRICS_LISTEN", "$(POD_IP):9090"),
        ] {
            assert!(
                env.iter()
                    .any(|e| e.name == name && e.value.as_deref() == Some(address)),
                "{name}"
            );
        }
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.as_deref()),
            Some("/readyz")
        );
        let template = &spec.template;
        assert_eq!(
            template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .expect("annotations")[CONFIG_HASH_ANNOTATION],
            config_hash(&sp.spec)
        );
        assert_eq!(
            d.metadata.annotations.as_ref().expect("annotations")[GENERATION_ANNOTATION],
            "4"
        );
        let pod = template.spec.as_ref().expect("pod");
        assert_eq!(pod.service_account_name, None, "the seed does not pull");
        assert_eq!(
            pod.volumes.as_ref().expect("volumes")[0]
                .config_map
                .as_ref()
                .map(|c| c.name.as_str()),
            Some("randomuser-pipeline")
        );
    }

    #[test]
    fn the_schema_registry_login_and_ca_reach_the_runner_by_secret_key_ref() {
        let mut spec = fixtures::seed().spec;
        spec.sources.clear();
        spec.format = Some(
            serde_json::from_value(serde_json::json!({
                "type": "avro",
                "schemaRegistry": {
                    "url": "https://registry:8443/apis/ccompat/v7",
                    "credentialsSecretRef": {"name": "sr", "usernameKey": "user"},
                    "tls": {"caSecretRef": {"name": "sr-ca"}},
                },
            }))
            .expect("format"),
        );
        let refs: Vec<(String, String, String)> = env(&spec)
            .into_iter()
            .filter_map(|e| {
                let r = e.value_from?.secret_key_ref?;
                assert!(e.value.is_none());
                Some((e.name, r.name, r.key))
            })
            .collect();
        let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            refs,
            [
                row("MILLRACE_SCHEMA_REGISTRY_USERNAME", "sr", "user"),
                row("MILLRACE_SCHEMA_REGISTRY_PASSWORD", "sr", "password"),
                row("MILLRACE_SCHEMA_REGISTRY_CA_PEM", "sr-ca", "ca.crt"),
            ]
        );
        // The Secret joins those whose versions roll the Pods.
        assert!(crate::credentials::runner_secret_names(&spec).contains(&"sr"));
        assert!(crate::credentials::runner_secret_names(&spec).contains(&"sr-ca"));
        // A JSON pipeline reads no registry Secret, whatever else it says.
        if let Some(f) = spec.format.as_mut() {
            f.type_ = millrace_api::FormatType::Json;
        }
        assert!(!crate::credentials::runner_secret_names(&spec).contains(&"sr"));
        assert!(
            env(&spec)
                .iter()
                .all(|e| !e.name.contains("SCHEMA_REGISTRY"))
        );
    }

    #[test]
    fn kafka_tls_material_and_a_strimzi_login_reach_the_runner_by_secret_key_ref() {
        let mut spec = fixtures::seed().spec;
        spec.kafka = serde_json::from_value(serde_json::json!({
            "bootstrapServers": "my-cluster-kafka-bootstrap.kafka:9093",
            "topic": {"name": "users_created"},
            "tls": {
                "caSecretRef": {"name": "my-cluster-cluster-ca-cert"},
                "clientCertSecretRef": {"name": "app"},
            },
            "credentialsSecretRef": {"name": "app-user"},
        }))
        .expect("kafka");
        let refs: Vec<(String, String, String, Option<bool>)> = env(&spec)
            .into_iter()
            .filter_map(|e| {
                let r = e.value_from?.secret_key_ref?;
                assert!(e.value.is_none());
                Some((e.name, r.name, r.key, r.optional))
            })
            .collect();
        let row = |env: &str, secret: &str, key: &str, optional: bool| {
            (
                env.to_owned(),
                secret.to_owned(),
                key.to_owned(),
                Some(optional),
            )
        };
        assert_eq!(
            refs,
            [
                row("MILLRACE_KAFKA_USERNAME", "app-user", "username", true),
                row("MILLRACE_KAFKA_PASSWORD", "app-user", "password", false),
                row(
                    "MILLRACE_KAFKA_CA_PEM",
                    "my-cluster-cluster-ca-cert",
                    "ca.crt",
                    false
                ),
                row("MILLRACE_KAFKA_CLIENT_CERT_PEM", "app", "user.crt", false),
                row("MILLRACE_KAFKA_CLIENT_KEY_PEM", "app", "user.key", false),
            ]
        );
    }

    #[test]
    fn cassandra_tls_material_reaches_the_runner_by_secret_key_ref() {
        let mut spec = fixtures::seed().spec;
        spec.cassandra.tls = Some(
            serde_json::from_value(serde_json::json!({
                "caSecretRef": {"name": "cass-ca"},
                "clientCertSecretRef": {"name": "cass-client", "certKey": "tls.crt", "keyKey": "tls.key"},
            }))
            .expect("tls"),
        );
        let refs: Vec<(String, String, String)> = env(&spec)
            .into_iter()
            .filter_map(|e| {
                let r = e.value_from?.secret_key_ref?;
                assert!(e.value.is_none());
                Some((e.name, r.name, r.key))
            })
            .collect();
        let row = |env: &str, secret: &str, key: &str| {
            (env.to_owned(), secret.to_owned(), key.to_owned())
        };
        assert_eq!(
            refs,
            [
                row("MILLRACE_CASSANDRA_CA_PEM", "cass-ca", "ca.crt"),
                row(
                    "MILLRACE_CASSANDRA_CLIENT_CERT_PEM",
                    "cass-client",
                    "tls.crt"
                ),
                row(
                    "MILLRACE_CASSANDRA_CLIENT_KEY_PEM",
                    "cass-client",
                    "tls.key"
                ),
            ]
        );
    }

    #[test]
    fn suspend_and_a_pipeline_without_sources_scale_to_zero() {
        let mut sp = fixtures::seed();
        assert_eq!(replicas(&sp.spec, Role::Ingest), 1);
        sp.spec.sources.clear();
        assert_eq!(replicas(&sp.spec, Role::Ingest), 0);
        assert_eq!(replicas(&sp.spec, Role::Sink), 1);
        sp.spec.suspend = true;
        assert_eq!(replicas(&sp.spec, Role::Sink), 0);
    }

    #[test]
    fn the_spec_image_wins_over_the_operator_default() {
        let mut sp = fixtures::seed();
        sp.spec.runner.image = Some("localhost/millrace-runner:dev".into());
        let p = Pipeline::new(&sp).expect("pipeline");
        let defaults = RunnerDefaults {
            image: "default:1".into(),
            ..RunnerDefaults::default()
        };
        let d = deployment(&p, Role::Ingest, &defaults, None);
        assert_eq!(
            container(&d).image.as_deref(),
            Some("localhost/millrace-runner:dev")
        );
    }

    #[test]
    fn pull_headers_from_a_secret_reach_only_the_ingest_container() {
        let mut sp = fixtures::seed();
        let mut pull = millrace_api::HttpPullSource::new("https://api.example/users", "5m");
        pull.headers_from_secret = Some(millrace_api::SecretReference {
            name: "api-token".into(),
        });
        sp.spec.sources.push(millrace_api::SourceSpec {
            name: "random-user".into(),
            http_pull: Some(pull),
            http_push: None,
            generator: None,
        });
        let p = Pipeline::new(&sp).expect("pipeline");
        let ingest = deployment(&p, Role::Ingest, &RunnerDefaults::default(), None);
        let from = container(&ingest).env_from.clone().expect("envFrom");
        assert_eq!(from.len(), 1);
        assert_eq!(
            from[0].prefix.as_deref(),
            Some("MILLRACE_PULL_HEADER_RANDOM_USER_")
        );
        assert_eq!(
            from[0].secret_ref.as_ref().map(|s| s.name.as_str()),
            Some("api-token")
        );
        let sink = deployment(&p, Role::Sink, &RunnerDefaults::default(), None);
        assert!(container(&sink).env_from.is_none());
    }
}
