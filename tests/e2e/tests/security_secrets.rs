//! A pipeline with Kafka over SASL/SCRAM and Cassandra behind a password,
//! both from Secrets, run end to end (operator, runner Pods through the node
//! agent, rows in the table) in a namespace that enforces the `restricted`
//! Pod Security Standard. Then:
//!
//! - no secret value appears in any log (operator, every container of the
//!   namespace, the node agent, the apiserver), Event, ConfigMap, the
//!   StreamPipeline, or a Deployment or Pod spec, and credentials reach the
//!   containers only by `secretKeyRef`;
//! - the runner's ServiceAccount may do exactly what its table says
//!   (`kubectl auth can-i --as=system:serviceaccount:NS:NAME-runner`);
//! - the runner Pods were admitted under `restricted` and are Ready, and the
//!   namespace does refuse a Pod that breaks the standard.

mod operator_common;

use std::process::Command;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use millrace_testsupport::kube_helpers::{pod_ready, pods};
use millrace_testsupport::{Deadline, TestNamespace, World, poll_until};
use operator_common::{Operator, Scenario};
use serde_json::json;

/// (verb, resource, allowed) for the runner's ServiceAccount in its own
/// namespace, for a pipeline `randomuser` with the pull source `api`: its
/// own Lease by name, creating a Lease (RBAC cannot limit create by name),
/// and nothing else.
const RUNNER_RIGHTS: &[(&str, &str, bool)] = &[
    (
        "get",
        "leases.coordination.k8s.io/randomuser-pull-api",
        true,
    ),
    (
        "update",
        "leases.coordination.k8s.io/randomuser-pull-api",
        true,
    ),
    ("create", "leases.coordination.k8s.io", true),
    ("get", "leases.coordination.k8s.io/another-lease", false),
    ("update", "leases.coordination.k8s.io/another-lease", false),
    ("get", "leases.coordination.k8s.io", false),
    ("list", "leases.coordination.k8s.io", false),
    ("watch", "leases.coordination.k8s.io", false),
    (
        "delete",
        "leases.coordination.k8s.io/randomuser-pull-api",
        false,
    ),
    (
        "patch",
        "leases.coordination.k8s.io/randomuser-pull-api",
        false,
    ),
    ("get", "secrets", false),
    ("get", "secrets/kafka-creds", false),
    ("list", "secrets", false),
    ("watch", "secrets", false),
    ("get", "configmaps", false),
    ("list", "pods", false),
    ("get", "pods", false),
    ("create", "pods", false),
    ("create", "pods/exec", false),
    ("get", "pods/log", false),
    ("delete", "pods", false),
    ("list", "streampipelines.millrace.io", false),
    ("patch", "streampipelines.millrace.io/status", false),
    ("patch", "deployments.apps", false),
    ("create", "serviceaccounts/token", false),
    ("create", "roles.rbac.authorization.k8s.io", false),
    ("create", "rolebindings.rbac.authorization.k8s.io", false),
    ("create", "events.events.k8s.io", false),
];

/// `kubectl auth can-i VERB RESOURCE --as=SA` in `ns` (or cluster-wide).
fn can_i(
    world: &World,
    who: &str,
    verb: &str,
    resource: &str,
    ns: Option<&str>,
) -> anyhow::Result<bool> {
    let kubeconfig = world.kubeconfig.clone().context("KUBECONFIG")?;
    let mut cmd = Command::new(world.tool("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i", verb, resource, "--as", who]);
    match ns {
        Some(ns) => cmd.args(["-n", ns]),
        None => cmd.arg("--all-namespaces"),
    };
    let out = cmd.output()?;
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    anyhow::ensure!(
        answer == "yes" || answer == "no",
        "can-i {verb} {resource}: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(answer == "yes")
}

#[tokio::test]
async fn secrets_never_leak_the_runner_has_least_privilege_and_pods_run_restricted()
-> anyhow::Result<()> {
    let s = Scenario::new("sec-secrets").await?;
    let sasl = s.kafka_sasl()?;
    s.create_credentials_secret("kafka-creds", &sasl.username, &sasl.password)
        .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sasl.use_in(&mut sp, "kafka-creds");
    // A pull source, so the ingest gets its Lease and a token: nothing
    // listens at its URL, and a failed pull changes nothing here.
    sp["spec"]["sources"]
        .as_array_mut()
        .context("sources")?
        .push(json!({"name": "api", "httpPull": {"url": "http://127.0.0.1:9/users", "schedule": "1h"}}));
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    // The runner Pods used both identities: rows are in the table.
    let session = s.world.cassandra_session().await?;
    let count = format!("SELECT count(*) FROM {}.created_users", s.keyspace);
    let rows = poll_until(
        "rows written by the runner Pods",
        Deadline::secs(90),
        || async {
            let (n,): (i64,) = session
                .query_unpaged(count.as_str(), &[])
                .await?
                .into_rows_result()?
                .single_row()?;
            Ok((n >= 20).then_some(n))
        },
    )
    .await?;
    println!("{rows} rows written over SASL/SCRAM and PasswordAuthenticator");

    // Pod Security: the namespace enforces `restricted`, the runner Pods
    // were admitted and are Ready, and a Pod that breaks it is refused.
    let ns = Api::<Namespace>::all(s.client.clone())
        .get(&s.ns.name)
        .await?;
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
    let runner_pods = pods(&s.ns.api(), &format!("app.kubernetes.io/instance={name}")).await?;
    assert!(
        runner_pods.len() >= 2,
        "ingest and sink Pods: {}",
        runner_pods.len()
    );
    for pod in &runner_pods {
        assert!(pod_ready(pod), "{:?} is not Ready", pod.metadata.name);
    }
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "localhost/millrace-runner:dev",
            "securityContext": {"privileged": true, "runAsUser": 0}}]},
    }))?;
    match s
        .ns
        .api::<Pod>()
        .create(&PostParams::default(), &privileged)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("violates PodSecurity \"restricted"),
                "{}",
                status.message
            );
            println!(
                "restricted namespace refuses a privileged Pod: {}",
                status.message
            );
        }
        other => panic!("a privileged Pod was not refused: {other:?}"),
    }

    // Credentials reach the containers only by secretKeyRef.
    for d in
        s.ns.api::<Deployment>()
            .list(&ListParams::default())
            .await?
    {
        let containers = d
            .spec
            .and_then(|s| s.template.spec)
            .map(|p| p.containers)
            .unwrap_or_default();
        for c in containers {
            for e in c.env.unwrap_or_default() {
                if e.name.contains("PASSWORD") || e.name.contains("USERNAME") {
                    assert!(e.value.is_none(), "{}: literal value", e.name);
                    assert!(
                        e.value_from
                            .as_ref()
                            .and_then(|v| v.secret_key_ref.as_ref())
                            .is_some(),
                        "{} is not from a secretKeyRef",
                        e.name
                    );
                }
            }
        }
    }

    // The runner's ServiceAccount: exactly its table.
    let who = format!("system:serviceaccount:{}:{name}-runner", s.ns.name);
    let mut wrong = Vec::new();
    for (verb, resource, allowed) in RUNNER_RIGHTS {
        let got = can_i(&s.world, &who, verb, resource, Some(&s.ns.name))?;
        println!(
            "runner {verb:>7} {resource:<40} {}",
            if got { "yes" } else { "no" }
        );
        if got != *allowed {
            wrong.push(format!("{verb} {resource}: expected {allowed}, got {got}"));
        }
    }
    let elsewhere = TestNamespace::create(&s.client, "sec-elsewhere").await?;
    for (verb, resource) in [("get", "leases.coordination.k8s.io"), ("get", "secrets")] {
        if can_i(&s.world, &who, verb, resource, Some(&elsewhere.name))? {
            wrong.push(format!("{verb} {resource} in another namespace"));
        }
    }
    for (verb, resource) in [
        ("list", "secrets"),
        ("get", "nodes"),
        ("list", "namespaces"),
    ] {
        if can_i(&s.world, &who, verb, resource, None)? {
            wrong.push(format!("{verb} {resource} cluster-wide"));
        }
    }
    elsewhere.cleanup().await?;
    assert!(
        wrong.is_empty(),
        "runner rights differ from the table:\n{}",
        wrong.join("\n")
    );

    // No secret value anywhere it could be read.
    let secrets = [
        ("the Kafka SASL password", sasl.password.as_str()),
        ("the Cassandra password", s.world.cassandra_password()),
    ];
    let seen = s.everything_visible(&op).await?;
    let mut leaks = Vec::new();
    for (what, text) in &seen {
        for (secret_name, secret) in secrets {
            if text.contains(secret) {
                leaks.push(format!("{secret_name} in {what}"));
            }
        }
    }
    let bytes: usize = seen.iter().map(|(_, t)| t.len()).sum();
    println!(
        "searched {} sources ({} KiB) for 2 secret values: {} found",
        seen.len(),
        bytes / 1024,
        leaks.len()
    );
    assert!(leaks.is_empty(), "secret values leaked: {leaks:?}");

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
