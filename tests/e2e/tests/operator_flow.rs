//! Status tells the truth: `status.flow` and the printer columns match the
//! table and the dead-letter topic, and a pipeline fed only poison records
//! goes `Ready=False, reason DeadLettering`, and back once good records
//! flow.

mod operator_common;

use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use millrace_api::StreamPipeline;
use millrace_testsupport::randomuser_page as page;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, condition};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// Produces with a plain Kafka producer, keyed as a user's producer would.
async fn produce(s: &Scenario, records: &[(Option<String>, Vec<u8>)]) -> anyhow::Result<()> {
    let producer: FutureProducer = s
        .world
        .kafka_config()
        .set("enable.idempotence", "true")
        .create()?;
    for (key, payload) in records {
        let mut record = FutureRecord::<String, Vec<u8>>::to(&s.topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        producer
            .send(record, std::time::Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

fn topic_total(s: &Scenario, topic: &str) -> anyhow::Result<i64> {
    operator_common::topic_records(&s.world, topic)
}

fn flow_of(sp: &StreamPipeline) -> (i64, i64, i64) {
    let flow = sp
        .status
        .as_ref()
        .and_then(|s| s.flow.clone())
        .unwrap_or_default();
    (
        flow.rows_written.unwrap_or(-1),
        flow.rows_failed.unwrap_or(-1),
        flow.records_ingested.unwrap_or(-1),
    )
}

/// `kubectl get sp NAME -o wide`, as a person reads it: header and row.
fn kubectl_wide(s: &Scenario, name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let kubeconfig = s.world.kubeconfig.clone().context("KUBECONFIG")?;
    let out = Command::new(s.world.tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "get",
            "streampipeline",
            name,
            "-n",
            &s.ns.name,
            "-o",
            "wide",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    println!("{text}");
    let mut lines = text.lines();
    let header = lines.next().context("header")?;
    let row = lines.next().context("row")?;
    // Columns start where the header's words start.
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|(i, c)| !c.is_whitespace() && (*i == 0 || header[..*i].ends_with(' ')))
        .map(|(i, _)| i)
        .collect();
    let cell = |line: &str, k: usize| {
        let from = starts[k].min(line.len());
        let to = starts
            .get(k + 1)
            .copied()
            .unwrap_or(line.len())
            .min(line.len());
        line[from..to].trim().to_owned()
    };
    Ok((0..starts.len())
        .map(|k| (cell(header, k), cell(row, k)))
        .collect())
}

#[tokio::test]
async fn flow_matches_the_table_and_the_dead_letter_topic_and_poison_is_dead_lettering()
-> anyhow::Result<()> {
    let s = Scenario::new("op-flow").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "flow";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    // Only poison: none of it can be mapped.
    let poison: Vec<(Option<String>, Vec<u8>)> = (0..40)
        .map(|i| (Some(format!("p{i}")), format!("not JSON {i}").into_bytes()))
        .collect();
    let started = Instant::now();
    produce(&s, &poison).await?;
    let (_, dead) = s
        .wait_condition(name, "Ready", "False", Some("DeadLettering"), 90)
        .await?;
    println!(
        "Ready=False DeadLettering {:.0?} after the poison: {}",
        started.elapsed(),
        dead.message
    );
    let dlq = format!("{}.dlq", s.topic);
    let sp = poll_until(
        "flow to count the 40 dead letters",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok((flow_of(&sp).1 == 40).then_some(sp))
        },
    )
    .await?;
    assert_eq!(flow_of(&sp), (0, 40, 40));
    assert_eq!(topic_total(&s, &dlq)?, 40, "the dead-letter topic");
    assert_eq!(s.row_count("created_users").await?, 0);

    // Good records (pages 1 and 2; page 3 holds a poison record of its
    // own): rows, and the pipeline is Ready again.
    let good: Vec<(Option<String>, Vec<u8>)> = (1..=2)
        .flat_map(page)
        .map(|r| {
            (
                r["login"]["uuid"].as_str().map(str::to_owned),
                r.to_string().into_bytes(),
            )
        })
        .collect();
    produce(&s, &good).await?;
    let n = good.len() as i64;
    s.wait_condition(name, "Ready", "True", None, 120).await?;
    let sp = poll_until(
        "flow to count the good rows",
        Deadline::secs(90),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok((flow_of(&sp).0 == n).then_some(sp))
        },
    )
    .await?;
    assert_eq!(flow_of(&sp), (n, 40, n + 40));
    assert_eq!(
        s.row_count("created_users").await?,
        n,
        "one row per good record"
    );
    assert_eq!(topic_total(&s, &dlq)?, 40, "nothing more dead-lettered");
    assert_eq!(topic_total(&s, &s.topic)?, n + 40, "records ingested");
    let flowing = condition(&sp, "Flowing").context("Flowing")?;
    println!("Flowing: {}", flowing.message);
    assert_eq!(flowing.status, "True");

    // What a person reads.
    let columns = kubectl_wide(&s, name)?;
    let column = |title: &str| {
        columns
            .iter()
            .find(|(h, _)| h == title)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(column("ROWS"), n.to_string(), "{columns:?}");
    assert_eq!(column("FAILED"), "40", "{columns:?}");
    assert_eq!(column("READY"), "True", "{columns:?}");

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
