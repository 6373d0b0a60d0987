//! One stream into several tables (`spec.cassandra.tables`), from the
//! example `examples/randomuser-by-email.yaml`: the operator creates each
//! table with its own primary key and lists them in the status; every
//! pushed record becomes a row in each; a record one table cannot take
//! keeps its row in the other and is dead-lettered once, naming the table;
//! a type change Cassandra cannot make is `NotSupported` for that table
//! only, and records keep flowing into both.

mod operator_common;

use std::time::Duration;

use anyhow::Context;
use millrace_api::StreamPipeline;
use millrace_testsupport::randomuser_page as page;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Value, json};

/// POSTs `body` to an ingest Pod running the pipeline's current spec.
async fn push(s: &Scenario, name: &str, body: &Value) -> anyhow::Result<u16> {
    let url = s.current_push_url(name).await?;
    let response = reqwest::Client::new()
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

/// The `first_name` of the row `table` holds where `column = value`.
async fn first_name(
    s: &Scenario,
    table: &str,
    column: &str,
    value: &str,
) -> anyhow::Result<Option<String>> {
    let session = s.world.cassandra_session().await?;
    let literal = if column == "id" {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    };
    let rows = session
        .query_unpaged(
            format!(
                "SELECT first_name FROM {}.{table} WHERE {column} = {literal}",
                s.keyspace
            ),
            &[],
        )
        .await?
        .into_rows_result()?;
    Ok(rows
        .maybe_first_row::<(Option<String>,)>()?
        .map(|(n,)| n.unwrap_or_default()))
}

/// Waits until both tables hold `user`'s row, each under its own key.
async fn in_both_tables(s: &Scenario, user: &Value) -> anyhow::Result<()> {
    let id = user["login"]["uuid"].as_str().context("uuid")?;
    let email = user["email"].as_str().context("email")?;
    let want = user["name"]["first"].as_str().context("first name")?;
    for (table, column, key) in [
        ("users_by_id", "id", id),
        ("users_by_email", "email", email),
    ] {
        let got = poll_until(
            &format!("{table} to hold {key}"),
            Deadline::secs(90),
            || first_name(s, table, column, key),
        )
        .await?;
        assert_eq!(got, want, "{table}: {key}");
    }
    Ok(())
}

/// The `millrace.error` header of each record of the dead-letter topic,
/// once it has `n`.
async fn dead_letter_reasons(s: &Scenario, n: usize) -> anyhow::Result<Vec<String>> {
    let topic = format!("{}.dlq", s.topic);
    let consumer: StreamConsumer = s
        .world
        .kafka_config()
        .set("group.id", format!("{}-dlq-reader", s.topic))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut out = Vec::new();
    let deadline = Deadline::secs(60);
    while out.len() < n {
        if deadline.passed() {
            anyhow::bail!("{} of {n} dead letters in {topic}: {out:?}", out.len());
        }
        let Ok(got) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await else {
            continue;
        };
        let message = got?;
        let reason = message
            .headers()
            .and_then(|h| {
                rdkafka::message::Headers::iter(h)
                    .find(|h| h.key == "millrace.error")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
            .unwrap_or_default();
        out.push(reason);
    }
    Ok(out)
}

#[tokio::test]
async fn one_stream_feeds_two_query_tables_each_with_its_own_key() -> anyhow::Result<()> {
    let s = Scenario::new("op-tables").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "users";
    let mut sp = s.example_pipeline("examples/randomuser-by-email.yaml", name)?;
    // Pushed records only, so every row is one this test knows.
    sp["spec"]["sources"] = json!([{"name": "events", "httpPush": {"path": "/v1/records"}}]);
    s.apply(&sp).await?;
    let (live, table) = s
        .wait_condition(name, "TableReady", "True", None, 180)
        .await?;
    println!("TableReady: {}", table.message);
    let status = live.status.context("status")?;
    let listed: Vec<String> = status
        .tables
        .iter()
        .map(|t| t.qualified_name.clone())
        .collect();
    let (by_id, by_email) = (
        format!("{}.users_by_id", s.keyspace),
        format!("{}.users_by_email", s.keyspace),
    );
    assert_eq!(listed, [by_id.clone(), by_email.clone()]);
    assert_eq!(
        status.table.map(|t| t.qualified_name),
        Some(by_id.clone()),
        "status.table (the printer column) is the first table"
    );
    assert!(
        table.message.contains(&by_email),
        "the condition names the tables: {}",
        table.message
    );
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // Every record is a row in each table, under that table's key.
    let users = page(1);
    assert_eq!(push(&s, name, &json!(users[..4])).await?, 202);
    for user in &users[..4] {
        in_both_tables(&s, user).await?;
    }

    // A record without an email: the first table keys and takes it; the
    // second cannot (its partition key is missing), so the record is
    // dead-lettered once, with that table's name and words.
    let mut no_email = users[4].clone();
    no_email
        .as_object_mut()
        .context("a user is an object")?
        .remove("email");
    assert_eq!(push(&s, name, &no_email).await?, 202);
    let id = no_email["login"]["uuid"].as_str().context("uuid")?;
    let got = poll_until("users_by_id to hold it", Deadline::secs(60), || {
        first_name(&s, "users_by_id", "id", id)
    })
    .await?;
    assert_eq!(Some(got.as_str()), no_email["name"]["first"].as_str());
    let reasons = dead_letter_reasons(&s, 1).await?;
    println!("dead letter: {reasons:?}");
    assert!(
        reasons[0].contains(&format!("table {by_email}")) && !reasons[0].contains(&by_id),
        "the dead letter names the table that refused it: {reasons:?}"
    );

    // users_by_email.first_name: text in the table, int in the new spec.
    let live: StreamPipeline = s.pipelines().get(name).await?;
    let mut tables = serde_json::to_value(live.spec.cassandra.tables())?;
    for c in tables[1]["columns"]
        .as_array_mut()
        .context("columns")?
        .iter_mut()
    {
        if c["name"] == "first_name" {
            c["type"] = json!("int");
        }
    }
    s.merge(name, json!({"spec": {"cassandra": {"tables": tables}}}))
        .await?;
    let (_, table) = s
        .wait_condition(name, "TableReady", "False", Some("NotSupported"), 90)
        .await?;
    println!("TableReady: {}", table.message);
    assert!(
        table.message.contains(&format!("table {by_email}"))
            && table.message.contains("first_name")
            && !table.message.contains(&format!("table {by_id}")),
        "NotSupported names the one table: {}",
        table.message
    );
    // The runner writes users_by_email as it is, users_by_id as declared.
    let doc = s.runner_document(name).await?;
    let held = doc
        .spec
        .cassandra
        .table_named("users_by_email")
        .and_then(|t| t.column("first_name"))
        .context("users_by_email.first_name")?;
    assert_eq!(held.type_, "text", "the runner writes the table as it is");

    // Records keep flowing into both tables.
    let more = page(2);
    assert_eq!(push(&s, name, &json!(more[..3])).await?, 202);
    for user in &more[..3] {
        in_both_tables(&s, user).await?;
    }
    assert_eq!(
        operator_common::topic_records(&s.world, &format!("{}.dlq", s.topic))?,
        1,
        "nothing else was dead-lettered"
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
