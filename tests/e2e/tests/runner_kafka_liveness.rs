//! The runner's liveness follows its Kafka clients: one that has known no
//! broker of its cluster for `--kafka-lost-after-seconds` fails `/healthz`,
//! so the kubelet restarts the runner with fresh clients (librdkafka can
//! lose every broker for good: runner/src/kafka_health.rs). A runner whose
//! clients know the cluster stays live past that time.

mod runner;

use std::time::{Duration, Instant};

use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, Runner, randomuser_table};
use serde_json::json;

/// The lost-after time these runners are started with.
const LOST_AFTER_SECS: u64 = 15;

fn env_with_lost_after(fx: &Fixture) -> Vec<(String, String)> {
    let mut env = fx.runner_env();
    env.push((
        "MILLRACE_KAFKA_LOST_AFTER_SECONDS".into(),
        LOST_AFTER_SECS.to_string(),
    ));
    env
}

async fn healthz(runner: &Runner) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(runner.metrics_url("/healthz")).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test]
async fn a_runner_whose_kafka_client_knows_no_broker_is_not_live() -> anyhow::Result<()> {
    let fx = Fixture::new("liveness", 1, randomuser_table("users")).await?;
    let mut pipeline = fx.pipeline(json!([
        {"name": "synthetic", "generator": {"profile": "randomuser", "recordsPerSecond": 10}}
    ]));
    // A port nothing listens on: the producer never learns a broker.
    let dead = millrace_testsupport::free_port()?;
    pipeline["spec"]["kafka"]["bootstrapServers"] = json!(format!("127.0.0.1:{dead}"));
    let path = fx.write_pipeline("dead-kafka.json", &pipeline)?;
    let runner = Runner::start(
        "ingest",
        &path,
        &env_with_lost_after(&fx),
        &fx.dir.join("dead-kafka.log"),
    )?;
    // From the spawn (starting builds the runner first, when it must).
    let started = Instant::now();
    let (status, _) = poll_until("/healthz to answer", Deadline::secs(30), || async {
        Ok(healthz(&runner).await.ok())
    })
    .await?;
    assert_eq!(status, 200, "live at first");
    let (status, why) = poll_until("/healthz to fail", Deadline::secs(90), || async {
        Ok(healthz(&runner).await.ok().filter(|(s, _)| *s != 200))
    })
    .await?;
    let took = started.elapsed();
    println!("/healthz {status} after {took:?}: {why}");
    assert_eq!(status, 503);
    assert!(why.contains("ingest producer"), "{why}");
    assert!(why.contains("known no broker"), "{why}");
    assert!(
        took >= Duration::from_secs(LOST_AFTER_SECS),
        "not before the lost-after time: {took:?}"
    );
    drop(runner);
    fx.cleanup().await
}

#[tokio::test]
async fn runners_whose_kafka_clients_know_the_cluster_stay_live() -> anyhow::Result<()> {
    let fx = Fixture::new("liveness-ok", 1, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([
        {"name": "synthetic", "generator": {"profile": "randomuser", "recordsPerSecond": 10}}
    ]));
    let path = fx.write_pipeline("pipeline.json", &pipeline)?;
    let env = env_with_lost_after(&fx);
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    let mut sink = Runner::start("sink", &path, &env, &fx.dir.join("sink.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(120)).await?;
    // Sampled each second for twice the lost-after time: each answer is
    // live.
    let until = Instant::now() + Duration::from_secs(2 * LOST_AFTER_SECS);
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    let mut checks = 0;
    while Instant::now() < until {
        every_second.tick().await;
        for (role, runner) in [("ingest", &ingest), ("sink", &sink)] {
            let (status, body) = healthz(runner).await?;
            assert_eq!(status, 200, "{role}: {body}");
            checks += 1;
        }
    }
    assert!(checks >= 2 * LOST_AFTER_SECS, "{checks} checks");
    // And records flowed through both meanwhile.
    poll_until("rows from the generator", Deadline::secs(60), || async {
        Ok((fx.row_count().await? > 0).then_some(()))
    })
    .await?;
    drop((ingest, sink));
    fx.cleanup().await
}
