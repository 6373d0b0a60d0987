//! What the runner scenario tests share: the runner binary started as a
//! child process, a pipeline with its own topic, dead-letter topic, keyspace
//! and table, and ways to look at what landed.
//!
//! Each test makes its own names and cleans up; nothing is mocked.

#![allow(dead_code)] // each test file uses a different part of this

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::TryStreamExt;
use millrace_api::{KeyspaceSpec, Replication, TableSpec, cql};
use millrace_testsupport::{
    Deadline, TestNamespace, World, poll_until, unique_cql_name, unique_name,
};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use serde_json::{Value, json};

/// The namespace written into test pipelines (the consumer group is
/// `millrace.NS.NAME`).
pub const NAMESPACE: &str = "runner-tests";

/// A user record of the seed's shape (the first of the randomuser fixture
/// page) with a fresh id, so every call is a new row, and `user-{n}` as its
/// first name.
pub fn fixture_user(n: u32) -> Value {
    let mut record = millrace_testsupport::randomuser_page(1)[0].clone();
    record["login"]["uuid"] = json!(uuid::Uuid::new_v4().to_string());
    record["name"]["first"] = json!(format!("user-{n}"));
    record
}

pub fn world() -> World {
    World::discover().expect("the test world (run tests/env/up)")
}

/// Builds the runner once per test binary (incrementally, in the usual
/// target directory) and returns its path.
pub fn runner_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "millrace-runner",
                "--bin",
                "millrace-runner",
                "--message-format=json",
            ])
            .current_dir(millrace_testsupport::repo_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo build -p millrace-runner");
        assert!(out.status.success(), "building the runner failed");
        out.stdout
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .find_map(|msg| {
                (msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "millrace-runner")
                    .then(|| msg["executable"].as_str().map(PathBuf::from))
                    .flatten()
            })
            .expect("cargo reported the runner's executable")
    })
}

/// A TCP port nothing listens on right now, out of the way of outgoing
/// connections ([`millrace_testsupport::free_port`]).
pub fn free_port() -> u16 {
    millrace_testsupport::free_port().expect("a free port on 127.0.0.1")
}

/// The seed's table, as in `examples/randomuser.yaml`.
pub fn randomuser_table(name: &str) -> Value {
    json!({
        "name": name,
        "columns": [
            {"name": "id", "type": "uuid", "from": "/login/uuid"},
            {"name": "first_name", "type": "text", "from": "/name/first"},
            {"name": "last_name", "type": "text", "from": "/name/last"},
            {"name": "gender", "type": "text", "from": "/gender"},
            {"name": "address", "type": "text",
             "template": "{/location/street/number} {/location/street/name}, {/location/city}, {/location/state}, {/location/country}"},
            {"name": "post_code", "type": "text", "from": "/location/postcode"},
            {"name": "email", "type": "text", "from": "/email"},
            {"name": "username", "type": "text", "from": "/login/username"},
            {"name": "registered_date", "type": "timestamp", "from": "/registered/date"},
            {"name": "phone", "type": "text", "from": "/phone"},
            {"name": "picture", "type": "text", "from": "/picture/medium"},
        ],
        "partitionKey": ["id"],
    })
}

/// A fixture's pipeline in a namespace of the world's cluster
/// ([`Fixture::in_cluster`]).
pub struct InCluster {
    pub ns: TestNamespace,
    /// The pipeline file runners read.
    pub path: PathBuf,
    env: Vec<(String, String)>,
}

impl InCluster {
    /// The environment of a runner that is Pod `pod` of the namespace.
    pub fn env(&self, pod: &str) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push(("POD_NAME".to_owned(), pod.to_owned()));
        env
    }
}

/// A pipeline's Kafka topics and Cassandra table, made for one test.
pub struct Fixture {
    pub world: World,
    pub name: String,
    pub topic: String,
    pub dlq: String,
    pub keyspace: String,
    pub table: TableSpec,
    pub session: Session,
    pub dir: PathBuf,
    cleaned: bool,
}

impl Fixture {
    /// Creates the topic (`partitions`), the dead-letter topic, the keyspace
    /// and the table, as the operator would.
    pub async fn new(prefix: &str, partitions: i32, table: Value) -> anyhow::Result<Self> {
        let world = world();
        let name = unique_name(prefix);
        let topic = format!("{name}.records");
        let dlq = format!("{name}.dlq");
        let admin = admin(&world)?;
        let created = admin
            .create_topics(
                &[
                    NewTopic::new(&topic, partitions, TopicReplication::Fixed(1)),
                    NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
                ],
                &admin_options(),
            )
            .await?;
        for r in created {
            r.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
        }
        let keyspace = unique_cql_name(&prefix.replace('-', "_"));
        let table: TableSpec = serde_json::from_value(table)?;
        let session = world.cassandra_session().await?;
        let ks = KeyspaceSpec {
            name: keyspace.clone(),
            replication: Replication::simple(1),
        };
        session
            .query_unpaged(cql::create_keyspace(&ks), &[])
            .await?;
        session
            .query_unpaged(cql::create_table(&keyspace, &table)?, &[])
            .await?;
        session.await_schema_agreement().await?;
        let dir = std::env::temp_dir().join(format!("millrace-{name}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            world,
            name,
            topic,
            dlq,
            keyspace,
            table,
            session,
            dir,
            cleaned: false,
        })
    }

    /// The StreamPipeline document for this fixture with `sources`.
    pub fn pipeline(&self, sources: Value) -> Value {
        json!({
            "apiVersion": "millrace.io/v1alpha1",
            "kind": "StreamPipeline",
            "metadata": {"name": self.name, "namespace": NAMESPACE},
            "spec": {
                "kafka": {
                    "bootstrapServers": self.world.kafka_bootstrap,
                    "topic": {"name": self.topic},
                },
                "cassandra": {
                    "contactPoints": self.world.cassandra_contact_points,
                    "localDatacenter": self.world.cassandra_local_dc,
                    "keyspace": {"name": self.keyspace, "replication": {"class": "SimpleStrategy", "replicationFactor": 1}},
                    "table": self.table,
                    "consistency": "LOCAL_QUORUM",
                },
                "sources": sources,
                "runner": {"maxInFlight": 256, "logFormat": "text"},
                "deadLetter": {"topic": self.dlq},
            }
        })
    }

    /// Writes `pipeline` to this fixture's directory and returns its path.
    pub fn write_pipeline(&self, file: &str, pipeline: &Value) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(file);
        std::fs::write(&path, serde_json::to_vec_pretty(pipeline)?)?;
        Ok(path)
    }

    /// Environment for a runner of this fixture: Cassandra's credentials.
    pub fn runner_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "MILLRACE_CASSANDRA_USERNAME".into(),
                self.world.cassandra_username.clone(),
            ),
            (
                "MILLRACE_CASSANDRA_PASSWORD".into(),
                self.world.cassandra_password().to_owned(),
            ),
        ]
    }

    /// Starts a runner of this fixture in `role` with `pipeline`.
    pub fn start(&self, role: &str, pipeline: &Value, label: &str) -> anyhow::Result<Runner> {
        let path = self.write_pipeline(&format!("{label}.json"), pipeline)?;
        Runner::start(
            role,
            &path,
            &self.runner_env(),
            &self.dir.join(format!("{label}.log")),
        )
    }

    /// `pipeline` moved into a new namespace (`ns_prefix`) of the world's
    /// cluster and written to `file`, for runners that hold Leases there
    /// ([`InCluster::env`]).
    pub async fn in_cluster(
        &self,
        ns_prefix: &str,
        file: &str,
        mut pipeline: Value,
    ) -> anyhow::Result<InCluster> {
        let client = self.world.kube_client().await?;
        let ns = TestNamespace::create(&client, ns_prefix).await?;
        pipeline["metadata"]["namespace"] = json!(ns.name);
        let path = self.write_pipeline(file, &pipeline)?;
        let kubeconfig = self
            .world
            .kubeconfig
            .clone()
            .context("the test world has no kubeconfig: bring it up again with tests/env/up")?
            .display()
            .to_string();
        let mut env = self.runner_env();
        env.extend([
            ("KUBECONFIG".to_owned(), kubeconfig),
            ("POD_NAMESPACE".to_owned(), ns.name.clone()),
        ]);
        Ok(InCluster { ns, path, env })
    }

    pub fn qualified_table(&self) -> String {
        cql::qualified_table(&self.keyspace, &self.table.name)
    }

    /// Every row `cql` (a SELECT without markers) returns, as `R`.
    pub async fn select<R>(&self, cql: String) -> anyhow::Result<Vec<R>>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let result = self
            .session
            .query_unpaged(cql, &[])
            .await?
            .into_rows_result()?;
        Ok(result.rows::<R>()?.collect::<Result<_, _>>()?)
    }

    /// Every value of the table's first partition key column, by paging.
    pub async fn ids(&self) -> anyhow::Result<Vec<uuid::Uuid>> {
        let mut query = scylla::statement::unprepared::Statement::new(format!(
            "SELECT id FROM {}",
            self.qualified_table()
        ));
        query.set_page_size(5000);
        let rows = self
            .session
            .query_iter(query, &[])
            .await?
            .rows_stream::<(uuid::Uuid,)>()?;
        Ok(rows.map_ok(|(id,)| id).try_collect().await?)
    }

    pub async fn row_count(&self) -> anyhow::Result<usize> {
        Ok(self.ids().await?.len())
    }

    /// Waits until the table has exactly `n` rows.
    pub async fn wait_for_rows(&self, n: usize, deadline: Deadline) -> anyhow::Result<()> {
        poll_until(
            &format!("{n} rows in {}", self.qualified_table()),
            deadline,
            || async {
                let count = self.row_count().await?;
                if count > n {
                    bail!("{count} rows, more than {n}");
                }
                Ok((count == n).then_some(()))
            },
        )
        .await
    }

    /// Produces `records` straight to the pipeline's topic (as ingest
    /// would, keyed by `/login/uuid` when present).
    /// A producer as a careful client sets one up: idempotent, every
    /// replica acknowledging; sending one record at a time keeps their
    /// order.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(self
            .world
            .kafka_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?)
    }

    pub async fn produce(&self, records: &[Vec<u8>]) -> anyhow::Result<()> {
        produce_to(&self.world, &self.topic, records).await
    }

    /// Reads `n` messages of `topic` from the beginning.
    pub async fn consume(
        &self,
        topic: &str,
        n: usize,
        deadline: Deadline,
    ) -> anyhow::Result<Vec<OwnedMessage>> {
        let consumer: StreamConsumer = self
            .world
            .kafka_config()
            .set("group.id", unique_name("reader"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        consumer.subscribe(&[topic])?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let msg = tokio::time::timeout(deadline.remaining(), consumer.recv())
                .await
                .with_context(|| format!("only {} of {n} messages in {topic}", out.len()))??;
            out.push(msg.detach());
        }
        Ok(out)
    }

    /// Messages in the topic: the sum of its partitions' high watermarks.
    pub fn topic_size(&self, topic: &str) -> anyhow::Result<i64> {
        let consumer: BaseConsumer = self.world.kafka_config().create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut total = 0;
        for t in md.topics() {
            for p in t.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
                total += high - low;
            }
        }
        Ok(total)
    }

    /// The sink group's committed offsets and the topic's high watermarks,
    /// per partition.
    pub fn committed_and_end(&self) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
        let group = millrace_api::consumer_group(NAMESPACE, &self.name);
        let consumer: BaseConsumer = self.world.kafka_config().set("group.id", &group).create()?;
        let md = consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(&self.topic, p.id());
                let (_, high) =
                    consumer.fetch_watermarks(&self.topic, p.id(), Duration::from_secs(10))?;
                ends.insert(p.id(), high);
            }
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let mut out = HashMap::new();
        for e in committed.elements() {
            let c = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            out.insert(e.partition(), (c, ends[&e.partition()]));
        }
        Ok(out)
    }

    /// Deletes the pipeline's topic, waiting until Kafka no longer has it.
    pub async fn delete_topic(&self) -> anyhow::Result<()> {
        admin(&self.world)?
            .delete_topics(&[&self.topic], &admin_options())
            .await?;
        poll_until("the topic to be gone", Deadline::secs(30), || async {
            let consumer: BaseConsumer = self.world.kafka_config().create()?;
            let md = consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(10))?;
            Ok(md
                .topics()
                .iter()
                .all(|t| t.error().is_some() || t.partitions().is_empty())
                .then_some(()))
        })
        .await
    }

    /// Creates the pipeline's topic (again) with `partitions`, retrying
    /// while Kafka still finishes deleting an earlier one of its name.
    pub async fn create_topic(&self, partitions: i32) -> anyhow::Result<()> {
        let admin = admin(&self.world)?;
        poll_until("the topic to be created", Deadline::secs(60), || async {
            let results = admin
                .create_topics(
                    &[NewTopic::new(
                        &self.topic,
                        partitions,
                        TopicReplication::Fixed(1),
                    )],
                    &admin_options(),
                )
                .await?;
            Ok(results.iter().all(Result::is_ok).then_some(()))
        })
        .await
    }

    /// Sets `topic`'s configuration to `configs` (Kafka's AlterConfigs:
    /// settings not named go back to the broker's defaults).
    pub async fn set_topic_config(
        &self,
        topic: &str,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (key, value) in configs {
            alter = alter.set(key, value);
        }
        for r in admin(&self.world)?
            .alter_configs(&[alter], &admin_options())
            .await?
        {
            r.map_err(|(what, e)| anyhow::anyhow!("configuring {what:?}: {e}"))?;
        }
        Ok(())
    }

    /// Drops the keyspace, deletes the topics and the temporary directory.
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        self.cleaned = true;
        remove(&self.world, &self.keyspace, &[&self.topic, &self.dlq]).await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A test that fails before `cleanup` still removes its keyspace and
/// topics; its directory (the runners' logs) stays for reading.
impl Drop for Fixture {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let world = self.world.clone();
        let keyspace = self.keyspace.clone();
        let topics = [self.topic.clone(), self.dlq.clone()];
        eprintln!("test failed: runner logs are in {}", self.dir.display());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(remove(&world, &keyspace, &[&topics[0], &topics[1]]))
        })
        .join();
    }
}

async fn remove(world: &World, keyspace: &str, topics: &[&str]) -> anyhow::Result<()> {
    let session = world.cassandra_session().await?;
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await?;
    admin(world)?
        .delete_topics(topics, &admin_options())
        .await?;
    Ok(())
}

pub async fn produce_to(world: &World, topic: &str, records: &[Vec<u8>]) -> anyhow::Result<()> {
    let producer: FutureProducer = world
        .kafka_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let sends = records.iter().map(|payload| {
        let producer = producer.clone();
        async move {
            let key = serde_json::from_slice::<Value>(payload)
                .ok()
                .and_then(|v| {
                    v.pointer("/login/uuid")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(payload),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))
        }
    });
    futures::future::try_join_all(sends).await?;
    Ok(())
}

fn admin(world: &World) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(world.kafka_config().create()?)
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Writes `token` as the one token of each push source of the pipeline in
/// `path`, as the operator's mount of its tokens Secret would hold it.
fn write_push_tokens(pipeline: &Path, dir: &Path, token: &str) -> anyhow::Result<()> {
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(pipeline)?)?;
    let _ = std::fs::remove_dir_all(dir);
    for source in doc["spec"]["sources"].as_array().into_iter().flatten() {
        if source.get("httpPush").is_some() {
            let source_dir = dir.join(source["name"].as_str().unwrap_or_default());
            std::fs::create_dir_all(&source_dir)?;
            std::fs::write(source_dir.join("token"), token)?;
        }
    }
    Ok(())
}

/// A runner process. Killed when dropped.
pub struct Runner {
    child: Child,
    /// The push endpoint's port.
    pub port: u16,
    /// The port of /metrics, /healthz and /readyz.
    pub metrics_port: u16,
    /// The bearer token every push source of the pipeline accepts (written
    /// where `MILLRACE_PUSH_TOKENS_DIR` points, unless `env` sets it).
    pub push_token: String,
    pub log: PathBuf,
}

impl Runner {
    /// Starts `millrace-runner ROLE --pipeline PATH` on free ports, with
    /// only `env` (and PATH) in its environment: no KUBECONFIG, so a pull
    /// runs standalone unless `env` says otherwise.
    pub fn start(
        role: &str,
        pipeline: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port();
        let metrics_port = free_port();
        let push_token = format!("push-{}", uuid::Uuid::new_v4().simple());
        let tokens_dir = log.with_extension("push-tokens");
        write_push_tokens(pipeline, &tokens_dir, &push_token)?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(runner_binary())
            .args([role, "--pipeline"])
            .arg(pipeline)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // MILLRACE_TEST_RUNNER_LOG=debug to see more when a test fails.
            .env(
                "RUST_LOG",
                std::env::var("MILLRACE_TEST_RUNNER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env(millrace_api::push_auth::TOKENS_DIR_ENV, &tokens_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting the runner")?;
        Ok(Self {
            child,
            port,
            metrics_port,
            push_token,
            log: log.to_owned(),
        })
    }

    /// `path` on the push endpoint.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A POST of `body` to `path` on the push endpoint, with the token.
    pub fn push(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.post(self.url(path)).bearer_auth(&self.push_token)
    }

    /// `path` on the metrics and health port.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.metrics_port)
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self, deadline: Deadline) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let url = self.metrics_url("/readyz");
        let log = self.log.clone();
        let child = &mut self.child;
        poll_until("the runner to be ready", deadline, || {
            let exited = child.try_wait().ok().flatten();
            let request = client.get(&url).send();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    bail!("the runner exited ({status}); log:\n{}", tail(&log));
                }
                Ok(request.await.ok().filter(|r| r.status() == 200).map(|_| ()))
            }
        })
        .await
    }

    /// The runner's `/metrics`.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(self.metrics_url("/metrics"))
            .await?
            .text()
            .await?)
    }

    /// The value of one metric sample, such as
    /// `millrace_rows_written_total`, or 0 when absent.
    pub async fn metric(&self, sample: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    /// The metric sample once it has reached `at_least`. A row is readable
    /// in Cassandra before the driver's answer reaches the sink and its
    /// counter moves, so a test that saw its rows waits for the count too.
    pub async fn metric_reaching(
        &self,
        sample: &str,
        at_least: f64,
        deadline: Deadline,
    ) -> anyhow::Result<f64> {
        poll_until(
            &format!("{sample} to reach {at_least}"),
            deadline,
            || async {
                let value = self.metric(sample).await?;
                Ok((value >= at_least).then_some(value))
            },
        )
        .await
    }

    /// Whether this sink has partitions and has written everything in
    /// them (`millrace_consumer_lag` 0 for each).
    pub async fn lag_is_zero(&self) -> anyhow::Result<bool> {
        let metrics = self.metrics().await?;
        let lags: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("millrace_consumer_lag{"))
            .collect();
        Ok(!lags.is_empty() && lags.iter().all(|l| l.ends_with(" 0")))
    }

    /// SIGKILL: no draining, no commit.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn terminate(&mut self, deadline: Deadline) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let child = &mut self.child;
        poll_until("the runner to exit after SIGTERM", deadline, || {
            let exited = child.try_wait();
            async move { Ok(exited?) }
        })
        .await
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, deadline: Deadline) -> anyhow::Result<ExitStatus> {
        let child = &mut self.child;
        poll_until("the runner to exit", deadline, || {
            let exited = child.try_wait();
            async move { Ok(exited?) }
        })
        .await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log file, for failure messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A CA made for the test.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        })
    }

    /// `(certificate PEM, key PEM)` valid for `names` (IP addresses
    /// become IP SANs).
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}
