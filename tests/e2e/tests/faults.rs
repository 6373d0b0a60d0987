//! The fault suite (`make test-faults`): one StreamPipeline reconciled by the
//! operator, its runner Pods run by the node agent, records flowing in
//! through the push endpoint (clients in this test, sent to the Service's
//! ready Pods) and the generator source, while faults are injected one
//! after another: kill -9 of a sink, an ingest and the operator; kill -9 and
//! restart of Kafka and of Cassandra; SIGSTOP of Cassandra for 30 s; sinks
//! scaled 1 -> 3 -> 1; the resource edited (a column added, partitions
//! raised).
//!
//! At the end the whole topic, the dead-letter topic and the table are
//! read, and for each fault's window: the records accepted (a 202 to a push
//! client, or produced by the generator: in the topic) must all be rows,
//! exactly once, with no row nobody sent. The pipeline's conditions are
//! polled every 250 ms so each window also says what status showed.
//!
//! The second scenario (`multinode_quorum_rides_out_node_and_broker_loss`)
//! runs in a world of three Cassandra nodes and three Kafka brokers
//! (`MILLRACE_CASSANDRA_NODES=3 MILLRACE_KAFKA_BROKERS=3`): keyspace and
//! topic replicated 3 times, writes at `LOCAL_QUORUM`, `min.insync.replicas`
//! 2. One node down changes nothing; two down, the sink waits (Unavailable)
//! and catches up after; one broker down, push and sink carry on; two down,
//! push answers 503, and nothing it accepted is lost. An updater rewrites
//! the same keys throughout, so each row must end with its latest version.
//!
//! Ignored by default: they kill Kafka and Cassandra, so they run only in
//! worlds of their own (`tests/faults/run` brings them up), never against
//! the shared one.
//!
//! The harness (`faults_harness`) holds the machinery; this file holds the
//! scenario: the pipeline and the phases, in the order they run.

mod faults_harness;
mod operator_common;

use faults_harness::{Check, Fault, FaultPhase, Harness, Load, PIPELINE, TABLE, Verdict};
use operator_common::{RUNNER_IMAGE, SECRET, Scenario};
use serde_json::{Value, json};

// Together with the push clients ~370 records/s: the faults' phases last
// ~6 min when recovery is quick, and the suite must carry at least 100,000
// records.
const GENERATOR_RATE: i32 = 170;
const PARTITIONS: i32 = 3;
const RAISED_PARTITIONS: i32 = 6;

/// The pipeline under test: records pushed and generated, one table.
fn pipeline(sc: &Scenario) -> Value {
    let world = &sc.world;
    json!({
        "metadata": {"name": PIPELINE},
        "spec": {
            "kafka": {"bootstrapServers": world.kafka_bootstrap,
                      "topic": {"name": sc.topic, "partitions": PARTITIONS, "replicationFactor": 1}},
            "cassandra": {
                "contactPoints": world.cassandra_contact_points,
                "localDatacenter": world.cassandra_local_dc,
                "credentialsSecretRef": {"name": SECRET},
                "keyspace": {"name": sc.keyspace,
                             "replication": {"class": "SimpleStrategy", "replicationFactor": 1}},
                "table": {
                    "name": TABLE,
                    "columns": [
                        {"name": "id", "type": "uuid", "from": "/login/uuid"},
                        {"name": "first_name", "type": "text", "from": "/name/first"},
                        {"name": "last_name", "type": "text", "from": "/name/last"},
                        {"name": "gender", "type": "text", "from": "/gender"},
                        {"name": "post_code", "type": "text", "from": "/location/postcode"},
                        {"name": "email", "type": "text", "from": "/email"},
                        {"name": "username", "type": "text", "from": "/login/username"},
                        {"name": "registered_date", "type": "timestamp", "from": "/registered/date"},
                        {"name": "phone", "type": "text", "from": "/phone"},
                    ],
                    "partitionKey": ["id"],
                },
            },
            "sources": [
                // Open on purpose: this suite is about the data under
                // faults; who may push is tested in runner_push_auth.rs.
                {"name": "events", "httpPush": {"path": "/v1/records", "auth": {"type": "None"}}},
                {"name": "synthetic", "generator": {"recordsPerSecond": GENERATOR_RATE}},
            ],
            "runner": {"image": RUNNER_IMAGE, "ingestReplicas": 1, "sinkReplicas": 1,
                       "logFormat": "text"},
            "deletionPolicy": "Delete",
        }
    })
}

/// The faults, in the order they are injected (docs/reliability.md, "The
/// faults, in order"): processes, a rebalance, the resource edited, then
/// the data plane; the drain closes the run.
fn phases() -> Vec<FaultPhase> {
    vec![
        FaultPhase {
            name: "steady",
            what: "no fault: the stream starts",
            fault: Fault::None,
            checks: vec![Check::Recovered { secs: 120 }],
            steady_secs: Some(20),
        },
        // 1. Processes.
        FaultPhase {
            name: "kill-sink",
            what: "kill -9 of the sink's runner process",
            fault: Fault::KillRunner { component: "sink" },
            checks: vec![Check::Recovered { secs: 180 }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "kill-ingest",
            what: "kill -9 of the ingest's runner process",
            fault: Fault::KillRunner {
                component: "ingest",
            },
            checks: vec![Check::Recovered { secs: 180 }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "kill-operator",
            what: "kill -9 of the operator process, started again after 10 s",
            fault: Fault::KillOperator { down_secs: 10 },
            checks: vec![Check::Recovered { secs: 120 }],
            steady_secs: Some(15),
        },
        // 3. A rebalance.
        FaultPhase {
            name: "rebalance",
            what: "sink scaled 1 -> 3 -> 1 through spec.runner.sinkReplicas",
            fault: Fault::ScaleSinks {
                ingest: 1,
                up: 3,
                hold_secs: 20,
                down: 1,
                replicas_secs: 180,
            },
            checks: vec![Check::Recovered { secs: 180 }],
            steady_secs: Some(15),
        },
        // 4. The resource edited mid-stream.
        FaultPhase {
            name: "edit-cr",
            what: "column `city` added and partitions raised 3 -> 6 mid-stream",
            fault: Fault::EditPipeline {
                column: json!({"name": "city", "type": "text", "from": "/location/city"}),
                partitions: RAISED_PARTITIONS,
            },
            checks: vec![
                Check::PipelineEdited {
                    column: "city",
                    partitions: RAISED_PARTITIONS,
                    secs: 180,
                },
                Check::Rolled { secs: 240 },
                Check::Recovered { secs: 240 },
            ],
            steady_secs: Some(15),
        },
        // 2. The data plane.
        FaultPhase {
            name: "kill-kafka",
            what: "kill -9 of the Kafka broker, 20 s down, then started again",
            fault: Fault::KillDaemon {
                daemons: &["kafka"],
                down_secs: 20,
                // While Kafka is down the push endpoint must say so.
                while_down: Some(Check::IngestUnready { secs: 20 }),
            },
            checks: vec![Check::Recovered { secs: 240 }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "kill-cassandra",
            what: "kill -9 of Cassandra, 10 s down, then started again",
            fault: Fault::KillDaemon {
                daemons: &["cassandra"],
                down_secs: 10,
                while_down: None,
            },
            checks: vec![Check::Recovered { secs: 300 }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "stop-cassandra",
            what: "SIGSTOP of Cassandra for 30 s, then SIGCONT",
            fault: Fault::StopDaemon {
                daemon: "cassandra",
                stopped_secs: 30,
            },
            checks: vec![Check::Recovered { secs: 300 }],
            steady_secs: Some(10),
        },
        // The end: no more input, the sink reads everything.
        FaultPhase {
            name: "drain",
            what: "push clients stopped, ingest scaled to 0; the sink catches up",
            fault: Fault::Drain,
            checks: vec![
                Check::IngestGone { secs: 120 },
                Check::SinkCaughtUp { secs: 600 },
            ],
            steady_secs: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "kills Kafka and Cassandra: run by `make test-faults` in a world of its own"]
async fn faults_lose_nothing_and_status_tells() -> anyhow::Result<()> {
    let mut h = Harness::start(pipeline).await?;
    h.run(&phases()).await?;
    let Verdict { accepted, failures } = h.verdict().await?;
    h.teardown().await;
    anyhow::ensure!(
        accepted >= 100_000,
        "only {} records accepted; the suite needs at least 100,000",
        accepted
    );
    anyhow::ensure!(failures.is_empty(), "faults failed: {failures:#?}");
    Ok(())
}

// The multi-node world: every write lands on three replicas on two shared
// cores, so the load is lower (push 2 x 50/s, generator 50/s, updater 50/s).
const MULTI_GENERATOR_RATE: i32 = 50;
const MULTI_PUSH_RATE: f64 = 50.0;
const MULTI_UPDATE_RATE: f64 = 50.0;
const MULTI_NODES: usize = 3;

/// The pipeline of the multi-node scenario: replicated 3 times in Kafka and
/// Cassandra, written at LOCAL_QUORUM, with a `version` column the updater
/// fills.
fn multinode_pipeline(sc: &Scenario) -> Value {
    let mut sp = pipeline(sc);
    let spec = &mut sp["spec"];
    spec["kafka"]["topic"]["replicationFactor"] = json!(MULTI_NODES);
    spec["kafka"]["topic"]["config"] = json!({"min.insync.replicas": "2"});
    spec["cassandra"]["keyspace"]["replication"] = json!({
        "class": "NetworkTopologyStrategy",
        "dataCenters": {sc.world.cassandra_local_dc.clone(): MULTI_NODES},
    });
    spec["cassandra"]["consistency"] = json!("LOCAL_QUORUM");
    spec["cassandra"]["table"]["columns"]
        .as_array_mut()
        .expect("columns")
        .push(json!({"name": "version", "type": "bigint", "from": "/version"}));
    spec["sources"][1]["generator"]["recordsPerSecond"] = json!(MULTI_GENERATOR_RATE);
    sp
}

/// The node and broker faults of the multi-node world, in order. The
/// first node and broker stay up throughout: they are the seed and the
/// first bootstrap address.
fn multinode_phases() -> Vec<FaultPhase> {
    vec![
        FaultPhase {
            name: "steady",
            what: "no fault: the stream starts",
            fault: Fault::None,
            checks: vec![Check::Recovered { secs: 180 }],
            steady_secs: Some(20),
        },
        FaultPhase {
            name: "cassandra-1-of-3-down",
            what: "kill -9 of one Cassandra node of three, 40 s down, then started again",
            fault: Fault::KillDaemon {
                daemons: &["cassandra-3"],
                down_secs: 40,
                // Nothing changes: rows keep coming while it is down.
                while_down: Some(Check::Recovered { secs: 40 }),
            },
            checks: vec![Check::NoSinkRetries {
                reason: "unavailable",
            }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "cassandra-2-of-3-down",
            what: "kill -9 of two Cassandra nodes of three, 45 s down, then both started again",
            fault: Fault::KillDaemon {
                daemons: &["cassandra-2", "cassandra-3"],
                down_secs: 45,
                while_down: Some(Check::SinkWaiting {
                    reason: "unavailable",
                    secs: 45,
                }),
            },
            checks: vec![Check::Recovered { secs: 300 }],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "kafka-1-of-3-down",
            what: "kill -9 of one Kafka broker of three, 40 s down, then started again",
            fault: Fault::KillDaemon {
                daemons: &["kafka-3"],
                down_secs: 40,
                // Push and sink carry on while it is down.
                while_down: Some(Check::Recovered { secs: 40 }),
            },
            // Timed again after the restart, should it not have carried on.
            checks: vec![
                Check::Recovered { secs: 300 },
                Check::TopicInSync {
                    replicas: MULTI_NODES,
                    secs: 180,
                },
            ],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "kafka-2-of-3-down",
            what: "kill -9 of two Kafka brokers of three, 45 s down, then both started again",
            fault: Fault::KillDaemon {
                daemons: &["kafka-2", "kafka-3"],
                down_secs: 45,
                while_down: Some(Check::PushRefused {
                    status: 503,
                    secs: 45,
                }),
            },
            checks: vec![
                Check::Recovered { secs: 300 },
                Check::TopicInSync {
                    replicas: MULTI_NODES,
                    secs: 180,
                },
            ],
            steady_secs: Some(15),
        },
        FaultPhase {
            name: "drain",
            what: "push clients stopped, ingest scaled to 0; the sink catches up",
            fault: Fault::Drain,
            checks: vec![
                Check::IngestGone { secs: 120 },
                Check::SinkCaughtUp { secs: 600 },
            ],
            steady_secs: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "kills Cassandra nodes and Kafka brokers: run by `make test-faults` in a multi-node world of its own"]
async fn multinode_quorum_rides_out_node_and_broker_loss() -> anyhow::Result<()> {
    let world = millrace_testsupport::World::discover()?;
    for (var, want) in [
        ("MILLRACE_CASSANDRA_NODES", MULTI_NODES),
        ("MILLRACE_KAFKA_BROKERS", MULTI_NODES),
    ] {
        let got = world.var(var).and_then(|v| v.parse::<usize>().ok());
        anyhow::ensure!(
            got == Some(want),
            "{var} is {got:?} in the world's env: this scenario needs a world of {want} \
             (tests/faults/run brings one up)"
        );
    }
    let mut h = Harness::start_with(
        multinode_pipeline,
        Load {
            push_rate: MULTI_PUSH_RATE,
            update_rate: Some(MULTI_UPDATE_RATE),
        },
    )
    .await?;
    let replication = h.replication().await?;
    println!("replication: {replication}");
    let replicated = replication["topic_replication_factor"] == json!(MULTI_NODES)
        && replication["topic_min_insync_replicas"] == json!("2")
        && replication["keyspace_replication"][&world.cassandra_local_dc]
            == json!(MULTI_NODES.to_string());
    if !replicated {
        h.teardown().await;
        anyhow::bail!("the pipeline is not replicated as asked: {replication}");
    }
    h.run(&multinode_phases()).await?;
    let Verdict { accepted, failures } = h.verdict().await?;
    h.teardown().await;
    anyhow::ensure!(
        accepted >= 30_000,
        "only {} records accepted; the scenario needs at least 30,000",
        accepted
    );
    anyhow::ensure!(failures.is_empty(), "faults failed: {failures:#?}");
    Ok(())
}
