//! The sink's lag read from a Kafka cluster nobody has used yet, as the
//! operator reads it for `status.flow` right after it made the pipeline's
//! topic on a new cluster: the group coordinator is still being placed, and
//! the first OffsetFetch answers NOT_COORDINATOR. Through an admin client,
//! librdkafka then dereferenced the client's missing consumer group and the
//! operator died with SIGSEGV (on a new kind cluster, and every time
//! against a broker started a moment before); a crash here kills this test
//! binary, so it fails. The reads must instead come back, first without an
//! answer and then with the topic's offsets.
//!
//! The broker is one of its own (`tests/env/kafka-scratch`, from the test
//! world's Kafka jars), never the shared world's, which is long past its
//! first OffsetFetch.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use millrace_api::KafkaSpec;
use millrace_operator::clients::lag::{self, Readers};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The scratch broker, stopped and its data removed when dropped.
struct Broker {
    child: Child,
    dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two free neighbouring ports on 127.0.0.1: the broker's and its
/// controller's.
fn free_ports() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = first.local_addr().expect("its address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// The scratch broker and its bootstrap address.
fn start_broker() -> (Broker, String) {
    let port = free_ports();
    let dir = std::env::temp_dir().join(format!(
        "millrace-kafka-scratch-{}-{port}",
        std::process::id()
    ));
    // The package directory as cargo gives it at run time: a build shared by
    // two checkouts can hold the other's compiled-in path.
    let package = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let script = PathBuf::from(package).join("../tests/env/kafka-scratch");
    let child = Command::new(&script)
        .arg(port.to_string())
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", script.display()));
    (Broker { child, dir }, format!("127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_are_read_from_a_cluster_whose_coordinator_is_still_being_placed() {
    let (mut broker, bootstrap) = start_broker();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("an admin client");

    // The broker answers metadata once it has started (a JVM: tens of
    // seconds on a busy machine).
    let started = Instant::now();
    loop {
        if let Some(status) = broker.child.try_wait().expect("the broker's status") {
            panic!("the scratch broker exited: {status}");
        }
        if admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the scratch broker at {bootstrap} did not answer in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // As the operator does on a new cluster: the topic, then at once its
    // sink's offsets.
    let topic = "offsets-on-a-new-kafka";
    let made = admin
        .create_topics(
            &[NewTopic::new(topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create_topics");
    assert!(made.iter().all(Result::is_ok), "{made:?}");

    let spec: KafkaSpec = serde_json::from_value(serde_json::json!({
        "bootstrapServers": bootstrap,
        "topic": {"name": topic, "partitions": 2, "replicationFactor": 1}
    }))
    .expect("a KafkaSpec");
    let readers = Readers::default();
    let reader = readers.get(&spec, None).expect("an offset reader");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut unanswered = 0;
    let answer = loop {
        // A group nobody used each time, as a new pipeline's sink is.
        let group = format!("sink-{unanswered}");
        let r = reader.clone();
        let read = tokio::task::spawn_blocking(move || lag::read(&r, &group, topic, None))
            .await
            .expect("the read's thread");
        if let Some(partitions) = read {
            break partitions;
        }
        unanswered += 1;
        assert!(
            Instant::now() < deadline,
            "no offsets after {unanswered} reads in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("offsets read after {unanswered} reads without an answer: {answer:?}");
    assert_eq!(answer.len(), 2, "{answer:?}");
    for (i, p) in answer.iter().enumerate() {
        assert_eq!(p.partition, i32::try_from(i).expect("small"));
        assert_eq!(p.committed, None, "a group that never committed: {p:?}");
        assert_eq!((p.low, p.high), (0, 0), "an empty topic: {p:?}");
    }
}
