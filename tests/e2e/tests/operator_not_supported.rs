//! A spec the cluster refuses is not rolled out: when a column's type is
//! changed (Cassandra cannot), the pipeline reports `NotSupported` and the
//! runner keeps the mapping that matches the table, so good records keep
//! flowing through push and through Kafka, and nothing is dead-lettered.

mod operator_common;

use anyhow::Context;
use millrace_api::StreamPipeline;
use millrace_testsupport::randomuser_page as page;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

async fn gender_of(s: &Scenario, id: &str) -> anyhow::Result<Option<String>> {
    let session = s.world.cassandra_session().await?;
    let rows = session
        .query_unpaged(
            format!(
                "SELECT gender FROM {}.created_users WHERE id = {id}",
                s.keyspace
            ),
            &[],
        )
        .await?
        .into_rows_result()?;
    Ok(rows
        .maybe_first_row::<(Option<String>,)>()?
        .and_then(|(g,)| g))
}

fn dead_letters(s: &Scenario) -> anyhow::Result<i64> {
    operator_common::topic_records(&s.world, &format!("{}.dlq", s.topic))
}

/// POSTs `body` to an ingest Pod running the current spec.
async fn push(s: &Scenario, name: &str, body: &Value) -> anyhow::Result<u16> {
    let url = s.current_push_url(name).await?;
    let client = reqwest::Client::new();
    // The operator made the source's tokens Secret and mounted it: without
    // its token the push is refused.
    let unauthenticated = client.post(&url).body(body.to_string()).send().await?;
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let response = client
        .post(&url)
        .bearer_auth(s.push_token(name).await?)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status().as_u16();
    println!("push -> {status} {}", response.text().await?);
    Ok(status)
}

#[tokio::test]
async fn a_type_change_cassandra_cannot_make_keeps_good_records_flowing() -> anyhow::Result<()> {
    let s = Scenario::new("op-held").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "held";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([{"name": "events", "httpPush": {"path": "/v1/records"}}]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // gender: text in the table, int in the new spec.
    let live: StreamPipeline = s.pipelines().get(name).await?;
    let mut columns = serde_json::to_value(&live.spec.cassandra.tables()[0].columns)?;
    for c in columns.as_array_mut().context("columns")? {
        if c["name"] == "gender" {
            c["type"] = json!("int");
        }
    }
    s.merge(
        name,
        json!({"spec": {"cassandra": {"table": {"columns": columns}}}}),
    )
    .await?;
    let (_, table) = s
        .wait_condition(name, "TableReady", "False", Some("NotSupported"), 60)
        .await?;
    println!("TableReady: {}", table.message);
    assert!(table.message.contains("gender"), "{}", table.message);

    // The runner's document keeps the table's type.
    let doc = s.runner_document(name).await?;
    let gender = doc
        .spec
        .cassandra
        .key_table()
        .and_then(|t| t.column("gender"))
        .context("gender")?;
    assert_eq!(gender.type_, "text", "the runner writes the table as it is");

    // Good records flow, pushed and produced.
    let users = page(1);
    let pushed = &users[0];
    assert_eq!(
        push(&s, name, pushed).await?,
        202,
        "a good record is accepted"
    );
    let producer: FutureProducer = s.world.kafka_config().create()?;
    let produced = &users[1];
    producer
        .send(
            FutureRecord::<String, String>::to(&s.topic)
                .key(
                    &produced["login"]["uuid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
                .payload(&produced.to_string()),
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    for user in [pushed, produced] {
        let id = user["login"]["uuid"].as_str().context("uuid")?;
        let gender = poll_until("the row", Deadline::secs(60), || async {
            gender_of(&s, id).await
        })
        .await?;
        assert_eq!(Some(gender.as_str()), user["gender"].as_str());
    }
    assert_eq!(dead_letters(&s)?, 0, "no good record was dead-lettered");

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

#[tokio::test]
async fn a_keyspace_is_never_lowered_to_the_replication_a_spec_declares() -> anyhow::Result<()> {
    let s = Scenario::new("op-lower").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "lower";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;

    // Someone raised the shared keyspace's replication; the spec still
    // declares 1.
    let session = s.world.cassandra_session().await?;
    session
        .query_unpaged(
            format!(
                "ALTER KEYSPACE {} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 2}}",
                s.keyspace
            ),
            &[],
        )
        .await?;
    let (_, table) = s
        .wait_condition(name, "TableReady", "False", Some("NotSupported"), 60)
        .await?;
    println!("TableReady: {}", table.message);
    assert!(
        table.message.contains("replication_factor 2 -> 1"),
        "{}",
        table.message
    );
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (s.keyspace.as_str(),),
        )
        .await?
        .into_rows_result()?;
    let (replication,) = rows.single_row::<(std::collections::HashMap<String, String>,)>()?;
    assert_eq!(
        replication.get("replication_factor").map(String::as_str),
        Some("2"),
        "the keyspace keeps its replicas"
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
