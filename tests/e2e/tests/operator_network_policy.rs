//! The runner's NetworkPolicy on the real apiserver: the operator makes it
//! (admitted, so its shape is valid), its selector picks exactly the
//! pipeline's runner Pods, its push rule takes the spec's peers and its
//! metrics rule the monitoring namespace, and `enabled: false` removes it
//! while a NetworkPolicy of the same name that the operator did not make is
//! left alone. Whether traffic is really blocked only a network plugin that
//! enforces NetworkPolicies can show; the test world has none.

mod operator_common;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, PostParams};
use millrace_testsupport::kube_helpers::pods;
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
