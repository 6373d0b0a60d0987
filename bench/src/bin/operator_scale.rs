//! operator-scale: how the operator copes with 1, 100 and 1,000
//! StreamPipelines on the test world.
//!
//! For each size: a fresh namespace with the Cassandra credentials Secret, a
//! fresh release-built operator process scoped to that namespace, then all
//! pipelines applied at once (server-side apply, `--apply-concurrency` in
//! flight). Measured: apply->Ready per pipeline (Ready=True for the current
//! generation, seen through a watch), the time until all are Ready, the
//! operator's reconciles, RSS and CPU (from /proc), and then one full
//! steady-state resync window in which the operator's write counters must
//! not move. Everything the run made is removed afterwards: pipelines (the
//! operator's finalizer runs), the namespace, the topics and the keyspace.
//!
//! The runners are scaled to zero (`ingestReplicas`/`sinkReplicas` 0, no
//! sources): the figures are the control plane's, and `Ready` is still the
//! real condition (topic, table and both Deployments rolled out). With
//! `spec.suspend` the operator reports Ready=False/Suspended by design.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use millrace_api::StreamPipeline;
use millrace_bench::{World, cql, example_spec, kafka};
use millrace_operator::desired;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIELD_MANAGER: &str = "millrace-bench-operator-scale";
const SECRET: &str = "cassandra-creds";
const BENCH_LABEL: &str = "millrace.io/bench";
const CRD_NAME: &str = "streampipelines.millrace.io";
const BEGIN: &str = "<!-- operator-scale:results:begin -->";
const END: &str = "<!-- operator-scale:results:end -->";

#[derive(Parser, Debug)]
#[command(about = "Operator scale benchmark: apply->Ready, RSS/CPU and steady-state writes")]
struct Args {
    /// Numbers of pipelines, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    sizes: Vec<usize>,
    /// Pipelines per table name (each pipeline has its own topic). A table
    /// has one owner, so any value above 1 makes all but one pipeline of each
    /// table `ResourceConflict`: kept only to show that.
    #[arg(long, default_value_t = 1)]
    pipelines_per_table: usize,
    /// Create the keyspace and every pipeline's table before the operator
    /// starts, each with its pipeline recorded as owner in its comment, as
    /// the operator would have made it. The run then measures the operator
    /// and the apiserver, not Cassandra's schema changes (one at a time,
    /// 0.3-1 s each on the world's node, which 1,000 tables make 5-15
    /// minutes). Needs --pipelines-per-table 1.
    #[arg(long)]
    precreate_tables: bool,
    /// Partitions of each pipeline's topic (and its dead-letter topic).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// The operator's --resync-seconds; the steady-state window is this
    /// plus 15 s, so every pipeline is compared with Kafka and Cassandra at
    /// least once in it.
    #[arg(long, default_value_t = 60)]
    resync_seconds: u64,
    /// Server-side applies in flight while creating the pipelines.
    #[arg(long, default_value_t = 32)]
    apply_concurrency: usize,
    /// Give up waiting for all pipelines to be Ready after this long (then
    /// the steady-state window is skipped: the operator is still writing).
    #[arg(long, default_value_t = 900)]
    ready_timeout_secs: u64,
    /// The operator binary (default: $CARGO_TARGET_DIR/release/millrace-operator).
    #[arg(long)]
    operator: Option<PathBuf>,
    /// Another operator binary (today's, say) run at each size too, first,
    /// in the same run, so the two are compared side by side on the same
    /// box and load.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The CRD the baseline operator was released with (say, `git show
    /// <commit>:crds/millrace.io_streampipelines.yaml`): applied before each
    /// baseline run, and this tree's CRD before each run of the new
    /// operator, so each runs with its own admission rules (which the
    /// apiserver evaluates on every write of a pipeline, status included).
    /// Without it, both run with whatever CRD the world has (this tree's if
    /// it has none).
    #[arg(long, requires = "baseline")]
    baseline_crd: Option<PathBuf>,
    /// More arguments for the operator (repeatable).
    #[arg(long = "operator-arg", allow_hyphen_values = true)]
    operator_args: Vec<String>,
    #[arg(long, default_value = "localhost/millrace-runner:dev")]
    runner_image: String,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results/operator-scale.json")]
    json: PathBuf,
    /// The report whose generated section is rewritten.
    #[arg(long, default_value = "bench/OPERATOR-SCALE.md")]
    report: PathBuf,
    /// Store these runs as the baseline ("before") in the JSON, keeping the
    /// current results, and leave the report alone.
    #[arg(long)]
    save_as_before: bool,
    /// A note stored with the runs (e.g. which operator build).
    #[arg(long, default_value = "")]
    note: String,
    /// Only rewrite the report's generated part from the JSON; run nothing.
    #[arg(long)]
    render_only: bool,
    /// Also measure, at each size and before the operators, the
    /// controller-manager alone: the pipelines' sink Deployments as the
    /// operator builds them (its own desired-state code), applied with no
    /// operator running, timed to the last one the controller-manager has
    /// observed. No operator whose Ready includes the rollout can beat it.
    #[arg(long)]
    controller_manager_floor: bool,
}

// ---------------------------------------------------------------------------
// The operator process and what /proc says about it.

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    at: Option<Instant>,
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
    cpu_ticks: u64,
}

fn read_proc(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(Sample {
        at: Some(Instant::now()),
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        // utime and stime are fields 14 and 15 of stat; `rest` starts at 3.
        cpu_ticks: ticks(11) + ticks(12),
    })
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

struct Operator {
    child: tokio::process::Child,
    pid: u32,
    metrics_addr: String,
    log: PathBuf,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Operator {
    async fn start(args: &Args, binary: &Path, namespace: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("{namespace}-operator.log"));
        let file = std::fs::File::create(&log)?;
        let resync = args.resync_seconds.to_string();
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args([
            "--namespace",
            namespace,
            "--runner-image",
            &args.runner_image,
            "--metrics-listen",
            &metrics_addr,
            "--resync-seconds",
            &resync,
        ])
        .args(&args.operator_args)
        .env(
            "RUST_LOG",
            std::env::var("OPERATOR_SCALE_RUST_LOG")
                .unwrap_or_else(|_| "info,kube=warn,rdkafka=warn,scylla=warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the operator exited at once")?;
        let samples = Arc::new(Mutex::new(Vec::new()));
        {
            let samples = samples.clone();
            tokio::spawn(async move {
                while let Some(s) = read_proc(pid) {
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        let op = Self {
            child,
            pid,
            metrics_addr,
            log,
            samples,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(&op.metrics_addr, "/healthz").await.is_err() {
            if Instant::now() > deadline {
                bail!(
                    "the operator did not serve /healthz within 30 s; log: {}",
                    op.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(op)
    }

    async fn metrics(&self) -> anyhow::Result<Metrics> {
        let text = http_get(&self.metrics_addr, "/metrics").await?;
        let mut values = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((series, value)) = line.rsplit_once(' ')
                && let Ok(v) = value.trim().parse::<f64>()
            {
                values.insert(series.to_owned(), v);
            }
        }
        Ok(Metrics { values })
    }

    fn now(&self) -> Sample {
        read_proc(self.pid).unwrap_or_default()
    }

    fn samples_between(&self, from: Instant, to: Instant) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.at.is_some_and(|t| t >= from && t <= to))
            .copied()
            .collect()
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("operator-scale: the operator did not stop within 20 s; killing it");
            self.child.kill().await?;
        }
        Ok(())
    }
}

async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8(buf)?;
    let (head, body) = text.split_once("\r\n\r\n").context("HTTP reply")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    Ok(body.to_owned())
}

#[derive(Clone, Debug, Default)]
struct Metrics {
    values: BTreeMap<String, f64>,
}

impl Metrics {
    fn get(&self, series: &str) -> f64 {
        self.values.get(series).copied().unwrap_or(0.0)
    }
    fn reconciles(&self) -> f64 {
        self.get("millrace_operator_reconciles_total")
    }
    fn writes(&self, target: &str) -> f64 {
        self.get(&format!(
            "millrace_operator_writes_total{{target=\"{target}\"}}"
        ))
    }
    fn all_writes(&self) -> f64 {
        ["kubernetes", "kafka", "cassandra"]
            .iter()
            .map(|t| self.writes(t))
            .sum()
    }
    fn failures(&self) -> BTreeMap<String, f64> {
        self.values
            .iter()
            .filter_map(|(k, v)| {
                let category = k
                    .strip_prefix("millrace_operator_reconcile_failures_total{category=\"")?
                    .strip_suffix("\"}")?;
                Some((category.to_owned(), *v))
            })
            .collect()
    }
    fn writes_since(&self, before: &Metrics) -> Value {
        json!({
            "kubernetes": self.writes("kubernetes") - before.writes("kubernetes"),
            "kafka": self.writes("kafka") - before.writes("kafka"),
            "cassandra": self.writes("cassandra") - before.writes("cassandra"),
        })
    }
    fn mean_reconcile_seconds_since(&self, before: &Metrics) -> f64 {
        let n = self.get("millrace_operator_reconcile_duration_seconds_count")
            - before.get("millrace_operator_reconcile_duration_seconds_count");
        let sum = self.get("millrace_operator_reconcile_duration_seconds_sum")
            - before.get("millrace_operator_reconcile_duration_seconds_sum");
        if n > 0.0 { sum / n } else { 0.0 }
    }
    /// Seconds each step of a reconcile took, per reconcile, from the
    /// operator's `reconcile_step_duration_seconds`: where the reconciles
    /// waited.
    fn step_seconds_per_reconcile_since(&self, before: &Metrics) -> Value {
        let reconciles = (self.reconciles() - before.reconciles()).max(1.0);
        let mut steps = serde_json::Map::new();
        for (series, sum) in &self.values {
            let Some(step) = series
                .strip_prefix("millrace_operator_reconcile_step_duration_seconds_sum{step=\"")
                .and_then(|s| s.strip_suffix("\"}"))
            else {
                continue;
            };
            let spent = sum - before.get(series);
            steps.insert(step.to_owned(), json!(round(spent / reconciles, 4)));
        }
        Value::Object(steps)
    }
}

// ---------------------------------------------------------------------------
// What the apiserver says about the pipelines.

#[derive(Default)]
struct Seen {
    ready_at: HashMap<String, Instant>,
    /// Watch events about existing pipelines (each is a write to one).
    modified: u64,
    synced: bool,
}

fn is_ready(sp: &StreamPipeline) -> bool {
    let generation = sp.metadata.generation;
    sp.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
        })
    })
}

fn watch_pipelines(api: Api<StreamPipeline>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                Ok(watcher::Event::Apply(sp) | watcher::Event::InitApply(sp)) => {
                    s.modified += 1;
                    if is_ready(&sp) {
                        let name = sp.metadata.name.clone().unwrap_or_default();
                        s.ready_at.entry(name).or_insert_with(Instant::now);
                    }
                }
                Ok(watcher::Event::InitDone) => s.synced = true,
                Ok(_) => {}
                Err(e) => eprintln!("operator-scale: watch: {e}"),
            }
        }
    });
    seen
}

// ---------------------------------------------------------------------------
// One run.

struct Names {
    namespace: String,
    keyspace: String,
    topic_prefix: String,
}

impl Names {
    fn new(run: &str, n: usize) -> Self {
        Self {
            namespace: format!("opscale-{run}-{n}"),
            keyspace: format!("opscale_{run}_{n}"),
            topic_prefix: format!("opscale-{run}-{n}"),
        }
    }
    fn pipeline(&self, i: usize) -> String {
        format!("p{i:04}")
    }
    fn topic(&self, i: usize) -> String {
        format!("{}-{i:04}", self.topic_prefix)
    }
}

fn pipeline_body(
    args: &Args,
    world: &World,
    names: &Names,
    i: usize,
    template: &Value,
) -> anyhow::Result<Value> {
    let mut spec = template.clone();
    spec["kafka"]["bootstrapServers"] = json!(world.kafka_bootstrap);
    spec["kafka"]["topic"] = json!({
        "name": names.topic(i),
        "partitions": args.partitions,
        "replicationFactor": 1,
    });
    spec["cassandra"]["contactPoints"] = json!(world.cassandra_contact_points);
    spec["cassandra"]["localDatacenter"] = json!(world.cassandra_local_dc);
    spec["cassandra"]["keyspace"]["name"] = json!(names.keyspace);
    spec["cassandra"]["table"]["name"] = json!(table_name(args, i));
    spec["cassandra"]["credentialsSecretRef"] = json!({ "name": SECRET });
    spec["sources"] = json!([]);
    spec["runner"] = json!({ "ingestReplicas": 0, "sinkReplicas": 0 });
    Ok(json!({
        "apiVersion": "millrace.io/v1alpha1",
        "kind": "StreamPipeline",
        "metadata": { "name": names.pipeline(i) },
        "spec": spec,
    }))
}

fn table_name(args: &Args, i: usize) -> String {
    format!("t{:03}", i / args.pipelines_per_table.max(1))
}

/// `--precreate-tables`: the keyspace and each pipeline's table, made as
/// the operator makes them (the same statements, the owner in the
/// comment), so the operator finds each table its pipeline's and as
/// declared, and changes nothing. Returns the seconds it took.
async fn precreate_tables(
    args: &Args,
    world: &World,
    names: &Names,
    n: usize,
) -> anyhow::Result<f64> {
    use millrace_operator::desired::ownership::{Owner, comment_with_owner};
    anyhow::ensure!(
        args.pipelines_per_table == 1,
        "--precreate-tables needs --pipelines-per-table 1 (a table has one owner)"
    );
    let started = Instant::now();
    let spec = example_spec(&names.keyspace, "t")?;
    let table = spec
        .cassandra
        .table
        .clone()
        .context("the example has no table")?;
    let session = cql::session(world).await?;
    session
        .query_unpaged(
            millrace_api::cql::create_keyspace(&spec.cassandra.keyspace),
            (),
        )
        .await?;
    let statements = (0..n)
        .map(|i| {
            let mut t = table.clone();
            t.name = table_name(args, i);
            let owner = Owner::new(&names.namespace, &names.pipeline(i));
            millrace_api::cql::create_table_with_comment(
                &names.keyspace,
                &t,
                &comment_with_owner("", &owner),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let session = &session;
    futures::stream::iter(statements)
        .map(|cql| async move { session.query_unpaged(cql, ()).await.map(|_| ()) })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// The apiserver's count of GETs of the kinds a reconcile reads (the
/// runner's objects, the ownership records, the credentials Secrets). The
/// world's other clients read these through watches, so a rise is the
/// operator's reads.
async fn apiserver_gets(client: &kube::Client) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let kinds = [
        "deployments",
        "services",
        "configmaps",
        "serviceaccounts",
        "roles",
        "rolebindings",
        "secrets",
    ];
    Ok(text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("verb=\"GET\""))
        .filter(|l| {
            kinds
                .iter()
                .any(|k| l.contains(&format!("resource=\"{k}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(v: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (v * m).round() / m
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// This tree's CRD.
fn repo_crd() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/millrace.io_streampipelines.yaml")
}

/// The CRD installed: `replace_with`'s if given (applied over whatever the
/// world has), else the world's, or this tree's if it has none.
async fn ensure_crd(client: &kube::Client, replace_with: Option<&Path>) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let read = |path: &Path| -> anyhow::Result<CustomResourceDefinition> {
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        Ok(serde_yaml::from_str(&text)?)
    };
    if let Some(path) = replace_with {
        let mut crd = read(path)?;
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        api.patch(
            CRD_NAME,
            &PatchParams::apply("operator-scale").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("applying the CRD {}", path.display()))?;
    } else if api.get_opt(CRD_NAME).await?.is_none() {
        api.create(&PostParams::default(), &read(&repo_crd())?)
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = api.get(CRD_NAME).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the CRD {CRD_NAME} is not Established");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A namespace of this bench's, labelled as such.
async fn create_bench_namespace(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": ns, "labels": { BENCH_LABEL: "operator-scale" } }
            }))?,
        )
        .await?;
    Ok(())
}

async fn create_namespace(client: &kube::Client, world: &World, ns: &str) -> anyhow::Result<()> {
    create_bench_namespace(client, ns).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": SECRET },
                "stringData": {
                    "username": world.cassandra_username.clone().unwrap_or_default(),
                    "password": world.cassandra_password.clone().unwrap_or_default(),
                }
            }))?,
        )
        .await?;
    Ok(())
}

/// Deletes what one run made. Pipelines go first, while the operator still
/// runs, so its finalizer (deletionPolicy Retain) lets them go; whatever is
/// left after that has its finalizer removed by hand.
async fn cleanup(
    client: &kube::Client,
    world: &World,
    names: &Names,
    n: usize,
    mut operator: Option<Operator>,
) -> Value {
    let started = Instant::now();
    let pipelines: Api<StreamPipeline> = Api::namespaced(client.clone(), &names.namespace);
    let mut notes = Vec::<String>::new();
    let deadline = Instant::now() + Duration::from_secs(if operator.is_some() { 240 } else { 5 });
    let mut pipelines_gone = None;
    loop {
        match pipelines.list_metadata(&ListParams::default()).await {
            Ok(list) if list.items.is_empty() => {
                pipelines_gone = Some(started.elapsed().as_secs_f64());
                break;
            }
            Ok(list) if Instant::now() > deadline => {
                notes.push(format!(
                    "{} pipelines still had the finalizer; removed it by hand",
                    list.items.len()
                ));
                // The operator would put the finalizer back.
                if let Some(op) = operator.take()
                    && let Err(e) = op.stop().await
                {
                    notes.push(format!("stopping the operator: {e}"));
                }
                for sp in list.items {
                    let name = sp.metadata.name.unwrap_or_default();
                    let _ = pipelines
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                    let _ = pipelines.delete(&name, &DeleteParams::default()).await;
                }
                break;
            }
            Ok(list) => {
                // A deletecollection of 1,000 custom objects can stop at
                // the apiserver's request timeout part way: ask again for
                // those not yet marked.
                if list
                    .items
                    .iter()
                    .any(|sp| sp.metadata.deletion_timestamp.is_none())
                {
                    let _ = pipelines
                        .delete_collection(&DeleteParams::default(), &ListParams::default())
                        .await;
                }
            }
            Err(e) => notes.push(format!("listing pipelines: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(op) = operator
        && let Err(e) = op.stop().await
    {
        notes.push(format!("stopping the operator: {e}"));
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces
        .delete(&names.namespace, &DeleteParams::default())
        .await
    {
        notes.push(format!("deleting namespace {}: {e}", names.namespace));
    }
    // Topics: each pipeline's and its dead-letter topic (Retain keeps them).
    match kafka::base_config(world).create::<AdminClient<DefaultClientContext>>() {
        Ok(admin) => {
            let topics: Vec<String> = (0..n)
                .flat_map(|i| [names.topic(i), format!("{}.dlq", names.topic(i))])
                .collect();
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
            for chunk in topics.chunks(200) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                if let Err(e) = admin.delete_topics(&refs, &opts).await {
                    notes.push(format!("deleting topics: {e}"));
                }
            }
        }
        Err(e) => notes.push(format!("kafka admin: {e}")),
    }
    match cql::session(world).await {
        Ok(session) => {
            let drop = format!("DROP KEYSPACE IF EXISTS {}", names.keyspace);
            if let Err(e) = session.query_unpaged(drop, ()).await {
                notes.push(format!("dropping keyspace {}: {e}", names.keyspace));
            }
        }
        Err(e) => notes.push(format!("cassandra: {e}")),
    }
    json!({
        "pipelines_deleted_seconds": pipelines_gone.map(|s| round(s, 2)),
        "seconds": round(started.elapsed().as_secs_f64(), 2),
        "notes": notes,
    })
}

async fn run_size(
    args: &Args,
    world: &World,
    client: &kube::Client,
    binary: &Path,
    run: &str,
    n: usize,
    tck: f64,
) -> anyhow::Result<Value> {
    let names = Names::new(run, n);
    eprintln!(
        "operator-scale: {n} pipelines in namespace {} (keyspace {})",
        names.namespace, names.keyspace
    );
    let load_before = loadavg();
    create_namespace(client, world, &names.namespace).await?;
    let precreated = if args.precreate_tables {
        eprintln!(
            "operator-scale: creating the keyspace and {n} tables first (--precreate-tables)"
        );
        match precreate_tables(args, world, &names, n).await {
            Ok(s) => Some(s),
            Err(e) => {
                cleanup(client, world, &names, n, None).await;
                return Err(e);
            }
        }
    } else {
        None
    };
    let operator = match Operator::start(args, binary, &names.namespace).await {
        Ok(op) => op,
        Err(e) => {
            cleanup(client, world, &names, n, None).await;
            return Err(e);
        }
    };
    let log = operator.log.clone();
    let result = measure(args, world, client, &names, n, tck, &operator).await;
    let cleaned = cleanup(client, world, &names, n, Some(operator)).await;
    let mut result = result?;
    result["cleanup"] = cleaned;
    result["tables_precreated_seconds"] = json!(precreated.map(|s| round(s, 1)));
    result["load_average_before"] = json!(load_before);
    result["load_average_after"] = json!(loadavg());
    result["operator_log"] = json!(log.display().to_string());
    Ok(result)
}

async fn measure(
    args: &Args,
    world: &World,
    client: &kube::Client,
    names: &Names,
    n: usize,
    tck: f64,
    op: &Operator,
) -> anyhow::Result<Value> {
    let pipelines: Api<StreamPipeline> = Api::namespaced(client.clone(), &names.namespace);
    let seen = watch_pipelines(pipelines.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap_or_else(|e| e.into_inner()).synced {
        if Instant::now() > deadline {
            bail!("the pipeline watch did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the operator list and start its watches before the first apply.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let template = serde_json::to_value(example_spec("ks", "t")?)?;
    let bodies = (0..n)
        .map(|i| pipeline_body(args, world, names, i, &template))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let idle = op.now();
    let m_start = op.metrics().await?;
    let gets_start = apiserver_gets(client).await?;
    let t_start = Instant::now();
    let bodies = bodies
        .into_iter()
        .map(|body| {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, body)
        })
        .collect();
    let applied = apply_all(&pipelines, bodies, args.apply_concurrency).await?;
    let t_applied = Instant::now();
    eprintln!(
        "operator-scale: applied {n} in {:.1} s; waiting for Ready",
        (t_applied - t_start).as_secs_f64()
    );

    let timed_out = wait_for_all(
        n,
        t_start,
        Duration::from_secs(args.ready_timeout_secs),
        "Ready",
        || {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .ready_at
                .len()
        },
    )
    .await;
    let ready_at = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ready_at
        .clone();
    let t_all = ready_at
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    let m_ready = op.metrics().await?;
    let gets_ready = apiserver_gets(client).await?;
    let at_ready = op.now();
    let apply_samples = op.samples_between(t_start, Instant::now());
    let all_ready_s = (t_all - t_start).as_secs_f64();
    let reconciles = m_ready.reconciles() - m_start.reconciles();
    eprintln!(
        "operator-scale: {}/{n} Ready, all after {all_ready_s:.1} s; {reconciles} reconciles",
        ready_at.len()
    );
    let apply_phase = json!({
        "apply_seconds": round((t_applied - t_start).as_secs_f64(), 2),
        "ready": ready_at.len(),
        "timed_out": timed_out,
        "apply_to_ready_seconds": apply_to_reached(&applied, &ready_at),
        "all_ready_seconds": round(all_ready_s, 2),
        "reconciles": reconciles,
        "reconciles_per_second": round(reconciles / all_ready_s.max(1e-3), 1),
        "reconciles_per_pipeline": round(reconciles / n as f64, 2),
        "mean_reconcile_seconds": round(m_ready.mean_reconcile_seconds_since(&m_start), 4),
        "step_seconds_per_reconcile": m_ready.step_seconds_per_reconcile_since(&m_start),
        "writes": m_ready.writes_since(&m_start),
        "apiserver_gets": round(gets_ready - gets_start, 0),
        "apiserver_gets_per_reconcile": round((gets_ready - gets_start) / reconciles.max(1.0), 2),
        "failures": m_ready.failures(),
        "rss_idle_mib": round(idle.rss_kib as f64 / 1024.0, 1),
        "rss_peak_mib": round(at_ready.hwm_kib.max(apply_samples.iter().map(|s| s.rss_kib).max().unwrap_or(0)) as f64 / 1024.0, 1),
        "rss_at_all_ready_mib": round(at_ready.rss_kib as f64 / 1024.0, 1),
        "threads_peak": apply_samples.iter().map(|s| s.threads).max().unwrap_or(0),
        "cpu_seconds": round(at_ready.cpu_ticks.saturating_sub(idle.cpu_ticks) as f64 / tck, 2),
    });
    if timed_out {
        return Ok(json!({
            "pipelines": n,
            "tables": n.div_ceil(args.pipelines_per_table.max(1)),
            "topics": 2 * n,
            "resync_seconds": args.resync_seconds,
            "apply": apply_phase,
            "steady": null,
        }));
    }

    // Settle: the last status writes set off one more reconcile each; wait
    // until nothing has been written for 10 s.
    let settle_start = Instant::now();
    let mut last = op.metrics().await?.all_writes();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(10)
        && settle_start.elapsed() < Duration::from_secs(180)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = op.metrics().await?.all_writes();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let settle_s = settle_start.elapsed().as_secs_f64();

    // Steady state: every pipeline's next resync is due within
    // --resync-seconds of its last reconcile, so this window holds at least
    // one resync of each.
    let window = Duration::from_secs(args.resync_seconds + 15);
    eprintln!(
        "operator-scale: settled in {settle_s:.0} s; steady-state window {} s",
        window.as_secs()
    );
    let m0 = op.metrics().await?;
    let s0 = op.now();
    let e0 = seen.lock().unwrap_or_else(|e| e.into_inner()).modified;
    let w0 = Instant::now();
    tokio::time::sleep(window).await;
    let m1 = op.metrics().await?;
    let s1 = op.now();
    let e1 = seen.lock().unwrap_or_else(|e| e.into_inner()).modified;
    let steady_samples = op.samples_between(w0, Instant::now());
    let resyncs = m1.reconciles() - m0.reconciles();
    let steady = json!({
        "settle_seconds": round(settle_s, 1),
        "window_seconds": window.as_secs(),
        "reconciles": resyncs,
        "reconciles_per_second": round(resyncs / window.as_secs_f64(), 2),
        "mean_reconcile_seconds": round(m1.mean_reconcile_seconds_since(&m0), 4),
        "writes": m1.writes_since(&m0),
        "pipeline_writes_seen_by_watch": e1 - e0,
        "failures": m1.failures(),
        "rss_mib": round(s1.rss_kib as f64 / 1024.0, 1),
        "rss_max_mib": round(steady_samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0, 1),
        "threads": s1.threads,
        "cpu_seconds": round(s1.cpu_ticks.saturating_sub(s0.cpu_ticks) as f64 / tck, 2),
        "cpu_ms_per_reconcile": round(1000.0 * s1.cpu_ticks.saturating_sub(s0.cpu_ticks) as f64 / tck / resyncs.max(1.0), 2),
    });
    eprintln!("operator-scale: steady state: {steady}");
    Ok(json!({
        "pipelines": n,
        "tables": n.div_ceil(args.pipelines_per_table.max(1)),
        "topics": 2 * n,
        "resync_seconds": args.resync_seconds,
        "apply": apply_phase,
        "steady": steady,
    }))
}

// ---------------------------------------------------------------------------
// Applying many objects at once and timing them to a state.

/// Server-side applies each `(name, body)`, `concurrency` in flight; when
/// each apply returned.
async fn apply_all<K, B>(
    api: &Api<K>,
    bodies: Vec<(String, B)>,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Instant>>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    B: k8s_openapi::serde::Serialize + std::fmt::Debug,
{
    futures::stream::iter(bodies)
        .map(|(name, body)| {
            let api = api.clone();
            async move {
                api.patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .with_context(|| format!("applying {name}"))?;
                anyhow::Ok((name, Instant::now()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// Waits until `done()` counts `n`, or `timeout` after `start` (then
/// true), saying every 15 s how many are `what`.
async fn wait_for_all(
    n: usize,
    start: Instant,
    timeout: Duration,
    what: &str,
    done: impl Fn() -> usize,
) -> bool {
    let mut last_report = Instant::now();
    loop {
        let count = done();
        if count >= n {
            return false;
        }
        if Instant::now() > start + timeout {
            return true;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "operator-scale: {count}/{n} {what} after {:.0} s",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Each object's seconds from its apply to the moment it was `reached`,
/// sorted, and their summary.
fn apply_to_reached(
    applied: &HashMap<String, Instant>,
    reached: &HashMap<String, Instant>,
) -> Value {
    let mut latencies: Vec<f64> = applied
        .iter()
        .filter_map(|(name, at)| {
            reached
                .get(name)
                .map(|r| r.saturating_duration_since(*at).as_secs_f64())
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    json!({
        "p50": round(percentile(&latencies, 50.0), 3),
        "p90": round(percentile(&latencies, 90.0), 3),
        "p99": round(percentile(&latencies, 99.0), 3),
        "max": round(latencies.last().copied().unwrap_or(f64::NAN), 3),
        "min": round(latencies.first().copied().unwrap_or(f64::NAN), 3),
    })
}

// ---------------------------------------------------------------------------
// The controller-manager alone.

/// Whether the controller-manager has seen a Deployment's current spec and
/// rolled it out: the operator's own test for a runner Deployment
/// (`apply::kubernetes`), at zero replicas.
fn deployment_observed(d: &Deployment) -> bool {
    let s = d.status.clone().unwrap_or_default();
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.metadata.generation.unwrap_or(0) <= s.observed_generation.unwrap_or(-1)
        && s.updated_replicas.unwrap_or(0) >= want
        && s.replicas.unwrap_or(0) == want
}

/// The sink Deployment the operator makes for pipeline `i`, from
/// `millrace_operator::desired`, without the owner reference (its
/// pipeline does not exist here, and the garbage collector would delete it).
fn floor_deployment(
    args: &Args,
    world: &World,
    names: &Names,
    i: usize,
    template: &Value,
) -> anyhow::Result<Deployment> {
    let mut body = pipeline_body(args, world, names, i, template)?;
    body["metadata"]["namespace"] = json!(names.namespace);
    body["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
    body["metadata"]["generation"] = json!(1);
    let sp: StreamPipeline = serde_json::from_value(body)?;
    let p = desired::Pipeline::new(&sp)?;
    let defaults = desired::deployment::RunnerDefaults {
        image: args.runner_image.clone(),
        ..Default::default()
    };
    let objects = desired::runner::runner_objects(&p, &defaults, None, None)?;
    let mut d = objects
        .deployments
        .into_iter()
        .next()
        .context("the operator builds no Deployment for this pipeline")?
        .deployment;
    d.metadata.owner_references = None;
    Ok(desired::with_desired_hash(d)?)
}

async fn controller_manager_floor(
    args: &Args,
    world: &World,
    client: &kube::Client,
    run: &str,
    n: usize,
) -> anyhow::Result<Value> {
    let names = Names::new(run, n);
    let load_before = loadavg();
    create_bench_namespace(client, &names.namespace).await?;
    let result = floor_measure(args, world, client, &names, n).await;
    if let Err(e) = Api::<Namespace>::all(client.clone())
        .delete(&names.namespace, &DeleteParams::default())
        .await
    {
        eprintln!(
            "operator-scale: deleting namespace {}: {e}",
            names.namespace
        );
    }
    let mut result = result?;
    result["load_average_before"] = json!(load_before);
    result["load_average_after"] = json!(loadavg());
    Ok(result)
}

async fn floor_measure(
    args: &Args,
    world: &World,
    client: &kube::Client,
    names: &Names,
    n: usize,
) -> anyhow::Result<Value> {
    let template = serde_json::to_value(example_spec("ks", "t")?)?;
    let bodies = (0..n)
        .map(|i| floor_deployment(args, world, names, i, &template))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let api: Api<Deployment> = Api::namespaced(client.clone(), &names.namespace);
    let observed = Arc::new(Mutex::new(HashMap::<String, Instant>::new()));
    let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch = {
        let (api, observed, synced) = (api.clone(), observed.clone(), synced.clone());
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => {
                        if deployment_observed(&d) {
                            observed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(d.metadata.name.clone().unwrap_or_default())
                                .or_insert_with(Instant::now);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        synced.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("operator-scale: watch: {e}"),
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !synced.load(std::sync::atomic::Ordering::SeqCst) {
        if Instant::now() > deadline {
            bail!("the Deployment watch did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t_start = Instant::now();
    let bodies = bodies
        .into_iter()
        .map(|d| (d.metadata.name.clone().unwrap_or_default(), d))
        .collect();
    let applied = apply_all(&api, bodies, args.apply_concurrency).await?;
    let t_applied = Instant::now();
    let timed_out = wait_for_all(
        n,
        t_start,
        Duration::from_secs(args.ready_timeout_secs),
        "Deployments observed",
        || observed.lock().unwrap_or_else(|e| e.into_inner()).len(),
    )
    .await;
    watch.abort();
    let observed = observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let t_all = observed
        .values()
        .max()
        .copied()
        .unwrap_or_else(Instant::now);
    let all_s = (t_all - t_start).as_secs_f64();
    eprintln!(
        "operator-scale: {}/{n} Deployments observed, all after {all_s:.1} s",
        observed.len()
    );
    Ok(json!({
        "pipelines": n,
        "deployments": n,
        "apply": {
            "apply_seconds": round((t_applied - t_start).as_secs_f64(), 2),
            "ready": observed.len(),
            "timed_out": timed_out,
            "apply_to_ready_seconds": apply_to_reached(&applied, &observed),
            "all_ready_seconds": round(all_s, 2),
        },
    }))
}

// ---------------------------------------------------------------------------
// Report.

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": round(mem_kib as f64 / 1024.0 / 1024.0, 1),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

fn f(v: &Value) -> String {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                format!("{x}")
            }
        }
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tables(runs: &[Value]) -> String {
    let mut out = String::new();
    out.push_str("| pipelines | operator | resync s | tables | apply s | apply->Ready p50 s | p90 s | p99 s | max s | all Ready s | reconciles | per pipeline | apiserver writes per pipeline | GETs per reconcile | reconciles/s | peak RSS MiB | CPU s | peak threads |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let a = &r["apply"];
        let l = &a["apply_to_ready_seconds"];
        let per_pipeline = |v: &Value| match (v.as_f64(), r["pipelines"].as_f64()) {
            (Some(v), Some(n)) if n > 0.0 => json!(round(v / n, 2)),
            _ => Value::Null,
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f(&r["pipelines"]),
            f(&r["operator"]),
            f(&r["resync_seconds"]),
            match r["tables_precreated_seconds"].as_f64() {
                Some(secs) => format!("{} (made before, {secs} s)", f(&r["tables"])),
                None => f(&r["tables"]),
            },
            f(&a["apply_seconds"]),
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["max"]),
            f(&a["all_ready_seconds"]),
            if a["timed_out"] == json!(true) {
                format!(" (timed out, {} Ready)", f(&a["ready"]))
            } else {
                String::new()
            },
            f(&a["reconciles"]),
            f(&per_pipeline(&a["reconciles"])),
            f(&per_pipeline(&a["writes"]["kubernetes"])),
            f(&a["apiserver_gets_per_reconcile"]),
            f(&a["reconciles_per_second"]),
            f(&a["rss_peak_mib"]),
            f(&a["cpu_seconds"]),
            f(&a["threads_peak"]),
        ));
    }
    out.push_str("\nSteady state (one resync of every pipeline):\n\n| pipelines | operator | window s | resync reconciles | writes kubernetes | writes kafka | writes cassandra | pipeline objects written | RSS MiB | threads | CPU s | CPU ms/reconcile |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    // The controller-manager floor has no operator, so no steady state.
    for r in runs.iter().filter(|r| !r["steady"].is_null()) {
        let s = &r["steady"];
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            f(&r["pipelines"]),
            f(&r["operator"]),
            f(&s["window_seconds"]),
            f(&s["reconciles"]),
            f(&s["writes"]["kubernetes"]),
            f(&s["writes"]["kafka"]),
            f(&s["writes"]["cassandra"]),
            f(&s["pipeline_writes_seen_by_watch"]),
            f(&s["rss_mib"]),
            f(&s["threads"]),
            f(&s["cpu_seconds"]),
            f(&s["cpu_ms_per_reconcile"]),
        ));
    }
    out
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Generated by `bench/operator-scale` at {} ({} s in all).\n\n",
        f(&doc["finished"]),
        f(&doc["seconds"])
    ));
    let m = &doc["machine"];
    out.push_str(&format!(
        "Machine: {} x {}, {} GiB, Linux {}. Load average before/after each run: {}.\n\n",
        f(&m["cpus"]),
        f(&m["cpu"]),
        f(&m["memory_gib"]),
        f(&m["kernel"]),
        doc["runs"]
            .as_array()
            .map(|runs| runs
                .iter()
                .map(|r| format!(
                    "{}: {} / {}",
                    f(&r["pipelines"]),
                    f(&r["load_average_before"]),
                    f(&r["load_average_after"])
                ))
                .collect::<Vec<_>>()
                .join("; "))
            .unwrap_or_default()
    ));
    out.push_str(&format!("Command: `{}`\n\n", f(&doc["command"])));
    if let Some(note) = doc["note"].as_str().filter(|s| !s.is_empty()) {
        out.push_str(&format!("Operator: {note}\n\n"));
    }
    out.push_str(&tables(
        doc["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]),
    ));
    if let Some(before) = doc["before"]["runs"].as_array() {
        out.push_str(&format!(
            "\nBaseline (\"before\", {}; {}):\n\n",
            f(&doc["before"]["note"]),
            f(&doc["before"]["finished"])
        ));
        out.push_str(&tables(before));
    }
    out
}

fn write_report(path: &Path, doc: &Value) -> anyhow::Result<()> {
    let generated = format!("{BEGIN}\n{}{END}", render(doc));
    let text = match std::fs::read_to_string(path) {
        Ok(old) => match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if e > b => {
                format!("{}{generated}{}", &old[..b], &old[e + END.len()..])
            }
            _ => format!("{old}\n{generated}\n"),
        },
        Err(_) => format!("# Operator scale\n\n{generated}\n"),
    };
    std::fs::write(path, text)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.render_only {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&args.json)?)?;
        return write_report(&args.report, &doc);
    }
    let started = Instant::now();
    let world = World::from_env()?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the apiserver (KUBECONFIG)")?;
    ensure_crd(&client, None).await?;
    let binary = match &args.operator {
        Some(b) => b.clone(),
        None => {
            PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
                .join("release/millrace-operator")
        }
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found: cargo build --release -p millrace-operator",
        binary.display()
    );
    let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let tck = clock_ticks();
    let mut runs = Vec::new();
    let mut operators = Vec::new();
    if let Some(baseline) = &args.baseline {
        anyhow::ensure!(baseline.exists(), "{} not found", baseline.display());
        operators.push(("baseline", baseline.clone(), format!("{run}b")));
    }
    operators.push(("new", binary.clone(), run.clone()));
    for &n in &args.sizes {
        if args.controller_manager_floor {
            eprintln!("operator-scale: {n} Deployments, the controller-manager alone");
            let mut r =
                match controller_manager_floor(&args, &world, &client, &format!("{run}f"), n).await
                {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("operator-scale: {n} Deployments: {e:#}");
                        json!({ "pipelines": n, "error": format!("{e:#}") })
                    }
                };
            r["operator"] = json!("none (controller-manager floor)");
            runs.push(r);
        }
        for (label, binary, run) in &operators {
            eprintln!("operator-scale: {n} pipelines, {label} operator");
            if let Some(baseline_crd) = &args.baseline_crd {
                let crd = if *label == "baseline" {
                    baseline_crd.clone()
                } else {
                    repo_crd()
                };
                eprintln!("operator-scale: the CRD of {}", crd.display());
                ensure_crd(&client, Some(&crd)).await?;
            }
            let mut r = match run_size(&args, &world, &client, binary, run, n, tck).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("operator-scale: {n} pipelines: {e:#}");
                    json!({ "pipelines": n, "error": format!("{e:#}") })
                }
            };
            r["operator"] = json!(label);
            r["operator_binary"] = json!(binary.display().to_string());
            runs.push(r);
        }
    }
    let command = std::env::var("OPERATOR_SCALE_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let finished = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let this = json!({
        "finished": finished,
        "seconds": round(started.elapsed().as_secs_f64(), 0),
        "command": command,
        "note": args.note,
        "machine": machine(),
        "settings": {
            "pipelines_per_table": args.pipelines_per_table,
            "precreate_tables": args.precreate_tables,
            "partitions": args.partitions,
            "resync_seconds": args.resync_seconds,
            "apply_concurrency": args.apply_concurrency,
            "operator": binary.display().to_string(),
            "operator_args": args.operator_args,
            "baseline_crd": args.baseline_crd.as_ref().map(|p| p.display().to_string()),
        },
        "runs": runs,
    });
    let old: Value = std::fs::read_to_string(&args.json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let doc = if args.save_as_before {
        let mut doc = if old.is_object() { old } else { json!({}) };
        doc["before"] = this;
        doc
    } else {
        let mut doc = this;
        if !old["before"].is_null() {
            doc["before"] = old["before"].clone();
        }
        doc
    };
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)? + "\n")?;
    if !args.save_as_before {
        write_report(&args.report, &doc)?;
    }
    println!("{}", serde_json::to_string(&doc["runs"])?);
    let failed = doc["runs"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| !r["error"].is_null()));
    if failed && !args.save_as_before {
        bail!("some runs failed (see {})", args.json.display());
    }
    Ok(())
}
