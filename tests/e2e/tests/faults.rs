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
//! Ignored by default: it kills Kafka and Cassandra, so it runs only in its
//! own world (`tests/faults/run` brings one up), never against the shared one.

mod operator_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use millrace_api::StreamPipeline;
use millrace_testsupport::kube_helpers::{pod_ip, pod_ready, pods, restart_count};
use millrace_testsupport::{Deadline, World, poll_until, repo_root};
use operator_common::{RUNNER_IMAGE, SECRET, Scenario, describe_topic, http_get};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::watch;

/// The high 64 bits of every pushed record's id; generated records have
/// random (v4) ids, so the two never mix.
const PUSH_ID_HI: u64 = 0xfa17_5eed_0000_4000;
const PUSH_CLIENTS: usize = 2;
const PUSH_BATCH: usize = 50;
/// Records per second, per push client.
const PUSH_RATE: f64 = 100.0;
// Together ~370 records/s: the faults' phases last ~6 min when recovery is
// quick, and the suite must carry at least 100,000 records.
const GENERATOR_RATE: i32 = 170;
const PIPELINE: &str = "faults";
const PARTITIONS: i32 = 3;
const RAISED_PARTITIONS: i32 = 6;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn push_id(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128((u128::from(PUSH_ID_HI) << 64) | u128::from(n))
}

fn is_push_id(id: u128) -> bool {
    (id >> 64) as u64 == PUSH_ID_HI
}

fn push_record(n: u64) -> Value {
    json!({
        "gender": if n.is_multiple_of(2) { "female" } else { "male" },
        "name": {"first": format!("Ægir{n}"), "last": "Jónsson"},
        "location": {"street": {"number": n % 9999, "name": "Mill Lane"}, "city": "Truro",
                     "state": "Cornwall", "country": "United Kingdom", "postcode": "TR1 2AB"},
        "email": format!("push{n}@example.com"),
        "login": {"uuid": push_id(n).to_string(), "username": format!("push{n}")},
        "registered": {"date": "2016-03-01T08:00:00.000Z"},
        "phone": "01872 654321",
        "picture": {"medium": "https://randomuser.me/api/portraits/med/men/3.jpg"},
    })
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

// ---------------------------------------------------------------- operator

/// The operator as a process, as `operator_common` starts it, but from the
/// run's copy of the binaries (`MILLRACE_NODE_BIN_DIR`) so it needs no build
/// of a tree others may be editing; its pid is left in the world's directory
/// so `tests/faults/run` can stop it should this test die first.
struct Operator {
    child: tokio::process::Child,
    pid_file: PathBuf,
}

impl Operator {
    async fn start(world_dir: &Path, namespace: &str, kubeconfig: &Path) -> anyhow::Result<Self> {
        let binary = match std::env::var("MILLRACE_NODE_BIN_DIR") {
            Ok(dir) => Path::new(&dir).join("millrace-operator"),
            Err(_) => operator_common::operator_binary()?,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics = format!("127.0.0.1:{port}");
        let log = results_dir().join("operator.log");
        std::fs::create_dir_all(results_dir())?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = tokio::process::Command::new(&binary)
            .args([
                "--namespace",
                namespace,
                "--runner-image",
                RUNNER_IMAGE,
                "--metrics-listen",
                &metrics,
                "--resync-seconds",
                "3",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .stdout(std::process::Stdio::from(file.try_clone()?))
            .stderr(std::process::Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid_file = world_dir.join("faults-operator.pid");
        if let Some(pid) = child.id() {
            std::fs::write(&pid_file, pid.to_string())?;
        }
        poll_until("the operator's /healthz", Deadline::secs(60), || async {
            Ok(http_get(&metrics, "/healthz").await.ok())
        })
        .await?;
        Ok(Self { child, pid_file })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = signal(&pid.to_string(), "TERM");
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

// ------------------------------------------------------------ push clients

/// What the push clients saw, shared between them.
#[derive(Default)]
struct PushLog {
    /// (first id number, count, time of the 202 in ms)
    accepted: Vec<(u64, u32, i64)>,
    /// Every id number ever sent.
    sent_upto: u64,
    /// (time ms, status) of every non-202 answer, and connection errors as 0.
    refusals: Vec<(i64, u16, bool)>,
    gave_up: Vec<(u64, u32)>,
}

/// The Service's endpoints, as kube-proxy would route: the ready Pods its
/// selector matches, else (a client keeps its last addresses) the others.
/// Read from the Pods, not EndpointSlices: the test world's Pod addresses
/// are loopback addresses, which the EndpointSlice controller leaves out.
async fn endpoints(client: &kube::Client, ns: &str, service: &str) -> Vec<String> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let Ok(svc) = services.get(service).await else {
        return Vec::new();
    };
    let selector = svc
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods(&api, &selector).await else {
        return Vec::new();
    };
    let (mut ready, mut other) = (Vec::new(), Vec::new());
    for pod in list {
        let Some(ip) = pod_ip(&pod) else { continue };
        let addr = format!("{ip}:8080");
        if pod_ready(&pod) {
            ready.push(addr);
        } else if pod.metadata.deletion_timestamp.is_none() {
            other.push(addr);
        }
    }
    if ready.is_empty() { other } else { ready }
}

async fn resolver(
    client: kube::Client,
    ns: String,
    into: Arc<Mutex<Vec<String>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let eps = endpoints(&client, &ns, PIPELINE).await;
        *into.lock().unwrap_or_else(|p| p.into_inner()) = eps;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn push_client(
    n: usize,
    next: Arc<AtomicU64>,
    eps: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<PushLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let period = Duration::from_secs_f64(PUSH_BATCH as f64 / PUSH_RATE);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = n;
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let first = next.fetch_add(PUSH_BATCH as u64, Ordering::SeqCst);
        {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.sent_upto = l.sent_upto.max(first + PUSH_BATCH as u64);
        }
        let body: String = (first..first + PUSH_BATCH as u64)
            .map(|i| format!("{}\n", push_record(i)))
            .collect();
        // The same ids until a 202 (at-least-once; the table dedups by key),
        // for at most two minutes after the test asks the clients to stop.
        let mut give_up: Option<Instant> = None;
        loop {
            if give_up.is_none() && *stop.borrow() {
                give_up = Some(Instant::now() + Duration::from_secs(120));
            }
            if give_up.is_some_and(|t| Instant::now() > t) {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .gave_up
                    .push((first, PUSH_BATCH as u32));
                break;
            }
            let target = {
                let eps = eps.lock().unwrap_or_else(|p| p.into_inner());
                turn += 1;
                (!eps.is_empty()).then(|| eps[turn % eps.len()].clone())
            };
            let Some(target) = target else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let sent = http
                .post(format!("http://{target}/v1/records"))
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().as_u16() == 202 => {
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .accepted
                        .push((first, PUSH_BATCH as u32, now_ms()));
                    break;
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r.headers().contains_key("retry-after");
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .refusals
                        .push((now_ms(), status, retry_after));
                    if status != 429 && status != 503 {
                        eprintln!(
                            "push refused with {status}: {}",
                            r.text().await.unwrap_or_default()
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .refusals
                        .push((now_ms(), 0, false));
                    eprintln!("push to {target} failed ({e}); retrying the same records");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

// -------------------------------------------------------- condition watch

#[derive(Clone, Debug)]
struct ConditionChange {
    at_ms: i64,
    type_: String,
    status: String,
    reason: String,
}

async fn watch_conditions(
    api: Api<StreamPipeline>,
    into: Arc<Mutex<Vec<ConditionChange>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    loop {
        if let Ok(sp) = api.get(PIPELINE).await {
            for c in sp.status.map(|s| s.conditions).unwrap_or_default() {
                let now = (c.status.clone(), c.reason.clone());
                if last.get(&c.type_) != Some(&now) {
                    into.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(ConditionChange {
                            at_ms: now_ms(),
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            reason: c.reason.clone(),
                        });
                    last.insert(c.type_, now);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
    }
}

// ------------------------------------------------------------ memory peak

/// Sums the resident memory of the world's daemons and its Pods' processes
/// every few seconds; keeps the peak (MiB).
async fn watch_memory(world_dir: PathBuf, peak: Arc<AtomicU64>, mut stop: watch::Receiver<bool>) {
    fn rss_kib(pid: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
    fn pid_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                pid_files(&p, out);
            } else if p.parent().is_some_and(|d| d.ends_with("pids")) {
                out.push(p);
            }
        }
    }
    loop {
        let mut files = Vec::new();
        pid_files(&world_dir.join("pids"), &mut files);
        pid_files(&world_dir.join("node/pods"), &mut files);
        let total: u64 = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|pid| rss_kib(&pid))
            .sum();
        peak.fetch_max(total / 1024, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => return,
        }
    }
}

// ------------------------------------------------------------------ phases

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
}

struct Harness {
    sc: Scenario,
    world_dir: PathBuf,
    operator: Option<Operator>,
    push: Arc<Mutex<PushLog>>,
    pods: Api<Pod>,
    session: scylla::client::session::Session,
    table: String,
    phases: Vec<Phase>,
}

impl Harness {
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
                self.phase().recovery = Some(took);
                self.note(format!("recovered in {:.1}s", took.as_secs_f64()));
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

    async fn restart_daemon(&mut self, name: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = tokio::process::Command::new(repo_root().join("tests/env/restart"))
            .arg(name)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "tests/env/restart {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let took = started.elapsed();
        self.note(format!(
            "{name} restarted and answering after {:.1}s",
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
}

impl Harness {
    /// Waits until every runner Pod runs the resource's current generation
    /// (the operator stamps it on the Pod template) and is ready.
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
                    .context("generation")?
                    .to_string();
                let mut all = self.runner_pods("ingest").await?;
                all.extend(self.runner_pods("sink").await?);
                let rolled = all.len() == 2
                    && all.iter().all(|p| {
                        pod_ready(p)
                            && p.metadata
                                .annotations
                                .as_ref()
                                .and_then(|a| a.get("millrace.io/pipeline-generation"))
                                == Some(&generation)
                    });
                Ok(rolled.then_some(generation))
            },
        )
        .await;
        match r {
            Ok(g) => self.note(format!("runner Pods rolled to generation {g}, ready")),
            Err(e) => self.fail(format!("{e:#}")),
        }
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

// ----------------------------------------------------- reading the results

struct TopicRecord {
    count: u32,
    first_ms: i64,
    /// Where its first copy is.
    partition: i32,
    offset: i64,
}

/// A topic's records by key, and (time, `millrace.error` header) of each
/// message, which is what a dead-letter topic is read for.
type TopicContents = (HashMap<u128, TopicRecord>, Vec<(i64, String)>);

/// Every key of `topic` with how often it occurs and when it was first
/// produced (the record's CreateTime), read from the beginning to the high
/// watermarks.
fn read_topic(world: &World, topic: &str) -> anyhow::Result<TopicContents> {
    let consumer: BaseConsumer = world
        .kafka_config()
        .set(
            "group.id",
            millrace_testsupport::unique_name("faults-reader"),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
    }
    let mut keys: HashMap<u128, TopicRecord> = HashMap::new();
    let mut headers = Vec::new();
    if ends.is_empty() {
        return Ok((keys, headers));
    }
    consumer.assign(&tpl)?;
    let deadline = Deadline::secs(300);
    while !ends.is_empty() {
        anyhow::ensure!(!deadline.passed(), "reading {topic}: {ends:?} left");
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let at = msg.timestamp().to_millis().unwrap_or_default();
        let id = msg
            .key()
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| uuid::Uuid::parse_str(k.trim_matches('"')).ok())
            .map(|u| u.as_u128())
            .unwrap_or_default();
        let e = keys.entry(id).or_insert(TopicRecord {
            count: 0,
            first_ms: at,
            partition: msg.partition(),
            offset: msg.offset(),
        });
        e.count += 1;
        e.first_ms = e.first_ms.min(at);
        let reason = msg
            .headers()
            .and_then(|h| {
                h.iter()
                    .find(|x| x.key == "millrace.error")
                    .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
            .unwrap_or_default();
        headers.push((at, reason));
        if ends
            .get(&msg.partition())
            .is_some_and(|end| msg.offset() + 1 >= *end)
        {
            ends.remove(&msg.partition());
        }
    }
    Ok((keys, headers))
}

/// The sink group's committed offsets have reached the topic's end.
fn sink_caught_up(world: &World, group: &str, topic: &str) -> anyhow::Result<Option<i64>> {
    let consumer: BaseConsumer = world.kafka_config().set("group.id", group).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
            let (_, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            ends.insert(p.id(), high);
        }
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    let mut lag = 0;
    for e in committed.elements() {
        let c = match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        };
        lag += (ends[&e.partition()] - c).max(0);
    }
    Ok(Some(lag))
}

async fn table_ids(
    session: &scylla::client::session::Session,
    table: &str,
) -> anyhow::Result<HashMap<u128, u32>> {
    let mut query =
        scylla::statement::unprepared::Statement::new(format!("SELECT id FROM {table}"));
    query.set_page_size(5000);
    let ids: Vec<uuid::Uuid> = session
        .query_iter(query, &[])
        .await?
        .rows_stream::<(uuid::Uuid,)>()?
        .map_ok(|(id,)| id)
        .try_collect()
        .await?;
    let mut out = HashMap::with_capacity(ids.len());
    for id in ids {
        *out.entry(id.as_u128()).or_insert(0) += 1;
    }
    Ok(out)
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

// -------------------------------------------------------------------- test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "kills Kafka and Cassandra: run by `make test-faults` in a world of its own"]
async fn faults_lose_nothing_and_status_tells() -> anyhow::Result<()> {
    let run_started = Instant::now();
    let world = World::discover()?;
    guard(&world)?;
    remove_leftovers(&world).await?;
    let sc = Scenario::new("faults").await?;
    let world_dir = guard(&sc.world)?;
    let world = sc.world.clone();
    let kubeconfig = world.kubeconfig.clone().context("KUBECONFIG")?;
    let operator = Operator::start(&world_dir, &sc.ns.name, &kubeconfig).await?;

    let mut sp = json!({
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
                    "name": "users",
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
                {"name": "events", "httpPush": {"path": "/v1/records"}},
                {"name": "synthetic", "generator": {"recordsPerSecond": GENERATOR_RATE}},
            ],
            "runner": {"image": RUNNER_IMAGE, "ingestReplicas": 1, "sinkReplicas": 1,
                       "logFormat": "text"},
            "deletionPolicy": "Delete",
        }
    });
    sc.apply(&sp).await?;
    sc.wait_condition(PIPELINE, "Ready", "True", None, 240)
        .await?;
    let session = world.cassandra_session().await?;
    let table = format!("{}.users", sc.keyspace);
    let group = format!("millrace.{}.{PIPELINE}", sc.ns.name);
    let dlq = format!("{}.dlq", sc.topic);

    let (stop_tx, stop_rx) = watch::channel(false);
    let conditions = Arc::new(Mutex::new(Vec::new()));
    let watcher = tokio::spawn(watch_conditions(
        sc.pipelines(),
        conditions.clone(),
        stop_rx.clone(),
    ));
    let peak_mib = Arc::new(AtomicU64::new(0));
    let memory = tokio::spawn(watch_memory(
        world_dir.clone(),
        peak_mib.clone(),
        stop_rx.clone(),
    ));
    let eps = Arc::new(Mutex::new(Vec::new()));
    let resolve = tokio::spawn(resolver(
        sc.client.clone(),
        sc.ns.name.clone(),
        eps.clone(),
        stop_rx.clone(),
    ));
    let push = Arc::new(Mutex::new(PushLog::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    let (push_stop_tx, push_stop_rx) = watch::channel(false);
    let clients: Vec<_> = (0..PUSH_CLIENTS)
        .map(|n| {
            tokio::spawn(push_client(
                n,
                next_id.clone(),
                eps.clone(),
                push.clone(),
                push_stop_rx.clone(),
            ))
        })
        .collect();

    let pods: Api<Pod> = sc.ns.api();
    let mut h = Harness {
        sc,
        world_dir: world_dir.clone(),
        operator: Some(operator),
        push: push.clone(),
        pods,
        session,
        table: table.clone(),
        phases: Vec::new(),
    };

    h.begin("steady", "no fault: the stream starts");
    let since = now_ms();
    h.wait_recovered(Instant::now(), since, 120).await;
    h.steady(20).await;

    // 1. Processes.
    h.begin("kill-sink", "kill -9 of the sink's runner process");
    let since = now_ms();
    match h.kill_runner("sink").await {
        Ok((pod, before)) => {
            let t = h.injected();
            h.wait_pod_restarted(&pod, before).await;
            h.wait_recovered(t, since, 180).await;
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    h.begin("kill-ingest", "kill -9 of the ingest's runner process");
    let since = now_ms();
    match h.kill_runner("ingest").await {
        Ok((pod, before)) => {
            let t = h.injected();
            h.wait_pod_restarted(&pod, before).await;
            h.wait_recovered(t, since, 180).await;
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    h.begin(
        "kill-operator",
        "kill -9 of the operator process, started again after 10 s",
    );
    let since = now_ms();
    if let Some(pid) = h.operator.as_ref().and_then(Operator::pid) {
        let t = h.injected();
        signal(&pid.to_string(), "KILL")?;
        h.note(format!("kill -9 {pid} (operator)"));
        drop(h.operator.take());
        // The operator stays down while the stream goes on: its Pods'
        // Deployment would start it again after a back-off.
        tokio::time::sleep(Duration::from_secs(10)).await;
        match Operator::start(&world_dir, &h.sc.ns.name, &kubeconfig).await {
            Ok(op) => {
                h.operator = Some(op);
                h.note("operator started again");
            }
            Err(e) => h.fail(format!("starting the operator again: {e:#}")),
        }
        h.wait_recovered(t, since, 120).await;
    } else {
        h.fail("no operator pid".into());
    }
    h.steady(15).await;

    // 3. A rebalance.
    h.begin(
        "rebalance",
        "sink scaled 1 -> 3 -> 1 through spec.runner.sinkReplicas",
    );
    let since = now_ms();
    let t = h.injected();
    match h
        .merge(json!({"spec": {"runner": {"sinkReplicas": 3}}}))
        .await
    {
        Ok(()) => {
            h.wait_replicas(1, 3, 180).await;
            h.steady(20).await;
            match h
                .merge(json!({"spec": {"runner": {"sinkReplicas": 1}}}))
                .await
            {
                Ok(()) => h.wait_replicas(1, 1, 180).await,
                Err(e) => h.fail(format!("{e:#}")),
            }
            h.wait_recovered(t, since, 180).await;
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    // 4. The resource edited mid-stream.
    h.begin(
        "edit-cr",
        "column `city` added and partitions raised 3 -> 6 mid-stream",
    );
    let since = now_ms();
    let t = h.injected();
    sp["spec"]["cassandra"]["table"]["columns"]
        .as_array_mut()
        .context("columns")?
        .push(json!({"name": "city", "type": "text", "from": "/location/city"}));
    sp["spec"]["kafka"]["topic"]["partitions"] = json!(RAISED_PARTITIONS);
    match h.sc.apply(&sp).await {
        Ok(_) => {
            let r = poll_until(
                "the new column and partitions",
                Deadline::secs(180),
                || async {
                    let cols = h.sc.table_columns("users").await?;
                    let topic = describe_topic(&world, &h.sc.topic).await?;
                    let ok = cols.iter().any(|c| c.name == "city")
                        && topic.is_some_and(|t| t.partitions == RAISED_PARTITIONS as usize);
                    Ok(ok.then_some(()))
                },
            )
            .await;
            match r {
                Ok(()) => h.note("table has `city`; topic has 6 partitions"),
                Err(e) => h.fail(format!("{e:#}")),
            }
            h.wait_rolled(240).await;
            h.wait_recovered(t, since, 240).await;
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    // 2. The data plane.
    h.begin(
        "kill-kafka",
        "kill -9 of the Kafka broker, 20 s down, then started again",
    );
    let since = now_ms();
    match h.daemon_pid("kafka") {
        Ok(pid) => {
            signal(&pid, "KILL")?;
            let t = h.injected();
            h.note(format!("kill -9 {pid} (kafka)"));
            // While Kafka is down the push endpoint must say so: /readyz 503.
            let probe = poll_until(
                "an ingest /readyz to answer 503",
                Deadline::secs(20),
                || async {
                    let eps = {
                        let pods = h.runner_pods("ingest").await?;
                        pods.iter().filter_map(pod_ip).collect::<Vec<_>>()
                    };
                    for ip in eps {
                        if let Ok(r) = reqwest::get(format!("http://{ip}:8080/readyz")).await
                            && r.status() == 503
                        {
                            return Ok(Some(()));
                        }
                    }
                    Ok(None)
                },
            )
            .await;
            match probe {
                Ok(()) => h.note("ingest /readyz answered 503 while Kafka was down"),
                Err(e) => h.fail(format!("{e:#}")),
            }
            tokio::time::sleep(Duration::from_secs(20).saturating_sub(t.elapsed())).await;
            match h.restart_daemon("kafka").await {
                Ok(_) => h.wait_recovered(t, since, 240).await,
                Err(e) => h.fail(format!("{e:#}")),
            }
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    h.begin(
        "kill-cassandra",
        "kill -9 of Cassandra, 10 s down, then started again",
    );
    let since = now_ms();
    match h.daemon_pid("cassandra") {
        Ok(pid) => {
            signal(&pid, "KILL")?;
            let t = h.injected();
            h.note(format!("kill -9 {pid} (cassandra)"));
            tokio::time::sleep(Duration::from_secs(10)).await;
            match h.restart_daemon("cassandra").await {
                Ok(_) => h.wait_recovered(t, since, 300).await,
                Err(e) => h.fail(format!("{e:#}")),
            }
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(15).await;

    h.begin(
        "stop-cassandra",
        "SIGSTOP of Cassandra for 30 s, then SIGCONT",
    );
    let since = now_ms();
    match h.daemon_pid("cassandra") {
        Ok(pid) => {
            signal(&pid, "STOP")?;
            let guard = Continue(pid.clone());
            let t = h.injected();
            h.note(format!("kill -STOP {pid} (cassandra)"));
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(guard);
            h.note(format!("kill -CONT {pid}"));
            h.wait_recovered(t, since, 300).await;
        }
        Err(e) => h.fail(format!("{e:#}")),
    }
    h.steady(10).await;

    // The end: no more input, the sink reads everything.
    h.begin(
        "drain",
        "push clients stopped, ingest scaled to 0; the sink catches up",
    );
    let _ = push_stop_tx.send(true);
    for c in clients {
        let _ = c.await;
    }
    h.merge(json!({"spec": {"runner": {"ingestReplicas": 0}}}))
        .await?;
    let r = poll_until(
        "the ingest Pods to be gone",
        Deadline::secs(120),
        || async { Ok(h.runner_pods("ingest").await?.is_empty().then_some(())) },
    )
    .await;
    if let Err(e) = r {
        h.fail(format!("{e:#}"));
    }
    let (w, g, tp) = (world.clone(), group.clone(), h.sc.topic.clone());
    let caught_up = poll_until(
        "the sink group's committed offsets at the topic's end",
        Deadline::secs(600),
        || {
            let (w, g, tp) = (w.clone(), g.clone(), tp.clone());
            async move {
                let lag = tokio::task::spawn_blocking(move || sink_caught_up(&w, &g, &tp))
                    .await??
                    .unwrap_or(i64::MAX);
                if lag > 0 {
                    bail!("{lag} records not committed yet");
                }
                Ok(Some(()))
            }
        },
    )
    .await;
    if let Err(e) = caught_up {
        h.fail(format!("{e:#}"));
    }
    h.phase().end_ms = now_ms();

    let _ = stop_tx.send(true);
    let _ = tokio::join!(watcher, memory, resolve);

    // ------------------------------------------------------------- verdict
    let (w, tp, dq) = (world.clone(), h.sc.topic.clone(), dlq.clone());
    let (topic_keys, _) = tokio::task::spawn_blocking(move || read_topic(&w, &tp)).await??;
    let w = world.clone();
    let (_, dead) = tokio::task::spawn_blocking(move || read_topic(&w, &dq)).await??;
    let rows = table_ids(&h.session, &table).await?;
    let push_log = std::mem::take(&mut *push.lock().unwrap_or_else(|p| p.into_inner()));
    let changes = conditions.lock().unwrap_or_else(|p| p.into_inner()).clone();

    // When each accepted record was accepted: its 202 (push), or its first
    // CreateTime in the topic (generator).
    let mut accepted: HashMap<u128, i64> = HashMap::new();
    for (first, n, at) in &push_log.accepted {
        for i in *first..*first + u64::from(*n) {
            let id = push_id(i).as_u128();
            let e = accepted.entry(id).or_insert(*at);
            *e = (*e).min(*at);
        }
    }
    let push_accepted = accepted.len();
    for (id, rec) in &topic_keys {
        if !is_push_id(*id) {
            accepted.insert(*id, rec.first_ms);
        }
    }
    let generated = accepted.len() - push_accepted;
    let sent: HashSet<u128> = (0..push_log.sent_upto)
        .map(|i| push_id(i).as_u128())
        .collect();
    let unexpected: Vec<u128> = rows
        .keys()
        .filter(|id| !accepted.contains_key(id) && !sent.contains(id))
        .copied()
        .collect();
    let push_not_in_topic = accepted
        .keys()
        .filter(|id| is_push_id(**id) && !topic_keys.contains_key(id))
        .count();

    let mut table_rows = Vec::new();
    let mut failures = Vec::new();
    for p in &h.phases {
        let ids: Vec<u128> = accepted
            .iter()
            .filter(|(_, at)| **at >= p.start_ms && **at < p.end_ms.max(p.start_ms + 1))
            .map(|(id, _)| *id)
            .collect();
        let found = ids.iter().filter(|id| rows.contains_key(id)).count();
        let lost = ids.len() - found;
        let dup_rows: u32 = ids
            .iter()
            .filter_map(|id| rows.get(id))
            .map(|n| n.saturating_sub(1))
            .sum();
        let resent: u32 = ids
            .iter()
            .filter_map(|id| topic_keys.get(id))
            .map(|r| r.count.saturating_sub(1))
            .sum();
        let pushed = ids.iter().filter(|id| is_push_id(**id)).count();
        let refusals: Vec<_> = push_log
            .refusals
            .iter()
            .filter(|(at, _, _)| *at >= p.start_ms && *at < p.end_ms)
            .collect();
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        for (_, s, _) in &refusals {
            *by_status.entry(*s).or_default() += 1;
        }
        let busy_without_retry_after = refusals
            .iter()
            .filter(|(_, s, ra)| (*s == 429 || *s == 503) && !ra)
            .count();
        let dead_lettered = dead
            .iter()
            .filter(|(at, _)| *at >= p.start_ms && *at < p.end_ms)
            .count();
        let seen: Vec<String> = changes
            .iter()
            .filter(|c| c.at_ms >= p.start_ms && c.at_ms < p.end_ms)
            .map(|c| {
                format!(
                    "+{:.1}s {}={} ({})",
                    (c.at_ms - p.injected_ms.unwrap_or(p.start_ms)) as f64 / 1000.0,
                    c.type_,
                    c.status,
                    c.reason
                )
            })
            .collect();
        if lost > 0 {
            failures.push(format!("{}: {lost} accepted records are not rows", p.name));
        }
        if dup_rows > 0 {
            failures.push(format!("{}: {dup_rows} duplicate rows", p.name));
        }
        if busy_without_retry_after > 0 {
            failures.push(format!(
                "{}: {busy_without_retry_after} 429/503 answers without Retry-After",
                p.name
            ));
        }
        if p.failed {
            failures.push(format!("{}: {}", p.name, p.notes.join("; ")));
        }
        table_rows.push(json!({
            "fault": p.name,
            "what": p.what,
            "window_s": (p.end_ms - p.start_ms) as f64 / 1000.0,
            "records_accepted": ids.len(),
            "pushed_202": pushed,
            "generated": ids.len() - pushed,
            "rows_found": found,
            "lost": lost,
            "duplicate_rows": dup_rows,
            "resent_copies_in_topic": resent,
            "dead_lettered": dead_lettered,
            "push_refusals": by_status.iter().map(|(s, n)| (if *s == 0 { "conn-error".to_string() } else { s.to_string() }, *n)).collect::<BTreeMap<_, _>>(),
            "busy_without_retry_after": busy_without_retry_after,
            "recovery_s": p.recovery.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
            "conditions_seen": seen,
            "notes": p.notes,
            "ok": lost == 0 && dup_rows == 0 && !p.failed && busy_without_retry_after == 0,
        }));
    }
    if !unexpected.is_empty() {
        failures.push(format!("{} rows nobody sent", unexpected.len()));
    }
    if push_not_in_topic > 0 {
        failures.push(format!(
            "{push_not_in_topic} records got a 202 but are not in the topic"
        ));
    }
    if !dead.is_empty() {
        failures.push(format!("{} records dead-lettered", dead.len()));
    }
    if !push_log.gave_up.is_empty() {
        failures.push(format!(
            "{} push batches never got a 202",
            push_log.gave_up.len()
        ));
    }
    // Each lost record is looked up once more by its key, so a scan that
    // missed a row is told apart from a row that is not there.
    let mut lost_records = Vec::new();
    for id in accepted.keys().filter(|id| !rows.contains_key(id)).take(50) {
        let uuid = uuid::Uuid::from_u128(*id);
        let there = h.row_exists(uuid).await.ok();
        let place = topic_keys.get(id);
        lost_records.push(json!({
            "id": uuid.to_string(),
            "source": if is_push_id(*id) { "push" } else { "generator" },
            "accepted_at": chrono::DateTime::from_timestamp_millis(accepted[id]).map(|t| t.to_rfc3339()),
            "topic_partition": place.map(|p| p.partition),
            "topic_offset": place.map(|p| p.offset),
            "copies_in_topic": place.map(|p| p.count),
            "found_by_key_lookup": there,
        }));
    }
    let total_lost = accepted.keys().filter(|id| !rows.contains_key(id)).count();
    let results = json!({
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "duration_s": run_started.elapsed().as_secs(),
        "records_accepted": accepted.len(),
        "pushed_202": push_accepted,
        "generated": generated,
        "topic_messages": topic_keys.values().map(|r| u64::from(r.count)).sum::<u64>(),
        "rows": rows.len(),
        "lost": total_lost,
        "unexpected_rows": unexpected.len(),
        "pushed_202_not_in_topic": push_not_in_topic,
        "dead_lettered": dead.len(),
        "dead_letter_reasons": dead.iter().map(|(_, r)| r.clone()).collect::<HashSet<_>>(),
        "push_batches_given_up": push_log.gave_up.len(),
        "lost_records": lost_records,
        "peak_world_rss_mib": peak_mib.load(Ordering::Relaxed),
        "phases": table_rows,
        "failures": failures,
    });
    write_results(&results)?;
    println!("{}", serde_json::to_string_pretty(&results)?);

    if let Some(op) = h.operator.take() {
        let _ = h.sc.delete_pipeline(PIPELINE, 120).await;
        op.stop().await;
    }
    let _ = h.sc.cleanup().await;
    anyhow::ensure!(
        accepted.len() >= 100_000,
        "only {} records accepted; the suite needs at least 100,000",
        accepted.len()
    );
    anyhow::ensure!(failures.is_empty(), "faults failed: {failures:#?}");
    Ok(())
}

fn write_results(results: &Value) -> anyhow::Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(results)?,
    )?;
    let mut md = String::new();
    md.push_str(&format!(
        "Fault suite run finished {} in {} s: {} records accepted ({} pushed with a 202, {} generated), {} rows, {} lost, {} unexpected rows, {} dead-lettered, peak memory of the world {} MiB.\n\n",
        results["finished_at"].as_str().unwrap_or_default(),
        results["duration_s"],
        results["records_accepted"],
        results["pushed_202"],
        results["generated"],
        results["rows"],
        results["lost"],
        results["unexpected_rows"],
        results["dead_lettered"],
        results["peak_world_rss_mib"],
    ));
    md.push_str("| fault | records accepted | rows found | lost | duplicates | recovery time | conditions seen | push refusals | ok |\n|---|---:|---:|---:|---:|---:|---|---|---|\n");
    for p in results["phases"].as_array().into_iter().flatten() {
        let seen: Vec<&str> = p["conditions_seen"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        md.push_str(&format!(
            "| {} | {} ({} push, {} gen) | {} | {} | {} | {} | {} | {} | {} |\n",
            p["fault"].as_str().unwrap_or_default(),
            p["records_accepted"],
            p["pushed_202"],
            p["generated"],
            p["rows_found"],
            p["lost"],
            p["duplicate_rows"],
            p["recovery_s"]
                .as_f64()
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "-".into()),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join("; ")
            },
            p["push_refusals"],
            if p["ok"] == json!(true) {
                "yes"
            } else {
                "**no**"
            },
        ));
    }
    let failures: Vec<&str> = results["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !failures.is_empty() {
        md.push_str("\nFailures:\n\n");
        for f in failures {
            md.push_str(&format!("- {f}\n"));
        }
    }
    std::fs::write(dir.join("results.md"), md)?;
    Ok(())
}
