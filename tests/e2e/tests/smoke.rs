//! The test world is real: each test here talks to the real apiserver,
//! controller-manager, node agent, Kafka and Cassandra started by
//! `tests/env/up`. Nothing is mocked.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use millrace_testsupport::kube_helpers::{pod_ip, pod_ready, pods, restart_count};
use millrace_testsupport::tools::{http_get, podman, podman_ps};
use millrace_testsupport::{
    Deadline, TestNamespace, World, poll_until, unique_cql_name, unique_name,
};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

fn world() -> World {
    World::discover().expect("the test world (run tests/env/up)")
}

#[tokio::test]
async fn apiserver_stores_namespaces_and_configmaps() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-cm").await?;
    let got = Api::<Namespace>::all(client.clone()).get(&ns.name).await?;
    assert_eq!(got.metadata.name.as_deref(), Some(ns.name.as_str()));

    let cms: Api<ConfigMap> = ns.api();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "greeting" }, "data": { "hello": "wörld" }
    }))?;
    cms.create(&PostParams::default(), &cm).await?;
    let read = cms.get("greeting").await?;
    assert_eq!(
        read.data
            .unwrap_or_default()
            .get("hello")
            .map(String::as_str),
        Some("wörld")
    );
    ns.cleanup().await
}

#[tokio::test]
async fn controller_manager_garbage_collects_dependents() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-gc").await?;
    let cms: Api<ConfigMap> = ns.api();
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "owner" } }))?,
        )
        .await?;
    let dependent: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "dependent", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
        }]}
    }))?;
    cms.create(&PostParams::default(), &dependent).await?;
    cms.delete("owner", &DeleteParams::background()).await?;
    poll_until(
        "the garbage collector to delete the dependent",
        Deadline::secs(60),
        || async { Ok(cms.get_opt("dependent").await?.is_none().then_some(())) },
    )
    .await?;
    ns.cleanup().await
}

/// A Deployment's Pod runs as a process through the node agent with the
/// environment, Secret, ConfigMap volume and user it asked for, becomes
/// Ready, and is restarted when it dies.
#[tokio::test]
async fn deployment_pods_run_on_the_node_agent_and_restart() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-pod").await?;
    create_creds_and_settings(&ns, "mode=test\n").await?;
    let deployments: Api<Deployment> = ns.api();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "testpod" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "testpod" } },
            "template": {
                "metadata": { "labels": { "app": "testpod" } },
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
                    "containers": [{
                        "name": "main",
                        "image": "localhost/millrace-testpod:dev",
                        "env": [
                            { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                            { "name": "PORT", "value": "8080" },
                            { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                        ],
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 1 },
                        "volumeMounts": [{ "name": "settings", "mountPath": "/etc/testpod", "readOnly": true }],
                        "securityContext": {
                            "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                    "volumes": [{ "name": "settings", "configMap": { "name": "settings" } }],
                }
            }
        }
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;

    let pod_api: Api<Pod> = ns.api();
    let ready_pod = |min_restarts: i32| {
        let pod_api = pod_api.clone();
        async move {
            poll_until(
                "the testpod Pod to be Ready",
                Deadline::secs(90),
                || async {
                    let ps = pods(&pod_api, "app=testpod").await?;
                    Ok(ps
                        .into_iter()
                        .find(|p| pod_ready(p) && restart_count(p) >= min_restarts))
                },
            )
            .await
        }
    };
    let pod = ready_pod(0).await?;
    let ip = pod_ip(&pod).context("pod has an IP")?;
    assert!(
        ip.starts_with("127.10."),
        "pods get their own loopback address, got {ip}"
    );

    let get = |path: &str| {
        let url = format!("{ip}:8080");
        let path = path.to_string();
        async move { http_get(&url, &path).await }
    };
    assert_eq!(get("/env/PASSWORD").await?, "from-a-secret");
    assert_eq!(
        get("/file?path=/etc/testpod/app.conf").await?,
        "mode=test\n"
    );
    assert_eq!(get("/uid").await?, "65532", "runs as the Pod's runAsUser");

    // The container dies; the node agent restarts it and counts it.
    let _ = get("/exit/3").await;
    let restarted = ready_pod(1).await?;
    assert_eq!(
        restarted.metadata.uid, pod.metadata.uid,
        "same Pod, restarted container"
    );
    assert!(restart_count(&restarted) >= 1);

    // Deleting the Deployment stops the process and removes the Pod.
    deployments
        .delete("testpod", &DeleteParams::foreground())
        .await?;
    poll_until("the Pod to be gone", Deadline::secs(60), || async {
        Ok(pods(&pod_api, "app=testpod")
            .await?
            .is_empty()
            .then_some(()))
    })
    .await?;
    assert!(
        http_get(&format!("{ip}:8080"), "/healthz").await.is_err(),
        "the process has stopped"
    );
    ns.cleanup().await
}

/// A Pod using what the process-mode agent cannot do is not started, and
/// says why in its status.
#[tokio::test]
async fn unsupported_pod_features_are_reported() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-unsup").await?;
    // Baseline instead of restricted, so the hostPath volume passes admission.
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "privileged" } } })),
        )
        .await?;
    let pod_api: Api<Pod> = ns.api();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "hostpath" },
        "spec": {
            "containers": [{ "name": "main", "image": "millrace-testpod",
                "volumeMounts": [{ "name": "host", "mountPath": "/host" }] }],
            "volumes": [{ "name": "host", "hostPath": { "path": "/" } }],
        }
    }))?;
    pod_api.create(&PostParams::default(), &pod).await?;
    let message = poll_until(
        "the Pod to report Unsupported",
        Deadline::secs(60),
        || async {
            let p = pod_api.get("hostpath").await?;
            let cond = p.status.and_then(|s| s.conditions).and_then(|cs| {
                cs.into_iter()
                    .find(|c| c.type_ == "Ready" && c.reason.as_deref() == Some("Unsupported"))
            });
            Ok(cond.and_then(|c| c.message))
        },
    )
    .await?;
    assert!(message.contains("hostPath"), "{message}");
    ns.cleanup().await
}

#[tokio::test]
async fn kafka_carries_ten_thousand_records() -> anyhow::Result<()> {
    let world = world();
    let topic = unique_name("smoke");
    let admin: AdminClient<DefaultClientContext> = world.kafka_config().create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    const N: usize = 10_000;
    let producer: FutureProducer = world
        .kafka_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let sends = (0..N).map(|i| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            let key = format!("k{}", i % 97);
            let payload = json!({ "n": i }).to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce {i}: {e}"))
        }
    });
    futures::future::try_join_all(sends).await?;

    let consumer: StreamConsumer = world
        .kafka_config()
        .set("group.id", unique_name("smoke-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut seen = vec![false; N];
    let mut count = 0;
    let deadline = Deadline::secs(120);
    while count < N {
        let msg = tokio::time::timeout(deadline.remaining(), consumer.recv())
            .await
            .with_context(|| format!("only {count} of {N} records consumed"))??;
        let v: serde_json::Value = serde_json::from_slice(msg.payload().unwrap_or_default())?;
        let n = v["n"].as_u64().context("record has n")? as usize;
        if !std::mem::replace(&mut seen[n], true) {
            count += 1;
        }
    }
    assert!(seen.iter().all(|s| *s));
    admin.delete_topics(&[&topic], &opts).await?;
    Ok(())
}

#[tokio::test]
async fn cassandra_stores_rows_behind_a_password() -> anyhow::Result<()> {
    let world = world();
    let session = world.cassandra_session().await?;
    let ks = unique_cql_name("smoke");
    session
        .query_unpaged(
            format!("CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            &[],
        )
        .await?;
    session
        .query_unpaged(
            format!("CREATE TABLE {ks}.users (id uuid PRIMARY KEY, name text, age int)"),
            &[],
        )
        .await?;
    session.await_schema_agreement().await?;
    let insert = session
        .prepare(format!(
            "INSERT INTO {ks}.users (id, name, age) VALUES (?, ?, ?)"
        ))
        .await?;
    let mut ids = Vec::new();
    for (i, name) in ["Maja", "Tomás", "Ægir"].iter().enumerate() {
        let id = uuid::Uuid::new_v4();
        session
            .execute_unpaged(&insert, (id, name.to_string(), i as i32 + 30))
            .await?;
        ids.push((id, name.to_string()));
    }
    let rows = session
        .query_unpaged(format!("SELECT id, name FROM {ks}.users"), &[])
        .await?
        .into_rows_result()?;
    let mut got = rows
        .rows::<(uuid::Uuid, String)>()?
        .collect::<Result<Vec<_>, _>>()?;
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every row written is read back");

    // A wrong password is refused by PasswordAuthenticator.
    let refused = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&world.cassandra_contact_points)
        .user(&world.cassandra_username, "not-the-password")
        .build()
        .await;
    assert!(refused.is_err(), "a wrong password must be refused");

    session
        .query_unpaged(format!("DROP KEYSPACE {ks}"), &[])
        .await?;
    Ok(())
}

/// The Secret `creds` (password `from-a-secret`) and ConfigMap `settings`
/// (`app.conf`) that the testpod Pods read.
async fn create_creds_and_settings(ns: &TestNamespace, app_conf: &str) -> anyhow::Result<()> {
    let secrets: Api<Secret> = ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "creds" }, "stringData": { "password": "from-a-secret" }
            }))?,
        )
        .await?;
    let cms: Api<ConfigMap> = ns.api();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "settings" }, "data": { "app.conf": app_conf }
        }))?,
    )
    .await?;
    Ok(())
}

/// With `millrace.io/node-runtime: podman`, the node agent runs the Pod's
/// real image with podman: same env, Secret, ConfigMap volume, user and
/// read-only root as the process mode, and the container goes when the Pod
/// does. Needs `localhost/millrace-testpod:dev` (`images/build testpod`;
/// `make test` builds it).
#[tokio::test]
async fn podman_mode_runs_the_pods_own_image() -> anyhow::Result<()> {
    let image = "localhost/millrace-testpod:dev";
    let exists = podman()
        .args(["image", "exists", image])
        .status()
        .is_ok_and(|s| s.success());
    anyhow::ensure!(
        exists,
        "{image} is not built: run `images/build testpod` (make test does)"
    );
    let client = world().kube_client().await?;
    let ns = TestNamespace::create(&client, "smoke-podman").await?;
    create_creds_and_settings(&ns, "mode=container\n").await?;
    let pod_api: Api<Pod> = ns.api();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "boxed", "labels": { "app": "boxed" },
                      "annotations": { "millrace.io/node-runtime": "podman" } },
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "securityContext": { "runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": { "type": "RuntimeDefault" } },
            "containers": [{
                "name": "main",
                "image": image,
                "env": [
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "PORT", "value": "8080" },
                    { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "password" } } },
                ],
                "readinessProbe": { "httpGet": { "path": "/healthz", "port": 8080 }, "periodSeconds": 1 },
                "volumeMounts": [{ "name": "settings", "mountPath": "/etc/testpod", "readOnly": true }],
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": { "drop": ["ALL"] },
                },
            }],
            "volumes": [{ "name": "settings", "configMap": { "name": "settings" } }],
        }
    }))?;
    pod_api.create(&PostParams::default(), &pod).await?;
    let ready = poll_until("the podman Pod to be Ready", Deadline::secs(90), || async {
        let p = pod_api.get("boxed").await?;
        Ok(pod_ready(&p).then_some(p))
    })
    .await?;
    let ip = pod_ip(&ready).context("pod IP")?;
    let addr = format!("{ip}:8080");
    assert_eq!(http_get(&addr, "/env/PASSWORD").await?, "from-a-secret");
    assert_eq!(
        http_get(&addr, "/file?path=/etc/testpod/app.conf").await?,
        "mode=container\n"
    );
    assert_eq!(http_get(&addr, "/uid").await?, "65532");
    // Only the image's own files are there, not the host's.
    assert!(std::path::Path::new("/etc/os-release").exists());
    assert!(
        http_get(&addr, "/file?path=/etc/os-release").await.is_err(),
        "the container sees the image, not the host"
    );

    let uid: String = ready
        .metadata
        .uid
        .clone()
        .unwrap_or_default()
        .chars()
        .take(13)
        .collect();
    let name = format!("millrace-{uid}-main");
    let ps = || podman_ps("{{.Names}}");
    assert!(
        ps()?.contains(&name),
        "a podman container {name} runs the Pod"
    );

    pod_api.delete("boxed", &DeleteParams::default()).await?;
    poll_until(
        "the Pod and its container to be gone",
        Deadline::secs(60),
        || async {
            let gone = pod_api.get_opt("boxed").await?.is_none() && !ps()?.contains(&name);
            Ok(gone.then_some(()))
        },
    )
    .await?;
    ns.cleanup().await
}
