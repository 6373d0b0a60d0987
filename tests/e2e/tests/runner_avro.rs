//! Avro records in the Confluent wire format, their writer schemas in the
//! test world's Schema Registry: two schema versions on one topic both
//! become rows, an unknown schema id and a record that is not Avro go to
//! the dead-letter topic with the reason, and while the registry is out of
//! the sink's reach the sink waits, dead-letters nothing and writes the rows
//! once it is back. The outage is a gate between the sink and the registry,
//! not a stopped registry, so the tests that run beside this one keep it.
//! Over HTTPS, a registry whose certificate a private CA signed is read
//! with that CA, and refused (the sink waits, says why) with another.
//!
//! The world must have a registry (`MILLRACE_SCHEMA_REGISTRY_URL`): without
//! one these tests fail.

mod runner;

use std::collections::HashMap;

use anyhow::Context;
use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use millrace_api::avro::wire;
use millrace_testsupport::tcp_gate::TcpGate;
use millrace_testsupport::{Deadline, World, poll_until};
use rdkafka::Message;
use rdkafka::message::Headers;
use runner::Fixture;
use serde_json::{Value, json};

fn table(name: &str) -> Value {
    json!({
        "name": name,
        "columns": [
            {"name": "id", "type": "uuid", "from": "/id"},
            {"name": "name", "type": "text", "from": "/name"},
            {"name": "email", "type": "text", "from": "/email"},
            {"name": "amount", "type": "decimal", "from": "/amount"},
            {"name": "registered", "type": "timestamp", "from": "/registered"},
            {"name": "visits", "type": "bigint", "from": "/visits"},
        ],
        "partitionKey": ["id"],
    })
}

/// The first version: the id as a string, and a field the second drops.
fn v1(record: &str) -> String {
    json!({"type": "record", "name": record, "namespace": "io.millrace.test", "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 2}},
        {"name": "registered", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "visits", "type": "long"},
        {"name": "legacy", "type": "string", "default": ""},
    ]})
    .to_string()
}

/// The second: a UUID-typed id, an optional email, `legacy` removed.
fn v2(record: &str) -> String {
    json!({"type": "record", "name": record, "namespace": "io.millrace.test", "fields": [
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "name", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 2}},
        {"name": "registered", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "visits", "type": "long"},
        {"name": "email", "type": ["null", "string"], "default": null},
    ]})
    .to_string()
}

fn registry_url(world: &World) -> anyhow::Result<String> {
    world
        .var("MILLRACE_SCHEMA_REGISTRY_URL")
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_owned())
        .context("MILLRACE_SCHEMA_REGISTRY_URL is not in the test world: these tests need its schema registry")
}

/// Registers `schema` under `subject` through the registry's Confluent API
/// and returns its id. The world's registry (Apicurio 2.4, in-memory H2)
/// can answer 500 when two schemas are registered at once, as the tests
/// beside this one do: its content ids race (Apicurio/apicurio-registry
/// issue 5162). Such an answer is asked again until the deadline.
async fn register(url: &str, subject: &str, schema: &str) -> anyhow::Result<u32> {
    let http = reqwest::Client::new();
    let body = json!({ "schema": schema }).to_string();
    let answer: Value = poll_until(
        &format!("the registry to register {subject}"),
        Deadline::secs(30),
        || async {
            let response = http
                .post(format!("{url}/subjects/{subject}/versions"))
                .header("content-type", "application/vnd.schemaregistry.v1+json")
                .body(body.clone())
                .send()
                .await?;
            if response.status().is_server_error() {
                return Ok(None);
            }
            let bytes = response.error_for_status()?.bytes().await?;
            Ok(Some(serde_json::from_slice(&bytes)?))
        },
    )
    .await?;
    let id = answer["id"]
        .as_u64()
        .with_context(|| format!("registering {subject}: {answer}"))?;
    Ok(u32::try_from(id)?)
}

/// An id the registry does not have: one far above those it handed out.
async fn unknown_id(url: &str) -> anyhow::Result<u32> {
    let id = 1_000_000_000 + rand_u32() % 1_000_000;
    let status = reqwest::get(format!("{url}/schemas/ids/{id}"))
        .await?
        .status();
    anyhow::ensure!(status == 404, "schema id {id} answered {status}");
    Ok(id)
}

fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

struct User {
    id: uuid::Uuid,
    name: String,
    /// Cents.
    amount: i64,
    registered_ms: i64,
    visits: i64,
    email: Option<String>,
}

fn user(i: i64, email: bool) -> User {
    User {
        id: uuid::Uuid::new_v4(),
        name: format!("Zoë {i}"),
        // Past 2^53 cents: a float in between would lose the last digit.
        amount: 9_007_199_254_740_993 + i,
        registered_ms: 1_314_985_530_402 + i,
        visits: i64::MAX - i,
        email: email.then(|| format!("user{i}@example.org")),
    }
}

fn encode(schema: &Schema, id: u32, u: &User, version: u8) -> anyhow::Result<Vec<u8>> {
    let decimal = apache_avro::Decimal::from(u.amount.to_be_bytes().to_vec());
    let mut fields = vec![
        (
            "id".to_owned(),
            match version {
                1 => Avro::String(u.id.to_string()),
                _ => Avro::Uuid(u.id),
            },
        ),
        ("name".to_owned(), Avro::String(u.name.clone())),
        ("amount".to_owned(), Avro::Decimal(decimal)),
        (
            "registered".to_owned(),
            Avro::TimestampMillis(u.registered_ms),
        ),
        ("visits".to_owned(), Avro::Long(u.visits)),
    ];
    match version {
        1 => fields.push(("legacy".to_owned(), Avro::String("old".into()))),
        _ => fields.push((
            "email".to_owned(),
            match &u.email {
                Some(e) => Avro::Union(1, Box::new(Avro::String(e.clone()))),
                None => Avro::Union(0, Box::new(Avro::Null)),
            },
        )),
    }
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()?
        .write_value_to_vec(Avro::Record(fields))?;
    Ok(wire(id, &datum))
}

fn avro_pipeline(fx: &Fixture, url: &str) -> Value {
    let mut p = fx.pipeline(json!([]));
    p["spec"]["format"] = json!({"type": "avro", "schemaRegistry": {"url": url}});
    p
}

type Row = (
    uuid::Uuid,
    Option<String>,
    Option<String>,
    Option<scylla::value::CqlDecimal>,
    Option<scylla::value::CqlTimestamp>,
    Option<i64>,
);

async fn rows(fx: &Fixture) -> anyhow::Result<HashMap<uuid::Uuid, Row>> {
    let result = fx
        .session
        .query_unpaged(
            format!(
                "SELECT id, name, email, amount, registered, visits FROM {}",
                fx.qualified_table()
            ),
            &[],
        )
        .await?
        .into_rows_result()?;
    Ok(result
        .rows::<Row>()?
        .map(|r| r.map(|row| (row.0, row)))
        .collect::<Result<_, _>>()?)
}

fn dead_letters(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m.headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "millrace.error")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_schema_versions_map_to_rows_and_bad_records_are_dead_lettered() -> anyhow::Result<()> {
    let fx = Fixture::new("avro", 3, table("users")).await?;
    let url = registry_url(&fx.world)?;
    let subject = format!("{}-value", fx.topic);
    let record = format!("User{}", rand_u32());
    let (s1, s2) = (v1(&record), v2(&record));
    let id1 = register(&url, &subject, &s1).await?;
    let id2 = register(&url, &subject, &s2).await?;
    anyhow::ensure!(id1 != id2, "two versions, one id {id1}");
    let (schema1, schema2) = (Schema::parse_str(&s1)?, Schema::parse_str(&s2)?);
    let old: Vec<User> = (0..3).map(|i| user(i, false)).collect();
    let new: Vec<User> = (3..6).map(|i| user(i, i != 5)).collect();
    let mut payloads = Vec::new();
    for u in &old {
        payloads.push(encode(&schema1, id1, u, 1)?);
    }
    for u in &new {
        payloads.push(encode(&schema2, id2, u, 2)?);
    }
    let missing = unknown_id(&url).await?;
    let unknown = encode(&schema2, missing, &user(9, true), 2)?;
    let json_record = br#"{"id": "not avro"}"#.to_vec();
    let mut truncated = encode(&schema2, id2, &user(10, true), 2)?;
    truncated.truncate(truncated.len() - 3);
    payloads.extend([unknown.clone(), json_record.clone(), truncated.clone()]);
    fx.produce(&payloads).await?;

    let mut sink = fx.start("sink", &avro_pipeline(&fx, &url), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    fx.wait_for_rows(old.len() + new.len(), Deadline::secs(180))
        .await?;
    let got = rows(&fx).await?;
    for u in old.iter().chain(&new) {
        let row = &got[&u.id];
        assert_eq!(row.1.as_deref(), Some(u.name.as_str()));
        assert_eq!(row.2, u.email, "v1 has no email: null");
        let amount = row.3.clone().context("amount")?;
        let (digits, scale) = amount.as_signed_be_bytes_slice_and_exponent();
        let unscaled = digits
            .iter()
            .fold(0i128, |acc, b| (acc << 8) | i128::from(*b));
        assert_eq!((unscaled as i64, scale), (u.amount, 2), "exact decimal");
        assert_eq!(row.4.map(|t| t.0), Some(u.registered_ms));
        assert_eq!(row.5, Some(u.visits), "every bit of a long");
    }

    let dead = fx.consume(&fx.dlq, 3, Deadline::secs(60)).await?;
    let by_payload: HashMap<Vec<u8>, String> = dead
        .iter()
        .map(|m| m.payload().unwrap_or_default().to_vec())
        .zip(dead_letters(&dead))
        .collect();
    let reason = |p: &Vec<u8>| by_payload.get(p).cloned().unwrap_or_default();
    assert_eq!(reason(&unknown), format!("unknown schema id {missing}"));
    assert!(
        reason(&json_record).contains("not the magic byte 0"),
        "{}",
        reason(&json_record)
    );
    assert!(
        reason(&truncated).contains(&format!("schema id {id2}: not decodable")),
        "{}",
        reason(&truncated)
    );
    assert_eq!(
        sink.metric("millrace_records_dead_lettered_total{reason=\"unknown_schema\"}")
            .await?,
        1.0
    );
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}

/// The registry as one sink sees it, at 127.0.0.1: a gate the test closes
/// for an outage, so the registry stays up for the tests running beside
/// this one.
async fn registry_gate(url: &str) -> anyhow::Result<(TcpGate, String)> {
    let mut through = reqwest::Url::parse(url)?;
    let target = format!(
        "{}:{}",
        through.host_str().context("registry url without a host")?,
        through
            .port_or_known_default()
            .context("registry url without a port")?
    );
    let gate = TcpGate::open_to(target).await?;
    through
        .set_host(Some("127.0.0.1"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    through
        .set_port(Some(gate.addr().port()))
        .map_err(|()| anyhow::anyhow!("registry url cannot take a port"))?;
    Ok((gate, through.to_string().trim_end_matches('/').to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_waits_and_dead_letters_nothing() -> anyhow::Result<()> {
    let fx = Fixture::new("avro-outage", 2, table("users")).await?;
    let url = registry_url(&fx.world)?;
    let record = format!("User{}", rand_u32());
    let s2 = v2(&record);
    let id = register(&url, &format!("{}-value", fx.topic), &s2).await?;
    let schema = Schema::parse_str(&s2)?;
    let users: Vec<User> = (0..20).map(|i| user(i, true)).collect();
    let payloads = users
        .iter()
        .map(|u| encode(&schema, id, u, 2))
        .collect::<anyhow::Result<Vec<_>>>()?;
    fx.produce(&payloads).await?;

    // Down before the sink has read any schema: every record needs it.
    let (gate, through_gate) = registry_gate(&url).await?;
    gate.close();
    let mut sink = fx.start("sink", &avro_pipeline(&fx, &through_gate), "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the sink to wait for the registry",
        Deadline::secs(60),
        || async {
            let waiting = sink
                .metric("millrace_writes_waiting{reason=\"schema_registry\"}")
                .await?;
            Ok((waiting > 0.0).then_some(()))
        },
    )
    .await?;
    // A minute of outage: no row, no dead letter, the records held.
    let outage = Deadline::secs(60);
    while !outage.passed() {
        anyhow::ensure!(
            fx.row_count().await? == 0,
            "a row written without its schema"
        );
        anyhow::ensure!(
            fx.topic_size(&fx.dlq)? == 0,
            "a record dead-lettered during the outage"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    gate.reopen().await?;
    fx.wait_for_rows(users.len(), Deadline::secs(120)).await?;
    assert_eq!(fx.topic_size(&fx.dlq)?, 0, "nothing dead-lettered");
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}

/// The world registry's HTTPS URL and the CA (PEM) that signed its
/// certificate, a CA of the world's own (the local world's, or the dev
/// back-ends chart's on kind).
fn registry_tls(world: &World) -> anyhow::Result<(String, String)> {
    let var = |name: &str| {
        world.var(name).map(str::to_owned).with_context(|| {
            format!("{name} is not in the test world: bring it up again with tests/env/up")
        })
    };
    let ca = std::fs::read_to_string(var("MILLRACE_SCHEMA_REGISTRY_CA")?)?;
    Ok((var("MILLRACE_SCHEMA_REGISTRY_TLS_URL")?, ca))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_behind_a_private_ca_is_trusted_with_that_ca_only() -> anyhow::Result<()> {
    let fx = Fixture::new("avro-tls", 2, table("users")).await?;
    let (https, ca) = registry_tls(&fx.world)?;
    // The certificate names 127.0.0.1 (and the registry's DNS names in a
    // cluster), so the sink dials it there, through a relay: on a cluster
    // the registry's own address is its Pod's, which no certificate names.
    let (_relay, https) = registry_gate(&https).await?;
    let url = registry_url(&fx.world)?;
    let s2 = v2(&format!("User{}", rand_u32()));
    let id = register(&url, &format!("{}-value", fx.topic), &s2).await?;
    let schema = Schema::parse_str(&s2)?;
    let users: Vec<User> = (0..10).map(|i| user(i, true)).collect();
    let payloads = users
        .iter()
        .map(|u| encode(&schema, id, u, 2))
        .collect::<anyhow::Result<Vec<_>>>()?;
    fx.produce(&payloads).await?;

    // As the operator runs it: the CA from the Secret `schemaRegistry.tls`
    // names, in MILLRACE_SCHEMA_REGISTRY_CA_PEM.
    let mut pipeline = avro_pipeline(&fx, &https);
    pipeline["spec"]["format"]["schemaRegistry"]["tls"] =
        json!({"caSecretRef": {"name": "registry-ca"}});
    let path = fx.write_pipeline("sink.json", &pipeline)?;
    let start = |ca: &str, label: &str| {
        let mut env = fx.runner_env();
        env.push((
            millrace_api::avro::env::SCHEMA_REGISTRY_CA_PEM.to_owned(),
            ca.to_owned(),
        ));
        runner::Runner::start("sink", &path, &env, &fx.dir.join(format!("{label}.log")))
    };

    // A CA that did not sign the registry's certificate: the sink waits
    // for the registry, says why, and dead-letters nothing.
    let other_ca = runner::Ca::new("not the registry's CA")?.pem;
    let mut sink = start(&other_ca, "sink-wrong-ca")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the sink to refuse the registry's certificate",
        Deadline::secs(60),
        || async {
            let waiting = sink
                .metric("millrace_writes_waiting{reason=\"schema_registry\"}")
                .await?;
            let log = sink.log_text();
            Ok((waiting > 0.0 && log.contains("UnknownIssuer")).then_some(()))
        },
    )
    .await?;
    assert_eq!(fx.row_count().await?, 0, "a row without its schema");
    assert_eq!(fx.topic_size(&fx.dlq)?, 0, "dead-lettered on a TLS failure");
    sink.terminate(Deadline::secs(30)).await?;

    // The registry's own CA: every record a row.
    let mut sink = start(&ca, "sink")?;
    sink.wait_ready(Deadline::secs(60)).await?;
    fx.wait_for_rows(users.len(), Deadline::secs(120)).await?;
    assert_eq!(fx.topic_size(&fx.dlq)?, 0, "nothing dead-lettered");
    sink.terminate(Deadline::secs(30)).await?;
    fx.cleanup().await
}
