//! The push endpoint against the real Kafka and Cassandra: what it accepts
//! lands in the table; what it refuses is refused with a status and a
//! reason, and none of a refused request is written.

mod runner;

use std::collections::HashSet;

use millrace_testsupport::Deadline;
use millrace_testsupport::randomuser_page as page;
use runner::{Fixture, Runner, free_port, randomuser_table};
use serde_json::{Value, json};

fn id_of(record: &Value) -> uuid::Uuid {
    record["login"]["uuid"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("record has a uuid")
}

async fn post(
    runner: &Runner,
    body: impl Into<reqwest::Body>,
    content_type: &str,
) -> anyhow::Result<(u16, Value)> {
    let response = runner
        .push(&reqwest::Client::new(), "/v1/records")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Given a pipeline with a push source, Kafka reached over SASL/SCRAM and
/// Cassandra behind a password: one object, an array and NDJSON are each
/// accepted after Kafka's acknowledgement and become rows; a table of bad
/// bodies is answered 400, 413 or 422 with the reason; nothing of a refused
/// request reaches the table; and no password appears in a log.
#[tokio::test(flavor = "multi_thread")]
async fn push_accepts_objects_arrays_and_ndjson_and_refuses_bad_bodies() -> anyhow::Result<()> {
    let fx = Fixture::new("push", 3, randomuser_table("users")).await?;
    let mut pipeline = fx.pipeline(json!([
        {"name": "events", "httpPush": {"path": "/v1/records", "maxBodyBytes": 65536}}
    ]));
    let sasl_bootstrap = fx
        .world
        .var("MILLRACE_KAFKA_SASL_BOOTSTRAP")
        .expect("the world's SASL listener")
        .to_owned();
    let kafka_user = fx
        .world
        .var("MILLRACE_KAFKA_SASL_USERNAME")
        .unwrap_or_default()
        .to_owned();
    let kafka_password = fx
        .world
        .var("MILLRACE_KAFKA_SASL_PASSWORD")
        .unwrap_or_default()
        .to_owned();
    pipeline["spec"]["kafka"]["bootstrapServers"] = json!(sasl_bootstrap);
    pipeline["spec"]["kafka"]["credentialsSecretRef"] = json!({
        "name": "kafka-creds", "mechanism": "SCRAM-SHA-512", "securityProtocol": "SASL_PLAINTEXT"
    });
    pipeline["spec"]["cassandra"]["credentialsSecretRef"] = json!({"name": "cassandra-creds"});
    let path = fx.write_pipeline("push.json", &pipeline)?;
    let mut env = fx.runner_env();
    env.push(("MILLRACE_KAFKA_USERNAME".into(), kafka_user));
    env.push(("MILLRACE_KAFKA_PASSWORD".into(), kafka_password.clone()));
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    let mut sink = Runner::start("sink", &path, &env, &fx.dir.join("sink.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;

    // Accepted: one object, an array, NDJSON.
    let records = page(1);
    let (status, body) = post(&ingest, records[0].to_string(), "application/json").await?;
    assert_eq!((status, &body), (202, &json!({"accepted": 1})));
    let (status, body) = post(
        &ingest,
        Value::from(records[1..4].to_vec()).to_string(),
        "application/json",
    )
    .await?;
    assert_eq!((status, &body), (202, &json!({"accepted": 3})));
    let ndjson: String = records[4..].iter().map(|r| format!("{r}\n")).collect();
    let (status, body) = post(&ingest, ndjson, "application/x-ndjson").await?;
    assert_eq!((status, &body), (202, &json!({"accepted": 6})));

    // Refused, each with its status and reason.
    let good_but_refused = page(2)[0].clone();
    let mut bad_uuid = page(2)[1].clone();
    bad_uuid["login"]["uuid"] = json!("not-a-uuid");
    let mut no_key = page(2)[2].clone();
    no_key.as_object_mut().expect("object").remove("login");
    let mut bad_date = page(2)[3].clone();
    bad_date["registered"]["date"] = json!("yesterday");
    let huge = format!(r#"{{"padding": "{}"}}"#, "x".repeat(70_000));
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not JSON", "{oops".into(), 400, "neither JSON nor NDJSON"),
        ("empty body", "".into(), 400, "empty"),
        ("a number", "42".into(), 400, "a number"),
        ("an empty array", "[]".into(), 400, "an empty array"),
        (
            "NDJSON with a broken line",
            format!("{good_but_refused}\n{{broken\n"),
            400,
            "\"line\":2",
        ),
        ("not an object", "[1]".into(), 422, "not a JSON object"),
        ("bad uuid", bad_uuid.to_string(), 422, "column \\\"id\\\""),
        (
            "missing key",
            no_key.to_string(),
            422,
            "no value for this primary key column",
        ),
        (
            "bad timestamp",
            bad_date.to_string(),
            422,
            "registered_date",
        ),
        (
            "one bad record among good ones",
            Value::from(vec![good_but_refused.clone(), bad_uuid.clone()]).to_string(),
            422,
            "\"index\":1",
        ),
        ("over the body limit", huge, 413, "larger than 65536 bytes"),
    ];
    for (what, body, want_status, want_reason) in cases {
        let (status, reply) = post(&ingest, body, "application/json").await?;
        let text = reply.to_string();
        assert_eq!(status, want_status, "{what}: {text}");
        assert!(
            text.contains(want_reason),
            "{what}: {text} lacks {want_reason}"
        );
        assert_eq!(reply["accepted"], json!(0), "{what}: {text}");
    }

    // Exactly the accepted records are in the table.
    fx.wait_for_rows(10, Deadline::secs(60)).await?;
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    let expected: HashSet<_> = records.iter().map(id_of).collect();
    assert_eq!(ids, expected);
    assert!(!ids.contains(&id_of(&good_but_refused)));
    assert_eq!(
        ingest
            .metric("millrace_records_ingested_total{source=\"events\"}")
            .await?,
        10.0
    );
    assert!(
        ingest
            .metric("millrace_records_rejected_total{source=\"events\",reason=\"unmappable\"}")
            .await?
            >= 5.0
    );
    let written = "millrace_rows_written_total";
    sink.metric_reaching(written, 10.0, Deadline::secs(30))
        .await?;
    assert_eq!(sink.metric(written).await?, 10.0);

    for runner in [&ingest, &sink] {
        let log = runner.log_text();
        assert!(!log.is_empty());
        assert!(
            !log.contains(&kafka_password),
            "a log shows the Kafka password"
        );
        assert!(
            !log.contains(fx.world.cassandra_password()),
            "a log shows the Cassandra password"
        );
    }
    drop((ingest, sink));
    fx.cleanup().await
}

/// With Kafka unreachable the endpoint is not ready and answers 503 with
/// Retry-After, accepting nothing.
#[tokio::test(flavor = "multi_thread")]
async fn push_answers_503_when_kafka_is_unreachable() -> anyhow::Result<()> {
    let fx = Fixture::new("push-down", 1, randomuser_table("users")).await?;
    let mut pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    // Nothing listens there: the shared Kafka stays up for other tests.
    pipeline["spec"]["kafka"]["bootstrapServers"] = json!(format!("127.0.0.1:{}", free_port()));
    let ingest = fx.start("ingest", &pipeline, "ingest")?;
    let client = reqwest::Client::new();
    millrace_testsupport::poll_until(
        "the runner to answer /healthz",
        Deadline::secs(30),
        || async {
            Ok(client
                .get(ingest.metrics_url("/healthz"))
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ()))
        },
    )
    .await?;
    let ready = client.get(ingest.metrics_url("/readyz")).send().await?;
    assert_eq!(ready.status(), 503, "not ready without Kafka");

    let record = page(1)[0].clone();
    let response = ingest
        .push(&client, "/v1/records")
        .body(record.to_string())
        .send()
        .await?;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_str(&response.text().await?)?;
    assert_eq!(body["accepted"], json!(0), "{body}");
    assert_eq!(fx.topic_size(&fx.topic)?, 0, "nothing reached the topic");
    drop(ingest);
    fx.cleanup().await
}

/// Text that compresses badly, `bytes` long: Kafka compares a batch's size
/// after compression with the topic's limit.
fn incompressible(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 64);
    while text.len() < bytes {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(bytes);
    text
}

/// Given a topic that takes records up to 8 KiB (`max.message.bytes`): a
/// request with a record above the producer's own limit is refused 413
/// naming its index, and nothing of it is produced; a request with one
/// record above the topic's limit (index 5) and a later version of that
/// record's key (index 8) is answered 413 with exactly what Kafka took (the
/// eight others) and why not the two; the topic and the table hold exactly
/// those eight; and sending again the 424 one alone is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn push_names_the_record_too_large_and_reports_exactly_what_kafka_took() -> anyhow::Result<()>
{
    let fx = Fixture::new("push-size", 1, randomuser_table("users")).await?;
    fx.set_topic_config(&fx.topic, &[("max.message.bytes", "8192")])
        .await?;
    let pipeline = fx.pipeline(json!([
        {"name": "events", "httpPush": {"path": "/v1/records", "maxBodyBytes": 4 << 20}}
    ]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;

    // Above the producer's message.max.bytes (librdkafka's 1,000,000).
    let records = page(1);
    let mut huge = page(3)[0].clone();
    huge["padding"] = json!(incompressible(1_100_000));
    let body = Value::from(vec![records[0].clone(), records[1].clone(), huge]);
    let (status, reply) = post(&ingest, body.to_string(), "application/json").await?;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(reply["errors"][0]["index"], 2, "{reply}");
    assert_eq!(reply["errors"][0]["status"], 413, "{reply}");
    assert_eq!(fx.topic_size(&fx.topic)?, 0, "nothing of it was produced");

    // Above the topic's 8 KiB, and a later small version of the same key.
    let mut big = page(2)[0].clone();
    big["padding"] = json!(incompressible(40_000));
    let mut request = records.clone();
    request[5] = big;
    request[8] = page(2)[0].clone();
    let started = std::time::Instant::now();
    let (status, reply) = post(
        &ingest,
        Value::from(request.clone()).to_string(),
        "application/json",
    )
    .await?;
    eprintln!("partial answer after {:?}: {reply}", started.elapsed());
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["accepted"], 8, "{reply}");
    assert_eq!(reply["rejected"], 2, "{reply}");
    assert_eq!(
        reply["acceptedRecords"],
        json!([{"index": 0, "count": 5}, {"index": 6, "count": 2}, {"index": 9, "count": 1}]),
        "{reply}"
    );
    let errors = reply["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{reply}");
    assert_eq!(
        (
            &errors[0]["index"],
            &errors[0]["count"],
            &errors[0]["status"]
        ),
        (&json!(5), &json!(1), &json!(413)),
        "{reply}"
    );
    assert_eq!(
        (
            &errors[1]["index"],
            &errors[1]["count"],
            &errors[1]["status"]
        ),
        (&json!(8), &json!(1), &json!(424)),
        "{reply}"
    );

    let accepted: HashSet<_> = request
        .iter()
        .enumerate()
        .filter(|(i, _)| ![5, 8].contains(i))
        .map(|(_, r)| id_of(r))
        .collect();
    assert_eq!(accepted.len(), 8);
    fx.wait_for_rows(8, Deadline::secs(60)).await?;
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    assert_eq!(
        ids, accepted,
        "the table holds exactly the accepted records"
    );
    assert_eq!(fx.topic_size(&fx.topic)?, 8, "the topic holds exactly them");
    assert_eq!(
        ingest
            .metric("millrace_records_ingested_total{source=\"events\"}")
            .await?,
        8.0
    );

    // The client sends again what it can: the 424 record, alone.
    let (status, reply) = post(&ingest, request[8].to_string(), "application/json").await?;
    assert_eq!((status, &reply), (202, &json!({"accepted": 1})));
    fx.wait_for_rows(9, Deadline::secs(60)).await?;
    assert_eq!(fx.topic_size(&fx.topic)?, 9);
    drop((ingest, sink));
    fx.cleanup().await
}
