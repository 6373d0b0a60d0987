//! The fault suite's harness: the world it runs in (guarded, so it is never
//! the main one), the pipeline with its operator, push clients and watchers
//! started, the phases' record (window, injection time, recovery, notes),
//! the waits each fault's checks are made of, and the verdict read back at
//! the end.

mod phases;
mod push;
mod readback;
mod verdict;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use millrace_testsupport::kube_helpers::{
    pod_ip, pod_ready, pod_ready_with_config, pods, restart_count,
};
use millrace_testsupport::{Deadline, World, poll_until, repo_root};
use serde_json::Value;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use crate::operator_common::{self, Launch, Operator, Scenario};
pub use phases::{Check, Fault, FaultPhase};
use push::{PUSH_CLIENTS, PushLog, push_client, push_id, resolver, update_client};
pub use verdict::Verdict;
use watch::{ConditionChange, watch_conditions, watch_memory};

/// The pipeline's name; its Service and runner Pods carry it too.
pub const PIPELINE: &str = "faults";
/// The pipeline's table, in the scenario's keyspace.
pub const TABLE: &str = "users";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Refuses to run anywhere but a world of its own: this test kills Kafka
/// and Cassandra.
fn guard(world: &World) -> anyhow::Result<PathBuf> {
    let dir = world
        .var("MILLRACE_WORLD")
        .context("MILLRACE_WORLD is not set: run the fault suite with tests/faults/run")?;
    let home = std::env::var("MILLRACE_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.cache/millrace",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let main = Path::new(&home).join("world");
    let dir = PathBuf::from(dir);
    if dir == main || world.kafka_bootstrap.ends_with(":19092") {
        bail!(
            "refusing to inject faults into the main world ({}); run tests/faults/run",
            dir.display()
        );
    }
    Ok(dir)
}

/// The operator as `operator_common` starts it, but from the run's copy of
/// the binaries (`MILLRACE_NODE_BIN_DIR`) so it needs no build of a tree
/// others may be editing, logging to the results, and with its pid left in
/// the world's directory so `tests/faults/run` can stop it should this test
/// die first.
async fn launch_operator(
    world: &World,
    world_dir: &Path,
    namespace: &str,
) -> anyhow::Result<Operator> {
    let binary = match std::env::var("MILLRACE_NODE_BIN_DIR") {
        Ok(dir) => Path::new(&dir).join("millrace-operator"),
        Err(_) => operator_common::operator_binary()?,
    };
    std::fs::create_dir_all(results_dir())?;
    Operator::launch(
        world,
        namespace,
        &Launch {
            binary: Some(binary),
            log: Some(results_dir().join("operator.log")),
            rust_log: "info,kube=warn",
            healthz_secs: 60,
            pid_file: Some(world_dir.join("faults-operator.pid")),
            ..Launch::default()
        },
    )
    .await
}

/// Namespaces of an earlier run of this suite that died before its
/// cleanup: their runner Pods would otherwise start again with the world
/// and load it.
async fn remove_leftovers(world: &World) -> anyhow::Result<()> {
    let client = world.kube_client().await?;
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    for ns in api
        .list(&kube::api::ListParams::default().labels("millrace.io/test=true"))
        .await?
    {
        let Some(name) = ns.metadata.name else {
            continue;
        };
        if name.starts_with("faults-") && ns.metadata.deletion_timestamp.is_none() {
            println!("removing namespace {name}, left by an earlier run");
            api.delete(&name, &Default::default()).await?;
        }
    }
    Ok(())
}

fn results_dir() -> PathBuf {
    std::env::var("MILLRACE_FAULTS_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("tests/faults/results"))
}

/// How a run's load is made.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// Records per second of each of the `PUSH_CLIENTS` push clients.
    pub push_rate: f64,
    /// Records per second of the updater (the same keys written again with
    /// a higher version), if it runs; the verdict then checks each key's
    /// row has its latest version.
    pub update_rate: Option<f64>,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            push_rate: 100.0,
            update_rate: None,
        }
    }
}

/// One phase's window and what happened in it.
#[derive(Debug, Default, Clone)]
struct Phase {
    name: String,
    what: String,
    start_ms: i64,
    end_ms: i64,
    injected_ms: Option<i64>,
    recovery: Option<Duration>,
    notes: Vec<String>,
    failed: bool,
    /// The sink's metrics when the fault was injected (data-plane faults).
    sink_before: Option<HashMap<String, f64>>,
    /// How much each of the sink's write-retry counters grew over the
    /// fault, once measured.
    sink_retries: Option<BTreeMap<String, f64>>,
}

/// The tasks that run beside the phases, and what they collect.
struct Background {
    stop: channel::Sender<bool>,
    conditions_task: JoinHandle<()>,
    memory_task: JoinHandle<()>,
    resolver_task: JoinHandle<()>,
    push_stop: channel::Sender<bool>,
    push_clients: Vec<JoinHandle<()>>,
    conditions: Arc<Mutex<Vec<ConditionChange>>>,
    peak_mib: Arc<AtomicU64>,
}

pub struct Harness {
    sc: Scenario,
    world: World,
    world_dir: PathBuf,
    operator: Option<Operator>,
    /// The pipeline as last applied; the phases edit it.
    pipeline: Value,
    push: Arc<Mutex<PushLog>>,
    pods: Api<Pod>,
    session: scylla::client::session::Session,
    /// `keyspace.table`
    table: String,
    group: String,
    dlq: String,
    phases: Vec<Phase>,
    run_started: Instant,
    background: Background,
}

impl Harness {
    /// Brings the suite's world to its first phase: leftovers of an earlier
    /// run removed, the operator started, the pipeline `pipeline` makes
    /// applied and Ready, and the watchers and push clients running.
    pub async fn start(pipeline: impl FnOnce(&Scenario) -> Value) -> anyhow::Result<Self> {
        Self::start_with(pipeline, Load::default()).await
    }

    /// As [`Harness::start`], with the load `load` says.
    pub async fn start_with(
        pipeline: impl FnOnce(&Scenario) -> Value,
        load: Load,
    ) -> anyhow::Result<Self> {
        let run_started = Instant::now();
        let world = World::discover()?;
        guard(&world)?;
        remove_leftovers(&world).await?;
        let sc = Scenario::new("faults").await?;
        let world_dir = guard(&sc.world)?;
        let world = sc.world.clone();
        // The operator must be given this world's kubeconfig, never fall
        // back to the user's.
        world.kubeconfig.as_ref().context("KUBECONFIG")?;
        let operator = launch_operator(&world, &world_dir, &sc.ns.name).await?;

        let pipeline = pipeline(&sc);
        sc.apply(&pipeline).await?;
        sc.wait_condition(PIPELINE, "Ready", "True", None, 240)
            .await?;
        let session = world.cassandra_session().await?;
        let table = format!("{}.{TABLE}", sc.keyspace);
        let group = millrace_api::consumer_group(&sc.ns.name, PIPELINE);
        let dlq = format!("{}.dlq", sc.topic);

        let (stop, stop_rx) = channel::channel(false);
        let conditions = Arc::new(Mutex::new(Vec::new()));
        let conditions_task = tokio::spawn(watch_conditions(
            sc.pipelines(),
            conditions.clone(),
            stop_rx.clone(),
        ));
        let peak_mib = Arc::new(AtomicU64::new(0));
        let memory_task = tokio::spawn(watch_memory(
            world_dir.clone(),
            peak_mib.clone(),
            stop_rx.clone(),
        ));
        let eps = Arc::new(Mutex::new(Vec::new()));
        let resolver_task = tokio::spawn(resolver(
            sc.client.clone(),
            sc.ns.name.clone(),
            eps.clone(),
            stop_rx.clone(),
        ));
        let push = Arc::new(Mutex::new(PushLog::default()));
        let next_id = Arc::new(AtomicU64::new(0));
        let (push_stop, push_stop_rx) = channel::channel(false);
        let mut push_clients: Vec<_> = (0..PUSH_CLIENTS)
            .map(|n| {
                tokio::spawn(push_client(
                    n,
                    load.push_rate,
                    next_id.clone(),
                    eps.clone(),
                    push.clone(),
                    push_stop_rx.clone(),
                ))
            })
            .collect();
        if let Some(rate) = load.update_rate {
            push_clients.push(tokio::spawn(update_client(
                rate,
                eps.clone(),
                push.clone(),
                push_stop_rx.clone(),
            )));
        }

        let pods: Api<Pod> = sc.ns.api();
        Ok(Self {
            sc,
            world,
            world_dir,
            operator: Some(operator),
            pipeline,
            push,
            pods,
            session,
            table,
            group,
            dlq,
            phases: Vec::new(),
            run_started,
            background: Background {
                stop,
                conditions_task,
                memory_task,
                resolver_task,
                push_stop,
                push_clients,
                conditions,
                peak_mib,
            },
        })
    }

    /// What the clusters say of the pipeline's replication: the topic's
    /// replication factor and `min.insync.replicas` (as set on the topic),
    /// and the keyspace's replication.
    pub async fn replication(&self) -> anyhow::Result<Value> {
        let topic = operator_common::describe_topic(&self.world, &self.sc.topic)
            .await?
            .context("the topic does not exist")?;
        let (replication,) = self
            .session
            .query_unpaged(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
                (&self.sc.keyspace,),
            )
            .await?
            .into_rows_result()?
            .single_row::<(HashMap<String, String>,)>()?;
        Ok(serde_json::json!({
            "topic_replication_factor": topic.replication_factor,
            "topic_min_insync_replicas": topic.config.get("min.insync.replicas"),
            "keyspace_replication": replication,
        }))
    }

    /// The pipeline and the operator removed, then the scenario's topic,
    /// keyspace and namespace.
    pub async fn teardown(mut self) {
        if let Some(op) = self.operator.take() {
            let _ = self.sc.delete_pipeline(PIPELINE, 120).await;
            let _ = op.stop().await;
        }
        let _ = self.sc.cleanup().await;
    }

    fn begin(&mut self, name: &str, what: &str) {
        let now = now_ms();
        if let Some(p) = self.phases.last_mut() {
            p.end_ms = now;
        }
        println!(
            "[{}] phase {name}: {what}",
            chrono::Utc::now().format("%H:%M:%S")
        );
        self.phases.push(Phase {
            name: name.into(),
            what: what.into(),
            start_ms: now,
            ..Default::default()
        });
    }

    fn phase(&mut self) -> &mut Phase {
        self.phases.last_mut().expect("a phase")
    }

    fn injected(&mut self) -> Instant {
        self.phase().injected_ms = Some(now_ms());
        Instant::now()
    }

    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("    {text}");
        self.phase().notes.push(text);
    }

    /// The first push record accepted after `since_ms`.
    fn first_push_after(&self, since_ms: i64) -> Option<uuid::Uuid> {
        let l = self.push.lock().unwrap_or_else(|p| p.into_inner());
        l.accepted
            .iter()
            .find(|(_, _, at)| *at > since_ms)
            .map(|(first, _, _)| push_id(*first))
    }

    async fn row_exists(&self, id: uuid::Uuid) -> anyhow::Result<bool> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT id FROM {} WHERE id = ?", self.table), (id,))
            .await?
            .into_rows_result()?;
        Ok(rows.rows_num() > 0)
    }

    async fn ready(&self) -> anyhow::Result<bool> {
        let sp = self.sc.pipelines().get(PIPELINE).await?;
        let generation = sp.metadata.generation;
        Ok(operator_common::condition(&sp, "Ready")
            .is_some_and(|c| c.status == "True" && c.observed_generation == generation))
    }

    /// Recovered: a record pushed after `since_ms` is a row, and the
    /// pipeline is Ready for its current generation. The time is measured
    /// from the fault's injection.
    async fn wait_recovered(&mut self, injected: Instant, since_ms: i64, secs: u64) {
        let result = poll_until(
            "end-to-end recovery (a record accepted after the fault is a row; Ready=True)",
            Deadline::secs(secs),
            || async {
                let Some(id) = self.first_push_after(since_ms) else {
                    bail!("no push accepted yet since the fault");
                };
                if !self.row_exists(id).await? {
                    bail!("{id} (accepted after the fault) is not a row yet");
                }
                if !self.ready().await? {
                    bail!("rows flow again, but the pipeline is not Ready yet");
                }
                Ok(Some(()))
            },
        )
        .await;
        match result {
            Ok(()) => {
                let took = injected.elapsed();
                // A phase that checks again after a restart keeps the
                // first time: when the stream carried on.
                if self.phase().recovery.is_none() {
                    self.phase().recovery = Some(took);
                    self.note(format!("recovered in {:.1}s", took.as_secs_f64()));
                } else {
                    self.note(format!(
                        "still flowing {:.1}s after the fault",
                        took.as_secs_f64()
                    ));
                }
            }
            Err(e) => self.fail(format!("{e:#}")),
        }
    }

    fn fail(&mut self, text: String) {
        println!("    FAILED: {text}");
        let p = self.phase();
        p.failed = true;
        p.notes.push(format!("failed: {text}"));
    }

    /// The sink Pods' Prometheus metrics, each series summed over the
    /// Pods, keyed by name and labels as exposed
    /// (`millrace_write_retries_total{reason="unavailable"}`).
    async fn sink_metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let pods = self.runner_pods("sink").await?;
        anyhow::ensure!(!pods.is_empty(), "no sink Pod");
        let mut out = HashMap::new();
        for pod in &pods {
            let ip = pod_ip(pod).context("a sink Pod without an address")?;
            let text = reqwest::Client::new()
                .get(format!(
                    "http://{ip}:{}/metrics",
                    millrace_api::ports::METRICS
                ))
                .timeout(Duration::from_secs(5))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                if let Some((series, value)) = line.rsplit_once(' ')
                    && let Ok(v) = value.parse::<f64>()
                {
                    *out.entry(series.to_string()).or_default() += v;
                }
            }
        }
        Ok(out)
    }

    /// What the sink's counters of write retries grew by since `before`,
    /// by reason.
    fn retries_since(
        before: &HashMap<String, f64>,
        now: &HashMap<String, f64>,
    ) -> BTreeMap<String, f64> {
        now.iter()
            .filter_map(|(series, v)| {
                let reason = series
                    .strip_prefix("millrace_write_retries_total{reason=\"")?
                    .strip_suffix("\"}")?;
                let grew = v - before.get(series).copied().unwrap_or(0.0);
                (grew > 0.0).then(|| (reason.to_string(), grew))
            })
            .collect()
    }

    async fn runner_pods(&self, component: &str) -> anyhow::Result<Vec<Pod>> {
        pods(
            &self.pods,
            &format!(
                "app.kubernetes.io/instance={PIPELINE},app.kubernetes.io/component={component}"
            ),
        )
        .await
    }

    /// kill -9 of the runner process of one ready Pod of `component`; the
    /// node agent starts the container again.
    async fn kill_runner(&mut self, component: &str) -> anyhow::Result<(String, i32)> {
        let pods = self.runner_pods(component).await?;
        let pod = pods
            .iter()
            .find(|p| pod_ready(p))
            .with_context(|| format!("no ready {component} Pod"))?;
        let uid = pod.metadata.uid.clone().context("uid")?;
        let name = pod.metadata.name.clone().context("name")?;
        let pid_file = self
            .world_dir
            .join("node/pods")
            .join(&uid)
            .join("pids/runner");
        let pid = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .trim()
            .to_string();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        anyhow::ensure!(
            String::from_utf8_lossy(&cmdline).contains("millrace-runner"),
            "pid {pid} of {name} is not a runner"
        );
        signal(&pid, "KILL")?;
        self.note(format!("kill -9 {pid} (runner of Pod {name})"));
        Ok((name, restart_count(pod)))
    }

    async fn wait_pod_restarted(&mut self, name: &str, before: i32) {
        let pods = self.pods.clone();
        let r = poll_until(
            &format!("{name} restarted by the node agent and ready"),
            Deadline::secs(120),
            || async {
                let p = pods.get(name).await?;
                Ok((restart_count(&p) > before && pod_ready(&p)).then_some(restart_count(&p)))
            },
        )
        .await;
        match r {
            Ok(n) => self.note(format!("{name}: restartCount {before} -> {n}, ready again")),
            Err(e) => self.fail(format!("{e:#}")),
        }
    }

    fn daemon_pid(&self, name: &str) -> anyhow::Result<String> {
        let file = self.world_dir.join("pids").join(format!("{name}.pid"));
        let pid = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?
            .trim()
            .to_string();
        let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline"))?)
            .replace('\0', " ");
        // The world's data directory is on the daemon's command line, so a
        // pid reused by another process (or the main world) is never hit.
        anyhow::ensure!(
            cmdline.contains(&*self.world_dir.to_string_lossy()),
            "pid {pid} is not this world's {name}: {cmdline:.200}"
        );
        Ok(pid)
    }

    /// `tests/env/restart` of `names`: started together, then each waited
    /// for until it answers.
    async fn restart_daemons(&mut self, names: &[&str]) -> anyhow::Result<Duration> {
        let started = Instant::now();
        // The scripts of the checkout that brought the world up (its env
        // file names it): the build may be shared with other checkouts, so
        // this binary's own idea of the repository can be another one.
        let repo = self
            .world
            .var("MILLRACE_REPO")
            .map(PathBuf::from)
            .unwrap_or_else(repo_root);
        let out = tokio::process::Command::new(repo.join("tests/env/restart"))
            .args(names)
            .output()
            .await?;
        let names = names.join(" ");
        anyhow::ensure!(
            out.status.success(),
            "tests/env/restart {names}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took = started.elapsed();
        self.note(format!(
            "{names} restarted and answering after {:.1}s",
            took.as_secs_f64()
        ));
        Ok(took)
    }

    /// Steady flow for `secs` between faults, so windows do not run into
    /// each other. Part of the scenario's timeline, not a wait for a state.
    async fn steady(&self, secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    async fn merge(&mut self, patch: Value) -> anyhow::Result<()> {
        self.sc.merge(PIPELINE, patch).await?;
        Ok(())
    }

    /// Waits until the runner Deployments have `ingest`/`sink` ready Pods
    /// and no others.
    async fn wait_replicas(&mut self, ingest: usize, sink: usize, secs: u64) {
        let r = poll_until(
            &format!("{ingest} ingest and {sink} sink Pods, all ready"),
            Deadline::secs(secs),
            || async {
                let i = self.runner_pods("ingest").await?;
                let s = self.runner_pods("sink").await?;
                let ok = i.len() == ingest && s.len() == sink && i.iter().chain(&s).all(pod_ready);
                Ok(ok.then_some(()))
            },
        )
        .await;
        match r {
            Ok(()) => self.note(format!("{ingest} ingest / {sink} sink Pods ready")),
            Err(e) => self.fail(format!("{e:#}")),
        }
    }

    /// Waits until every runner Pod runs the resource's current spec (the
    /// operator stamps its digest on each Deployment's Pod template, and
    /// the generation it reflects on the Deployment) and is ready.
    async fn wait_rolled(&mut self, secs: u64) {
        let r = poll_until(
            "the runner Pods rolled to the new generation",
            Deadline::secs(secs),
            || async {
                let generation = self
                    .sc
                    .pipelines()
                    .get(PIPELINE)
                    .await?
                    .metadata
                    .generation
                    .context("generation")?;
                let mut rolled = true;
                for role in ["ingest", "sink"] {
                    let hash = self
                        .sc
                        .runner_config_hash(&format!("{PIPELINE}-{role}"), generation)
                        .await?;
                    let pods = self.runner_pods(role).await?;
                    rolled &=
                        pods.len() == 1 && pods.iter().all(|p| pod_ready_with_config(p, &hash));
                }
                Ok(rolled.then_some(generation))
            },
        )
        .await;
        match r {
            Ok(g) => self.note(format!("runner Pods rolled to generation {g}, ready")),
            Err(e) => self.fail(format!("{e:#}")),
        }
    }

    /// The push clients stopped, each after its last batch got an answer
    /// (or it gave up).
    async fn stop_pushing(&mut self) {
        let _ = self.background.push_stop.send(true);
        for c in std::mem::take(&mut self.background.push_clients) {
            let _ = c.await;
        }
    }

    /// The watchers stopped; what they collected stays.
    async fn stop_watching(&mut self) {
        let _ = self.background.stop.send(true);
        let b = &mut self.background;
        let _ = tokio::join!(
            &mut b.conditions_task,
            &mut b.memory_task,
            &mut b.resolver_task
        );
    }
}

fn signal(pid: &str, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

/// Keeps a SIGSTOPped process from staying stopped if the test fails.
struct Continue(String);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = signal(&self.0, "CONT");
    }
}
