//! The seed's pipeline, applied to the real apiserver with the operator
//! running: the topic, the table and the runner's objects appear as
//! declared, and the pipeline becomes Ready.

mod operator_common;

use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, RUNNER_IMAGE, SECRET, Scenario};

#[tokio::test]
async fn the_seed_pipeline_becomes_a_topic_a_table_and_a_running_runner() -> anyhow::Result<()> {
    let s = Scenario::new("op-seed").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";

    // Given the seed's pipeline, when it is applied...
    let applied = Instant::now();
    s.apply(&s.seed_pipeline(name)?).await?;

    // ...then the topic and the table become ready,
    s.wait_condition(name, "TopicReady", "True", Some("Reconciled"), 60)
        .await?;
    let topic_ready = applied.elapsed();
    s.wait_condition(name, "TableReady", "True", Some("Reconciled"), 60)
        .await?;
    let table_ready = applied.elapsed();

    // the topic has the declared partitions and config, and a dead-letter
    // topic beside it,
    let topic = s.kafka_topic(&s.topic).await?.expect("the topic exists");
    assert_eq!(topic.partitions, 3);
    assert_eq!(topic.replication_factor, 1);
    assert_eq!(
        topic.config.get("retention.ms").map(String::as_str),
        Some("604800000")
    );
    assert!(
        s.kafka_topic(&format!("{}.dlq", s.topic)).await?.is_some(),
        "the dead-letter topic exists"
    );

    // the table has the seed's columns with the declared types and key,
    let mut columns = s.table_columns("created_users").await?;
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    let got: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.cql_type.as_str(), c.kind.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("address", "text", "regular"),
            ("email", "text", "regular"),
            ("first_name", "text", "regular"),
            ("gender", "text", "regular"),
            ("id", "uuid", "partition_key"),
            ("last_name", "text", "regular"),
            ("phone", "text", "regular"),
            ("picture", "text", "regular"),
            ("post_code", "text", "regular"),
            ("registered_date", "timestamp", "regular"),
            ("username", "text", "regular"),
        ]
    );

    // the runner's objects follow the runner contract,
    let deployments: Api<Deployment> = s.ns.api();
    for role in ["ingest", "sink"] {
        let d = deployments.get(&format!("{name}-{role}")).await?;
        let owner = &d.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!(owner.kind, "StreamPipeline");
        assert_eq!(owner.name, name);
        assert!(
            d.metadata
                .managed_fields
                .iter()
                .flatten()
                .any(|m| m.manager.as_deref() == Some("millrace-operator")
                    && m.operation.as_deref() == Some("Apply")),
            "written by server-side apply as millrace-operator"
        );
        assert_eq!(
            d.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("millrace.io/pipeline-generation"))
                .map(String::as_str),
            Some("1"),
            "the Deployment says which generation it reflects"
        );
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(1));
        let template = spec.template;
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels["app.kubernetes.io/component"], role);
        assert_eq!(labels["app.kubernetes.io/instance"], name);
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.clone())
            .expect("annotations");
        let hash = &annotations["millrace.io/config-hash"];
        assert!(
            hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "the Pod template carries the digest of what the Pods run: {hash:?}"
        );
        let pod = template.spec.expect("pod spec");
        assert_eq!(
            pod.service_account_name, None,
            "the seed pulls nothing: its runner uses no API"
        );
        assert_eq!(pod.automount_service_account_token, Some(false), "{role}");
        let psc = pod.security_context.expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        let c = &pod.containers[0];
        assert_eq!(c.name, "runner");
        assert_eq!(c.image.as_deref(), Some(RUNNER_IMAGE));
        assert_eq!(
            c.args.clone().unwrap_or_default(),
            [role, "--pipeline", "/etc/millrace/pipeline.yaml"]
        );
        let env = c.env.clone().unwrap_or_default();
        for var in ["POD_NAME", "POD_NAMESPACE", "POD_IP"] {
            assert!(env.iter().any(|e| e.name == var), "{var} is set");
        }
        let password = env
            .iter()
            .find(|e| e.name == "MILLRACE_CASSANDRA_PASSWORD")
            .expect("the password env");
        assert!(password.value.is_none());
        assert_eq!(
            password
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|r| r.name.as_str()),
            Some(SECRET)
        );
        let sc = c
            .security_context
            .clone()
            .expect("container security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
            p.as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|h| h.path.clone())
        };
        assert_eq!(probe_path(&c.readiness_probe).as_deref(), Some("/readyz"));
        assert_eq!(probe_path(&c.liveness_probe).as_deref(), Some("/healthz"));
        // Metrics and health on their own port; the push port only where
        // pushes are served.
        let ports: Vec<(String, i32)> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
            .collect();
        let mounts: Vec<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.clone())
            .collect();
        let tokens_mount = "/var/run/secrets/millrace.io/push-tokens/events".to_owned();
        if role == "ingest" {
            assert_eq!(ports, [("metrics".into(), 9090), ("push".into(), 8080)]);
            assert!(mounts.contains(&tokens_mount), "{mounts:?}");
        } else {
            assert_eq!(ports, [("metrics".into(), 9090)]);
            assert!(!mounts.contains(&tokens_mount), "{mounts:?}");
        }
    }
    // The push source names no tokens Secret: the operator made one, owned
    // by the pipeline, with one random token.
    let token = s.push_token(name).await?;
    assert_eq!(token.len(), 64, "256 random bits, hex");
    let tokens =
        s.ns.api::<k8s_openapi::api::core::v1::Secret>()
            .get("randomuser-push-tokens")
            .await?;
    assert_eq!(
        tokens.metadata.owner_references.unwrap_or_default()[0].kind,
        "StreamPipeline"
    );
    let svc = s.ns.api::<Service>().get(name).await?;
    let svc_spec = svc.spec.expect("service spec");
    assert_eq!(svc_spec.ports.expect("ports")[0].port, 8080);
    assert_eq!(
        svc_spec.selector.expect("selector")["app.kubernetes.io/component"],
        "ingest"
    );
    let cm = s.ns.api::<ConfigMap>().get("randomuser-pipeline").await?;
    let doc = &cm.data.expect("data")["pipeline.yaml"];
    assert!(
        doc.contains(&s.topic),
        "the pipeline document holds the spec"
    );
    assert!(
        !doc.contains(s.world.cassandra_password()),
        "no credential in the ConfigMap"
    );
    // The seed pulls nothing, so its runner uses no API: no ServiceAccount,
    // Role or RoleBinding of its own (its Pods mount no token: above).
    assert!(
        s.ns.api::<ServiceAccount>()
            .get_opt("randomuser-runner")
            .await?
            .is_none(),
        "a runner without pull sources has no ServiceAccount"
    );
    assert!(
        s.ns.api::<Role>()
            .get_opt("randomuser-runner")
            .await?
            .is_none(),
        "a runner without pull sources has no Role"
    );

    // and, once the runner's Pods are ready, the pipeline is Ready.
    let (sp, _) = s.wait_condition(name, "Ready", "True", None, 180).await?;
    let ready = applied.elapsed();
    let status = sp.status.expect("status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.topic.expect("topic status").partitions, Some(3));
    let table = status.table.expect("table status");
    assert_eq!(
        table.qualified_name,
        format!("{}.created_users", s.keyspace)
    );
    assert_eq!(table.columns.len(), 11);
    let runner = status.runner.expect("runner status");
    assert_eq!(runner.sink_deployment.as_deref(), Some("randomuser-sink"));
    assert_eq!(runner.sink_ready_replicas, Some(1));
    // The sink's lag is reported from its consumer group.
    let lag = poll_until("the sink lag in the status", Deadline::secs(60), || async {
        let sp = s.pipelines().get(name).await?;
        Ok(sp.status.and_then(|s| s.flow).and_then(|f| f.sink_lag))
    })
    .await?;
    println!("sink lag: {lag}");
    println!(
        "apply -> TopicReady {topic_ready:?}, -> TableReady {table_ready:?}, -> Ready {ready:?}"
    );

    let deleted = s.delete_pipeline(name, 60).await?;
    println!("delete (Retain) -> gone {deleted:?}");
    assert!(
        s.kafka_topic(&s.topic).await?.is_some(),
        "Retain keeps the topic"
    );
    assert!(
        !s.table_columns("created_users").await?.is_empty(),
        "Retain keeps the table"
    );
    op.stop().await?;
    s.cleanup().await
}
