//! The runner's NetworkPolicy on the real apiserver: the operator makes it
//! (admitted, so its shape is valid), its selector picks exactly the
//! pipeline's runner Pods, its push rule takes the spec's peers and its
//! metrics rule the monitoring namespace, and `enabled: false` removes it
//! while a NetworkPolicy of the same name that the operator did not make is
//! left alone. Whether traffic is really blocked only a network plugin that
//! enforces NetworkPolicies can show: the test world has none, so the
//! second test, which shows it, runs on kind (`make test-kind`, where
//! kube-router enforces them) and is ignored here.

mod operator_common;

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use millrace_testsupport::kube_helpers::{HARNESS_POLICY, TestNamespace, pods};
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, pod_names, policy_selector};
use serde_json::json;

#[tokio::test]
async fn the_runner_network_policy_selects_its_pods_and_can_be_turned_off() -> anyhow::Result<()> {
    let s = Scenario::new("op-netpol").await?;
    let op = Operator::start(&s.world, &s.ns.name, &["--monitoring-namespace=monitoring"]).await?;
    let name = "netpol";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["runner"]["networkPolicy"] =
        json!({"pushFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]});
    s.apply(&sp).await?;
    s.wait_condition(name, "RunnerReady", "True", None, 180)
        .await?;

    let api = s.ns.api::<NetworkPolicy>();
    let policy_name = format!("{name}-runner");
    let policy = api.get(&policy_name).await?;
    let pod_api = s.ns.api::<Pod>();
    let runner_pods = pods(&pod_api, &format!("app.kubernetes.io/instance={name}")).await?;
    let selected = pods(&pod_api, &policy_selector(&policy)).await?;
    println!(
        "{policy_name} selects {:?} of the runner Pods {:?}",
        pod_names(&selected),
        pod_names(&runner_pods)
    );
    assert_eq!(pod_names(&selected), pod_names(&runner_pods));
    let roles: Vec<String> = selected
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get("app.kubernetes.io/component")
                .cloned()
        })
        .collect();
    assert!(
        roles.contains(&"ingest".into()) && roles.contains(&"sink".into()),
        "{roles:?}"
    );

    let spec = serde_json::to_value(policy.spec.as_ref())?;
    assert_eq!(
        spec["ingress"],
        json!([
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
             "ports": [{"port": "metrics", "protocol": "TCP"}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}],
             "ports": [{"port": "push", "protocol": "TCP"}]},
        ])
    );
    let egress_ports: Vec<i64> = spec["egress"][1]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    let kafka_port: i64 = s
        .world
        .kafka_bootstrap
        .rsplit_once(':')
        .map_or(0, |(_, p)| p.parse().unwrap_or(0));
    assert!(
        egress_ports.contains(&kafka_port),
        "{egress_ports:?} lacks Kafka's {kafka_port}"
    );
    println!("egress ports: {egress_ports:?}");

    // Turned off: the operator deletes the policy it made.
    s.merge(
        name,
        json!({"spec": {"runner": {"networkPolicy": {"enabled": false}}}}),
    )
    .await?;
    poll_until(
        "the NetworkPolicy to be deleted",
        Deadline::secs(60),
        || async { Ok(api.get_opt(&policy_name).await?.is_none().then_some(())) },
    )
    .await?;

    // One of the same name made by someone else is not the operator's to
    // delete.
    let theirs: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": policy_name},
        "spec": {"podSelector": {"matchLabels": {"app": "theirs"}}, "policyTypes": ["Ingress"]},
    }))?;
    api.create(&PostParams::default(), &theirs).await?;
    let reconciles = op.metric("millrace_operator_reconciles_total").await?;
    poll_until("two more reconciles", Deadline::secs(60), || async {
        let now = op.metric("millrace_operator_reconciles_total").await?;
        Ok((now >= reconciles + 2.0).then_some(()))
    })
    .await?;
    let still = api.get(&policy_name).await?;
    assert_eq!(
        policy_selector(&still),
        "app=theirs",
        "someone else's policy was changed"
    );
    api.delete(&policy_name, &DeleteParams::default()).await?;

    // Back on: made again.
    s.merge(
        name,
        json!({"spec": {"runner": {"networkPolicy": {"enabled": true}}}}),
    )
    .await?;
    poll_until(
        "the NetworkPolicy to be made again",
        Deadline::secs(60),
        || async {
            Ok(api.get_opt(&policy_name).await?.and_then(|p| {
                (policy_selector(&p) != "app=theirs" && !policy_selector(&p).is_empty())
                    .then_some(())
            }))
        },
    )
    .await?;
    drop(op);
    s.cleanup().await
}

/// A test Pod (`localhost/millrace-testpod:dev`) in `ns`, once Ready: its IP.
async fn test_pod(ns: &TestNamespace) -> anyhow::Result<String> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "client", "labels": {"app": "client"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main",
                "image": "localhost/millrace-testpod:dev",
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "PORT", "value": "8080"},
                ],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))?;
    let api = ns.api::<Pod>();
    api.create(&PostParams::default(), &pod).await?;
    let ready = poll_until(
        &format!("the test Pod in {} to be Ready", ns.name),
        Deadline::secs(120),
        || async {
            Ok(api
                .get_opt("client")
                .await?
                .filter(millrace_testsupport::kube_helpers::pod_ready))
        },
    )
    .await?;
    millrace_testsupport::kube_helpers::pod_ip(&ready).context("the test Pod has no IP")
}

/// What a TCP connection from the test Pod at `from` to `to` gives:
/// `connected`, `timed out` or an error (a refusal, say).
async fn connect_from(from: &str, to: &str) -> anyhow::Result<String> {
    let url = format!("http://{from}:8080/connect?to={to}");
    Ok(reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?
        .text()
        .await?)
}

/// The IP of a Ready runner Pod of pipeline `name` in role `component`.
async fn runner_ip(s: &Scenario, name: &str, component: &str) -> anyhow::Result<String> {
    let api = s.ns.api::<Pod>();
    let selector =
        format!("app.kubernetes.io/instance={name},app.kubernetes.io/component={component}");
    let pod = poll_until(
        &format!("a Ready {component} Pod"),
        Deadline::secs(120),
        || async {
            Ok(pods(&api, &selector)
                .await?
                .into_iter()
                .find(millrace_testsupport::kube_helpers::pod_ready))
        },
    )
    .await?;
    millrace_testsupport::kube_helpers::pod_ip(&pod).context("runner Pod IP")
}

/// The operator's NetworkPolicy alone, under a network plugin that enforces
/// it: the runner reaches Kafka (at a NodePort here) and Cassandra through
/// its egress rules (records become rows); the push port takes connections from the
/// namespace `pushFrom` names and from the `ipBlock` of this machine, and
/// drops them from any other namespace; the metrics port takes them from
/// the monitoring namespace only.
#[tokio::test]
#[ignore = "needs a network plugin that enforces NetworkPolicies: make test-kind runs it (tests/kind/e2e-tests)"]
async fn the_runner_network_policy_is_enforced() -> anyhow::Result<()> {
    let s = Scenario::new("op-netpol-enf").await?;
    // The operator's rules alone: the suite's allowance for this machine
    // goes.
    s.ns.api::<NetworkPolicy>()
        .delete(HARNESS_POLICY, &DeleteParams::default())
        .await
        .context(
            "a test namespace on a cluster that enforces NetworkPolicies has the harness policy",
        )?;
    let client_cidr = s.world_var("MILLRACE_TEST_CLIENT_CIDR")?;
    let monitoring = TestNamespace::create(&s.client, "op-netpol-mon").await?;
    let pushers = TestNamespace::create(&s.client, "op-netpol-web").await?;
    let others = TestNamespace::create(&s.client, "op-netpol-other").await?;
    Api::<Namespace>::all(s.client.clone())
        .patch(
            &pushers.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"millrace.io/push-client": s.ns.name}}})),
        )
        .await?;
    let op = Operator::start(
        &s.world,
        &s.ns.name,
        &[&format!("--monitoring-namespace={}", monitoring.name)],
    )
    .await?;

    let name = "enforced";
    let rows = 100;
    let mut sp = s.own_seed_pipeline(name, rows)?;
    let seed = s.seed_pipeline(name)?;
    let push_source = seed["spec"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|source| source.get("httpPush").is_some())
        .cloned()
        .context("examples/randomuser.yaml has a push source")?;
    sp["spec"]["sources"]
        .as_array_mut()
        .context("sources")?
        .push(push_source);
    sp["spec"]["runner"]["networkPolicy"] = json!({"pushFrom": [
        {"namespaceSelector": {"matchLabels": {"millrace.io/push-client": s.ns.name}}},
        {"ipBlock": {"cidr": client_cidr}},
    ]});
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 240).await?;
    let table = name.replace('-', "_");
    poll_until(
        &format!("{rows} rows, written through the runner's egress rules"),
        Deadline::secs(180),
        || async { Ok((s.row_count(&table).await? >= rows).then_some(())) },
    )
    .await?;

    // This machine pushes through the ipBlock peer.
    let user = millrace_testsupport::randomuser_page(1)
        .into_iter()
        .next()
        .context("a fixture user")?;
    let response = reqwest::Client::new()
        .post(s.current_push_url(name).await?)
        .bearer_auth(s.push_token(name).await?)
        .header("content-type", "application/json")
        .body(user.to_string())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .context("a push from this machine, which pushFrom's ipBlock admits")?;
    assert!(
        response.status().is_success(),
        "push: {}",
        response.status()
    );
    poll_until("the pushed record's row", Deadline::secs(60), || async {
        Ok((s.row_count(&table).await? > rows).then_some(()))
    })
    .await?;

    let ingest = runner_ip(&s, name, "ingest").await?;
    let sink = runner_ip(&s, name, "sink").await?;
    let from_pushers = test_pod(&pushers).await?;
    let from_others = test_pod(&others).await?;
    let from_monitoring = test_pod(&monitoring).await?;
    let push = format!("{ingest}:{}", millrace_api::ports::PUSH);
    let ingest_metrics = format!("{ingest}:{}", millrace_api::ports::METRICS);
    let sink_metrics = format!("{sink}:{}", millrace_api::ports::METRICS);
    let mut seen = Vec::new();
    for (from_ns, from, to, want) in [
        (&pushers.name, &from_pushers, &push, true),
        (&others.name, &from_others, &push, false),
        (&monitoring.name, &from_monitoring, &push, false),
        (&monitoring.name, &from_monitoring, &ingest_metrics, true),
        (&monitoring.name, &from_monitoring, &sink_metrics, true),
        (&pushers.name, &from_pushers, &sink_metrics, false),
        (&others.name, &from_others, &ingest_metrics, false),
    ] {
        let got = connect_from(from, to).await?;
        println!("{from_ns} -> {to}: {got}");
        seen.push((from_ns.clone(), to.clone(), got.clone(), want));
    }
    let wrong: Vec<_> = seen
        .iter()
        .filter(|(_, _, got, want)| (got == "connected") != *want)
        .collect();
    assert!(wrong.is_empty(), "not as the policy says: {wrong:?}");
    // kube-router rejects what a policy does not let through (a refusal;
    // other plugins drop it: a timeout). Each address refused is one that
    // another namespace's Pod reached above, so something listens there and
    // the refusal is the policy's.
    for (from_ns, to, got, _) in seen.iter().filter(|s| !s.3) {
        assert!(
            got == "timed out" || got.contains("Connection refused"),
            "{from_ns} -> {to}: {got}"
        );
        assert!(
            seen.iter().any(|s| &s.1 == to && s.2 == "connected"),
            "nothing reached {to}: {seen:?}"
        );
    }

    drop(op);
    for ns in [monitoring, pushers, others] {
        ns.cleanup().await?;
    }
    s.drop_own_topics(&[name]).await;
    s.cleanup().await
}
