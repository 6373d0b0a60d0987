//! The test world's schema registry and Avro producer, checked as the
//! runner's Avro tests will use them: Confluent's own Python client
//! (`tests/env/avro-produce`: AvroSerializer and SchemaRegistryClient)
//! registers two versions of a schema with the world's registry (Apicurio's
//! Confluent-compatible API) and writes records of both; read back here,
//! each carries the Confluent wire format (magic byte 0, the schema id as 4
//! big-endian bytes, the Avro body) with the id the registry gave, and the
//! registry serves each id's schema.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use millrace_testsupport::{Deadline, World, unique_name};
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::{Value, json};

fn world() -> World {
    World::discover().expect("the test world (run tests/env/up)")
}

fn user_v1() -> Value {
    json!({
        "type": "record", "name": "User", "namespace": "dev.millrace.test",
        "fields": [
            { "name": "id", "type": "string" },
            { "name": "age", "type": "int" }
        ]
    })
}

/// v1 plus an optional field with a default: BACKWARD compatible.
fn user_v2() -> Value {
    let mut v2 = user_v1();
    v2["fields"]
        .as_array_mut()
        .expect("fields")
        .push(json!({ "name": "email", "type": ["null", "string"], "default": null }));
    v2
}

#[tokio::test(flavor = "multi_thread")]
async fn avro_records_carry_the_registry_ids_of_both_schema_versions() -> anyhow::Result<()> {
    let world = world();
    let registry = world.schema_registry_url()?.to_string();
    let topic = unique_name("avro-world");
    let subject = format!("{topic}-value");
    let admin: AdminClient<DefaultClientContext> = world.kafka_config().create()?;
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await?;

    // Registering without producing gives the id the producer then uses.
    let (w, s) = (world.clone(), subject.clone());
    let registered_v1 =
        tokio::task::spawn_blocking(move || w.register_avro_schema(&s, &user_v1())).await??;
    let w = world.clone();
    let t = topic.clone();
    let id_v1 = tokio::task::spawn_blocking(move || {
        w.avro_produce(
            &t,
            &user_v1(),
            &[
                json!({"id": "u1", "age": 30}),
                json!({"id": "u2", "age": 41}),
            ],
            Some("id"),
        )
    })
    .await??;
    assert_eq!(id_v1, registered_v1, "the producer found v1 under its id");
    let w = world.clone();
    let t = topic.clone();
    let id_v2 = tokio::task::spawn_blocking(move || {
        w.avro_produce(
            &t,
            &user_v2(),
            &[json!({"id": "u3", "age": 52, "email": "u3@example.org"})],
            Some("id"),
        )
    })
    .await??;
    assert_ne!(id_v1, id_v2, "v2 is a new schema with an id of its own");

    let http = reqwest::Client::new();
    let versions: Vec<u32> = serde_json::from_str(
        &http
            .get(format!("{registry}/subjects/{subject}/versions"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?,
    )?;
    assert_eq!(versions, vec![1, 2], "two versions under {subject}");
    for (id, schema) in [(id_v1, user_v1()), (id_v2, user_v2())] {
        let got: Value = serde_json::from_str(
            &http
                .get(format!("{registry}/schemas/ids/{id}"))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?,
        )?;
        let text = got["schema"].as_str().context("no schema in the answer")?;
        let parsed: Value = serde_json::from_str(text)?;
        assert_eq!(parsed["fields"], schema["fields"], "schema of id {id}");
    }
    // An id nobody registered is a 404, as Confluent's registry answers.
    let missing = http
        .get(format!("{registry}/schemas/ids/{}", i32::MAX))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    let consumer: StreamConsumer = world
        .kafka_config()
        .set("group.id", unique_name("avro-world-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[&topic])?;
    let mut got: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = Deadline::after(Duration::from_secs(60));
    while got.len() < 3 {
        let msg = tokio::time::timeout(deadline.remaining(), consumer.recv())
            .await
            .with_context(|| format!("only {} of 3 records read back", got.len()))??;
        let key = String::from_utf8(msg.key().context("no key")?.to_vec())?;
        got.insert(key, msg.payload().context("no value")?.to_vec());
    }
    for (key, id) in [("u1", id_v1), ("u2", id_v1), ("u3", id_v2)] {
        let value = &got[key];
        ensure!(
            value.len() > 5,
            "{key}: {value:?} is shorter than the header"
        );
        assert_eq!(value[0], 0, "{key}: magic byte");
        let wire_id = u32::from_be_bytes(value[1..5].try_into()?);
        assert_eq!(wire_id, id, "{key}: schema id");
    }
    // The Avro body of u1: "u1" (zig-zag length 2 -> 0x04) then 30 (-> 60).
    assert_eq!(&got["u1"][5..], &[0x04, b'u', b'1', 60]);
    // u3 under v2: the union's branch 1 (string) before the email.
    assert_eq!(&got["u3"][5..10], &[0x04, b'u', b'3', 104, 0x02]);

    // Deleting the subject is the cleanup; its ids are not reused.
    http.delete(format!("{registry}/subjects/{subject}"))
        .send()
        .await?
        .error_for_status()?;
    admin.delete_topics(&[&topic], &AdminOptions::new()).await?;
    Ok(())
}
