//! The path users take, on the real apiserver: `helm install` the chart, the
//! operator runs as a real container of our image (the node agent runs it
//! with podman), a StreamPipeline becomes Ready, runner containers write its
//! rows to Cassandra, no credential shows up anywhere it should not, and
//! `helm uninstall` leaves nothing behind.
//!
//! Needs the images `localhost/millrace-{operator,runner}:dev` (`images/build`;
//! `make test` builds them first).

mod operator_common;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, PostParams};
use millrace_api::StreamPipeline;
use millrace_testsupport::kube_helpers::{pod_ready, pods};
use millrace_testsupport::tools::{helm, podman, podman_ps};
use millrace_testsupport::{
    Deadline, TestNamespace, World, poll_until, unique_cql_name, unique_name,
};
use operator_common::{install_crd, pod_names, policy_selector};
use serde_json::json;

const RUNTIME: &str = "millrace\\.io/node-runtime=podman";

fn podman_containers() -> anyhow::Result<Vec<String>> {
    podman_ps("{{.Names}} {{.Image}}")
}

fn image_exists(image: &str) -> bool {
    podman()
        .args(["image", "exists", image])
        .status()
        .is_ok_and(|s| s.success())
}

/// The podman containers running a Pod's containers (named by the node
/// agent after the Pod's uid).
fn containers_of(pod: &Pod, running: &[String]) -> Vec<String> {
    let uid: String = pod
        .metadata
        .uid
        .clone()
        .unwrap_or_default()
        .chars()
        .take(13)
        .collect();
    running
        .iter()
        .filter(|c| c.starts_with(&format!("millrace-{uid}-")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn helm_install_runs_the_operator_and_runners_as_containers() -> anyhow::Result<()> {
    let world = World::discover()?;
    for image in [
        "localhost/millrace-operator:dev",
        "localhost/millrace-runner:dev",
    ] {
        anyhow::ensure!(
            image_exists(image),
            "{image} is not built: run images/build (make test does)"
        );
    }
    let client = world.kube_client().await?;
    install_crd(&client).await?;
    let system = TestNamespace::create(&client, "helm-sys").await?;
    let apps = TestNamespace::create(&client, "helm-apps").await?;
    let release = unique_name("millrace");
    let watch = format!("watchNamespace={}", apps.name);
    let started = std::time::Instant::now();
    helm(
        &world,
        &[
            "install",
            &release,
            "charts/millrace",
            "-n",
            &system.name,
            "--skip-crds",
            "--wait",
            "--timeout",
            "3m",
            "--set",
            "image.repository=localhost/millrace-operator,image.tag=dev,image.pullPolicy=Never",
            "--set",
            "runnerImage.repository=localhost/millrace-runner,runnerImage.tag=dev",
            "--set",
            &format!("podAnnotations.{RUNTIME}"),
            "--set",
            &format!("runnerPodAnnotations.{RUNTIME}"),
            "--set",
            &watch,
        ],
    )?;
    let operator_pods = pods(&system.api(), "app.kubernetes.io/name=millrace-operator").await?;
    let operator_pod = operator_pods
        .iter()
        .find(|p| pod_ready(p))
        .context("a Ready operator Pod")?;
    let running = podman_containers()?;
    assert!(
        !containers_of(operator_pod, &running).is_empty(),
        "the operator runs as a podman container: {running:?}"
    );
    println!("helm install → operator Ready in {:?}", started.elapsed());

    // The pipeline, with credentials from a Secret only.
    let password = world.cassandra_password().to_string();
    let secrets: Api<Secret> = apps.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "cassandra-creds" },
                "stringData": { "username": world.cassandra_username, "password": password },
            }))?,
        )
        .await?;
    let topic = unique_name("helm-users");
    let keyspace = unique_cql_name("helm");
    const RECORDS: i64 = 300;
    let sp: StreamPipeline = serde_json::from_value(json!({
        "apiVersion": "millrace.io/v1alpha1", "kind": "StreamPipeline",
        "metadata": { "name": "seed" },
        "spec": {
            "kafka": { "bootstrapServers": world.kafka_bootstrap, "topic": { "name": topic, "partitions": 2 } },
            "cassandra": {
                "contactPoints": world.cassandra_contact_points,
                "localDatacenter": world.cassandra_local_dc,
                "credentialsSecretRef": { "name": "cassandra-creds" },
                "keyspace": { "name": keyspace, "replication": { "class": "SimpleStrategy", "replicationFactor": 1 } },
                "table": {
                    "name": "created_users",
                    "columns": [
                        { "name": "id", "type": "uuid", "from": "/login/uuid" },
                        { "name": "first_name", "type": "text", "from": "/name/first" },
                        { "name": "email", "type": "text", "from": "/email" },
                        { "name": "registered_date", "type": "timestamp", "from": "/registered/date" },
                    ],
                    "partitionKey": ["id"],
                },
            },
            "sources": [{ "name": "synthetic", "generator": { "recordsPerSecond": 200, "limit": RECORDS } }],
        }
    }))?;
    let sps: Api<StreamPipeline> = apps.api();
    sps.create(&PostParams::default(), &sp).await?;
    poll_until("the pipeline to be Ready", Deadline::secs(180), || async {
        let sp = sps.get("seed").await?;
        let ready = sp
            .status
            .as_ref()
            .map(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .unwrap_or(false);
        Ok(ready.then_some(()))
    })
    .await?;
    println!("apply → Ready in {:?}", started.elapsed());

    let session = world.cassandra_session().await?;
    let count_query = format!("SELECT count(*) FROM {keyspace}.created_users");
    let rows = poll_until(
        "every generated record as a row",
        Deadline::secs(120),
        || async {
            let res = session
                .query_unpaged(count_query.as_str(), &[])
                .await?
                .into_rows_result()?;
            let (n,): (i64,) = res.single_row()?;
            Ok((n >= RECORDS).then_some(n))
        },
    )
    .await?;
    assert!(rows >= RECORDS);

    let runner_pods = pods(&apps.api(), "app.kubernetes.io/instance=seed").await?;
    let running = podman_containers()?;
    assert!(!runner_pods.is_empty());
    for p in &runner_pods {
        assert!(
            !containers_of(p, &running).is_empty(),
            "runner Pod {:?} runs as a container: {running:?}",
            p.metadata.name
        );
    }

    // The NetworkPolicies: the chart's for the operator, the operator's for
    // the pipeline's runner Pods, both admitted by the apiserver, each
    // selecting exactly the Pods it is for.
    let chart_policy = Api::<NetworkPolicy>::namespaced(client.clone(), &system.name)
        .get(&release)
        .await?;
    let of_operator = pods(&system.api(), &policy_selector(&chart_policy)).await?;
    assert_eq!(
        pod_names(&of_operator),
        pod_names(&operator_pods),
        "the chart's NetworkPolicy"
    );
    let runner_policy = poll_until(
        "the operator to make the runner's NetworkPolicy",
        Deadline::secs(30),
        || async {
            Ok(Api::<NetworkPolicy>::namespaced(client.clone(), &apps.name)
                .get_opt("seed-runner")
                .await?)
        },
    )
    .await?;
    let of_runner = pods(&apps.api(), &policy_selector(&runner_policy)).await?;
    assert_eq!(
        pod_names(&of_runner),
        pod_names(&runner_pods),
        "the runner's NetworkPolicy"
    );
    println!(
        "NetworkPolicies: {} selects {:?}; seed-runner selects {:?}",
        chart_policy.metadata.name.unwrap_or_default(),
        pod_names(&of_operator),
        pod_names(&of_runner)
    );

    // The password is nowhere but in its Secret.
    let mut seen = Vec::new();
    for ns in [&system.name, &apps.name] {
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        seen.push((
            "events",
            serde_json::to_string(&events.list(&ListParams::default()).await?.items)?,
        ));
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        seen.push((
            "configmaps",
            serde_json::to_string(&cms.list(&ListParams::default()).await?.items)?,
        ));
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        seen.push((
            "deployments",
            serde_json::to_string(&deployments.list(&ListParams::default()).await?.items)?,
        ));
    }
    seen.push((
        "status",
        serde_json::to_string(&sps.get("seed").await?.status)?,
    ));
    if let Some(dir) = world.var("MILLRACE_NODE_LOGS") {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{}_", apps.name))
                || name.starts_with(&format!("{}_", system.name))
            {
                seen.push((
                    "container log",
                    std::fs::read_to_string(entry.path()).unwrap_or_default(),
                ));
            }
        }
    }
    for (what, text) in &seen {
        assert!(
            !text.contains(&password),
            "the Cassandra password appears in {what}"
        );
    }

    // Delete the pipeline (its finalizer needs the operator), then uninstall.
    sps.delete("seed", &Default::default()).await?;
    poll_until("the pipeline to be gone", Deadline::secs(60), || async {
        Ok(sps.get_opt("seed").await?.is_none().then_some(()))
    })
    .await?;
    helm(
        &world,
        &[
            "uninstall",
            &release,
            "-n",
            &system.name,
            "--wait",
            "--timeout",
            "2m",
        ],
    )?;
    // The operator Pod is terminated gracefully after the Deployment goes.
    let system_pods: Api<Pod> = system.api();
    poll_until(
        "the operator Pods to be gone after helm uninstall",
        Deadline::secs(60),
        || async {
            Ok(
                pods(&system_pods, "app.kubernetes.io/name=millrace-operator")
                    .await?
                    .is_empty()
                    .then_some(()),
            )
        },
    )
    .await?;
    let deployments: Api<Deployment> = system.api();
    assert!(
        deployments
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "helm uninstall left Deployments"
    );

    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await?;
    apps.cleanup().await?;
    system.cleanup().await
}
