//! The real apiserver refuses invalid StreamPipelines at admission, each
//! with a message that says what is wrong (OpenAPI bounds and CEL rules of
//! the CRD in `crds/`). No operator is needed for this.

mod operator_common;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use millrace_api::StreamPipeline;
use millrace_testsupport::TestNamespace;
use operator_common::{install_crd, world};
use serde_json::{Value, json};

fn example() -> Value {
    let mut sp: Value = serde_yaml::from_str(include_str!("../../../examples/randomuser.yaml"))
        .expect("the example parses");
    sp["apiVersion"] = json!("millrace.io/v1alpha1");
    sp["kind"] = json!("StreamPipeline");
    sp
}

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut sp = example();
    change(&mut sp);
    sp
}

fn table(sp: &mut Value) -> &mut Value {
    &mut sp["spec"]["cassandra"]["table"]
}

fn pull(schedule: &str) -> Value {
    json!({"name": "pull", "httpPull": {"url": "https://randomuser.example/api", "schedule": schedule}})
}

/// Invalid pipelines and the words the apiserver's refusal must contain.
fn invalid() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "keyspace with a space",
            with(|o| o["spec"]["cassandra"]["keyspace"]["name"] = json!("spark streams")),
            "must be a CQL identifier",
        ),
        (
            "CQL injection in the table name",
            with(|o| table(o)["name"] = json!("users\"; DROP KEYSPACE x; --")),
            "must be a CQL identifier",
        ),
        (
            "column name with a dash",
            with(|o| table(o)["columns"][1]["name"] = json!("first-name")),
            "must be a CQL identifier",
        ),
        (
            "duplicate column names",
            with(|o| table(o)["columns"][2]["name"] = json!("first_name")),
            "Duplicate value",
        ),
        (
            "partition key names no column",
            with(|o| table(o)["partitionKey"] = json!(["nope"])),
            "every partitionKey entry must be the name of a column",
        ),
        (
            "empty partition key",
            with(|o| table(o)["partitionKey"] = json!([])),
            "partitionKey must name at least one column",
        ),
        (
            "clustering key names no column",
            with(|o| table(o)["clusteringKey"] = json!([{"name": "nope"}])),
            "every clusteringKey entry must be the name of a column",
        ),
        (
            "a column in both keys",
            with(|o| table(o)["clusteringKey"] = json!([{"name": "id"}])),
            "cannot be in both partitionKey and clusteringKey",
        ),
        (
            "unknown CQL type",
            with(|o| table(o)["columns"][1]["type"] = json!("string")),
            "must be a CQL type",
        ),
        (
            "column with both from and template",
            with(|o| table(o)["columns"][1]["template"] = json!("{/name/first}")),
            "set exactly one of from, template, wholeRecord: true, fromKafka or fromHeader",
        ),
        (
            "pointer without a leading slash",
            with(|o| table(o)["columns"][1]["from"] = json!("name/first")),
            "must be a JSON pointer",
        ),
        (
            "topic name with a space",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!("users created")),
            "must be a Kafka topic name",
        ),
        (
            "topic name too long for its dead-letter topic",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!("t".repeat(246))),
            "too long to append '.dlq'",
        ),
        (
            "dead-letter topic equal to the topic",
            with(|o| o["spec"]["deadLetter"] = json!({"topic": "users_created"})),
            "deadLetter.topic must differ from kafka.topic.name",
        ),
        (
            "zero partitions",
            with(|o| o["spec"]["kafka"]["topic"]["partitions"] = json!(0)),
            "spec.kafka.topic.partitions",
        ),
        (
            "zero replication factor",
            with(|o| o["spec"]["kafka"]["topic"]["replicationFactor"] = json!(0)),
            "spec.kafka.topic.replicationFactor",
        ),
        (
            "SimpleStrategy without a replication factor",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["replication"] =
                    json!({"class": "SimpleStrategy"})
            }),
            "SimpleStrategy takes replicationFactor",
        ),
        (
            "unknown deletion policy",
            with(|o| o["spec"]["deletionPolicy"] = json!("Destroy")),
            "Unsupported value: \"Destroy\"",
        ),
        (
            "duplicate source names",
            with(|o| o["spec"]["sources"][1]["name"] = json!("synthetic")),
            "Duplicate value",
        ),
        (
            "a source of two kinds",
            with(|o| o["spec"]["sources"][0]["httpPush"] = json!({"path": "/other"})),
            "exactly one of httpPull, httpPush or generator",
        ),
        (
            "schedule in words",
            with(|o| {
                o["spec"]["sources"]
                    .as_array_mut()
                    .expect("sources")
                    .push(pull("every minute"))
            }),
            "five-field cron",
        ),
        (
            "cron minute 61",
            with(|o| {
                o["spec"]["sources"]
                    .as_array_mut()
                    .expect("sources")
                    .push(pull("61 * * * *"))
            }),
            "five-field cron",
        ),
        (
            "a batch of one record",
            with(|o| o["spec"]["runner"] = json!({"batch": {"maxRecords": 1}})),
            "spec.runner.batch.maxRecords: Invalid value: 1: spec.runner.batch.maxRecords in body should be greater than or equal to 2",
        ),
        (
            "pipeline name starting with a digit",
            with(|o| o["metadata"]["name"] = json!("1pipeline")),
            "the StreamPipeline's name must start with a letter",
        ),
    ]
}

#[tokio::test]
async fn the_apiserver_refuses_invalid_pipelines_each_with_its_own_message() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    install_crd(&client).await?;
    let ns = TestNamespace::create(&client, "op-admit").await?;
    let resource = ApiResource::erase::<StreamPipeline>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);

    let cases = invalid();
    assert!(cases.len() >= 15);
    let mut messages = Vec::new();
    for (i, (what, mut sp, words)) in cases.into_iter().enumerate() {
        if sp["metadata"]["name"] == json!("randomuser") {
            sp["metadata"]["name"] = json!(format!("invalid-{i}"));
        }
        let object: DynamicObject = serde_json::from_value(sp)?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => panic!("{what}: the apiserver accepted it"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains(words),
                    "{what}: expected {words:?} in the refusal, got: {}",
                    status.message
                );
                messages.push((what, status.message));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
    for (what, message) in &messages {
        println!("{what}: {message}");
    }

    // Once created, the table's name and primary key cannot change. (It
    // has a batch: the field is accepted.)
    let valid: DynamicObject = serde_json::from_value(with(|o| {
        o["spec"]["runner"] = json!({"batch": {"maxRecords": 64, "maxDelayMs": 5}})
    }))?;
    api.create(&PostParams::default(), &valid).await?;
    let immutable = [
        (
            json!({"spec": {"cassandra": {"table": {"partitionKey": ["email"]}}}}),
            "the partition key cannot be changed after creation",
        ),
        (
            json!({"spec": {"cassandra": {"table": {"name": "other_users"}}}}),
            "the table cannot be renamed",
        ),
        (
            json!({"spec": {"cassandra": {"keyspace": {"name": "other_ks"}}}}),
            "the keyspace cannot be renamed",
        ),
    ];
    for (patch, words) in immutable {
        let err = api
            .patch("randomuser", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err("an immutable field changed");
        assert!(err.to_string().contains(words), "{words:?}: {err}");
    }
    // A new column is an allowed change.
    let mut columns = example()["spec"]["cassandra"]["table"]["columns"].clone();
    columns
        .as_array_mut()
        .expect("columns")
        .push(json!({"name": "age", "type": "int", "from": "/dob/age"}));
    api.patch(
        "randomuser",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"cassandra": {"table": {"columns": columns}}}})),
    )
    .await?;
    ns.cleanup().await
}

/// Injection attempts, the same as `millrace_api::validate`'s unit tests.
const INJECTIONS: &[(&str, &str)] = include!("../../../api/testdata/injections.rs");

/// Every injection attempt in every identifier field is refused by the
/// apiserver (the CRD's OpenAPI patterns and CEL rules) and, independently,
/// by the operator's own validation of the same object.
#[tokio::test]
async fn identifier_injection_is_refused_at_admission_and_by_the_operator() -> anyhow::Result<()> {
    let client = world().kube_client().await?;
    install_crd(&client).await?;
    let ns = TestNamespace::create(&client, "op-inject").await?;
    let resource = ApiResource::erase::<StreamPipeline>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);

    type Set = fn(&mut Value, &str);
    let fields: [(&str, Set, &str); 5] = [
        (
            "keyspace",
            |o, v| o["spec"]["cassandra"]["keyspace"]["name"] = json!(v),
            "must be a CQL identifier",
        ),
        (
            "table",
            |o, v| o["spec"]["cassandra"]["table"]["name"] = json!(v),
            "must be a CQL identifier",
        ),
        (
            "column",
            |o, v| o["spec"]["cassandra"]["table"]["columns"][1]["name"] = json!(v),
            "must be a CQL identifier",
        ),
        (
            "topic",
            |o, v| o["spec"]["kafka"]["topic"]["name"] = json!(v),
            "must be a Kafka topic name",
        ),
        ("pipeline name", |o, v| o["metadata"]["name"] = json!(v), ""),
    ];
    let mut refused = 0;
    for (what, attempt) in INJECTIONS {
        for (field, set, words) in &fields {
            if *field == "topic" && millrace_api::validate::is_topic_name(attempt) {
                continue; // "1users" is a fine topic name
            }
            let mut sp = example();
            sp["metadata"]["name"] = json!(format!("inject-{refused}"));
            set(&mut sp, attempt);
            // The operator's own check, as if admission had not run.
            let spec: millrace_api::StreamPipelineSpec =
                serde_json::from_value(sp["spec"].clone())?;
            let name = sp["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                millrace_api::validate_pipeline(name, &spec).is_err(),
                "{field} {what}: the operator's validation accepted it"
            );
            let object: DynamicObject = serde_json::from_value(sp)?;
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => panic!("{field} {what}: the apiserver accepted {attempt:?}"),
                Err(kube::Error::Api(status)) => {
                    assert!(
                        status.code == 422 || (*field == "pipeline name" && status.code == 400),
                        "{field} {what}: {status:?}"
                    );
                    // The OpenAPI length bound speaks before the pattern.
                    assert!(
                        status.message.contains(words) || status.message.contains("Too long"),
                        "{field} {what}: expected {words:?} in: {}",
                        status.message
                    );
                }
                Err(e) => panic!("{field} {what}: {e}"),
            }
            refused += 1;
        }
    }
    println!("{refused} injection attempts refused by the apiserver and by validate_pipeline");
    // A reserved word is a fine column name: it is always quoted in CQL.
    let mut reserved = example();
    reserved["metadata"]["name"] = json!("reserved-word");
    reserved["spec"]["cassandra"]["table"]["columns"][1]["name"] = json!("select");
    api.create(&PostParams::default(), &serde_json::from_value(reserved)?)
        .await?;
    ns.cleanup().await
}
