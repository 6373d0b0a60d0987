//! What the operator scenarios share: the CRD installed from `crds/`, the
//! operator binary started as a child process scoped to the test's own
//! namespace, the seed's pipeline pointed at the test world, and views of
//! the topic and table as Kafka and Cassandra have them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use millrace_api::StreamPipeline;
use millrace_testsupport::{
    Deadline, TestNamespace, World, poll_until, unique_cql_name, unique_name,
};
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use serde_json::{Value, json};

pub const RUNNER_IMAGE: &str = "localhost/millrace-runner:dev";
pub const SECRET: &str = "cassandra-creds";

pub fn world() -> World {
    World::discover().expect("the test world (run tests/env/up)")
}

fn repo() -> PathBuf {
    millrace_testsupport::repo_root()
}

/// Installs the CRD from `crds/` by server-side apply (idempotent) and
/// waits until it is Established.
pub async fn install_crd(client: &kube::Client) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(repo().join("crds/millrace.io_streampipelines.yaml"))?;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().context("CRD name")?;
    api.patch(
        &name,
        &PatchParams::apply("millrace-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    poll_until("the CRD to be Established", Deadline::secs(30), || async {
        let crd = api.get(&name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        Ok(established.then_some(()))
    })
    .await
}

/// The operator binary, built once per test binary (incrementally).
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "millrace-operator"])
                .current_dir(repo())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("cargo build -p millrace-operator: {status}"));
            }
            // target/debug/deps/<test> -> target/debug/millrace-operator
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let dir = exe
                .parent()
                .and_then(|d| d.parent())
                .ok_or("no target dir")?;
            Ok(dir.join("millrace-operator"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(millrace_testsupport::free_port()?)
}

/// How to start an operator process; `Launch::default()` is what the
/// operator scenarios use.
pub struct Launch<'a> {
    /// The binary to run; by default the one `operator_binary` builds.
    pub binary: Option<PathBuf>,
    /// Arguments after the usual ones.
    pub extra: &'a [&'a str],
    /// A log file to append to (its directory must exist), so restarts of
    /// one run share it; by default a new file in the temp directory.
    pub log: Option<PathBuf>,
    pub rust_log: &'a str,
    /// How long the operator may take to answer `/healthz`.
    pub healthz_secs: u64,
    /// Where to leave the process's pid (removed when the `Operator` is
    /// dropped), for a script that must stop it should the test die first.
    pub pid_file: Option<PathBuf>,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Self {
            binary: None,
            extra: &[],
            log: None,
            rust_log: "info,millrace_operator=debug,kube=warn",
            healthz_secs: 30,
            pid_file: None,
        }
    }
}

/// An operator process, killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    pub metrics_addr: String,
    pub log: PathBuf,
    pid_file: Option<PathBuf>,
}

impl Operator {
    /// Starts the operator for one namespace with a short resync, so drift
    /// in Kafka and Cassandra (which send no events) is seen quickly.
    pub async fn start(world: &World, namespace: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::launch(
            world,
            namespace,
            &Launch {
                extra,
                ..Launch::default()
            },
        )
        .await
    }

    /// `start`, with the choices `Launch` offers.
    pub async fn launch(world: &World, namespace: &str, how: &Launch<'_>) -> anyhow::Result<Self> {
        let binary = match &how.binary {
            Some(b) => b.clone(),
            None => operator_binary()?,
        };
        let port = free_port()?;
        let metrics_addr = format!("127.0.0.1:{port}");
        let (log, file) = match &how.log {
            Some(log) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)?;
                (log.clone(), file)
            }
            None => {
                let log = std::env::temp_dir().join(format!("{}-{port}.log", namespace));
                let file = std::fs::File::create(&log)?;
                (log, file)
            }
        };
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.args([
            "--namespace",
            namespace,
            "--runner-image",
            RUNNER_IMAGE,
            "--metrics-listen",
            &metrics_addr,
            "--resync-seconds",
            "3",
        ])
        .args(how.extra)
        .env("RUST_LOG", how.rust_log)
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true);
        if let Some(kc) = &world.kubeconfig {
            cmd.env("KUBECONFIG", kc);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        if let (Some(pid_file), Some(pid)) = (&how.pid_file, child.id()) {
            std::fs::write(pid_file, pid.to_string())?;
        }
        // An operator that never answers is killed with its dropped child;
        // its pid file stays, and whoever reads it checks the command line.
        poll_until(
            "the operator's /healthz",
            Deadline::secs(how.healthz_secs),
            || async { Ok(http_get(&metrics_addr, "/healthz").await.ok()) },
        )
        .await?;
        Ok(Self {
            child,
            metrics_addr,
            log,
            pid_file: how.pid_file.clone(),
        })
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        http_get(&self.metrics_addr, "/metrics").await
    }

    /// One sample of `/metrics`, by its full name with labels.
    pub async fn metric(&self, series: &str) -> anyhow::Result<f64> {
        let text = self.metrics().await?;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .with_context(|| format!("no {series} in /metrics"))
    }

    pub async fn writes(&self) -> anyhow::Result<[f64; 3]> {
        Ok([
            self.metric("millrace_operator_writes_total{target=\"kubernetes\"}")
                .await?,
            self.metric("millrace_operator_writes_total{target=\"kafka\"}")
                .await?,
            self.metric("millrace_operator_writes_total{target=\"cassandra\"}")
                .await?,
        ])
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGTERM, then wait for a graceful exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .context("the operator did not stop within 20s of SIGTERM")??;
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
    }
}

pub use millrace_testsupport::tools::http_get;

/// One scenario's world: a namespace with the Cassandra credentials
/// Secret, and unique topic and keyspace names.
pub struct Scenario {
    pub world: World,
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub topic: String,
    pub keyspace: String,
}

impl Scenario {
    pub async fn new(prefix: &str) -> anyhow::Result<Self> {
        let world = world();
        let client = world.kube_client().await?;
        install_crd(&client).await?;
        let ns = TestNamespace::create(&client, prefix).await?;
        let s = Self {
            topic: unique_name(&format!("{prefix}-users")),
            keyspace: unique_cql_name(&format!("{prefix}_ks")).replace('-', "_"),
            world,
            client,
            ns,
        };
        s.create_credentials_secret(
            SECRET,
            &s.world.cassandra_username,
            s.world.cassandra_password(),
        )
        .await?;
        Ok(s)
    }

    /// A Secret `name` in the scenario's namespace with the keys the
    /// pipeline's `credentialsSecretRef` reads by default.
    pub async fn create_credentials_secret(
        &self,
        name: &str,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.ns
            .api::<Secret>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": { "name": name },
                    "stringData": { "username": username, "password": password },
                }))?,
            )
            .await?;
        Ok(())
    }

    /// A Secret `name` in the scenario's namespace with `data` as its
    /// `stringData`.
    pub async fn create_secret(&self, name: &str, data: Value) -> anyhow::Result<()> {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": data,
        }))?;
        self.ns
            .api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await?;
        Ok(())
    }

    /// The token of the push tokens Secret the operator made for
    /// pipeline `name`, once it exists.
    pub async fn push_token(&self, name: &str) -> anyhow::Result<String> {
        let secret_name = millrace_api::push_auth::generated_secret_name(name);
        let api = self.ns.api::<Secret>();
        let secret = poll_until(
            &format!("the operator to make Secret {secret_name}"),
            Deadline::secs(60),
            || async { Ok(api.get_opt(&secret_name).await?) },
        )
        .await?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(millrace_api::push_auth::GENERATED_TOKEN_KEY))
            .with_context(|| format!("Secret {secret_name} has no token"))?;
        Ok(String::from_utf8(token.0.clone())?)
    }

    /// A variable of the world's env file that the test needs: a world
    /// without it fails the test, saying how to get one.
    pub fn world_var(&self, name: &str) -> anyhow::Result<String> {
        self.world.var(name).map(str::to_owned).with_context(|| {
            format!("the test world has no {name}: bring it up again with tests/env/up")
        })
    }

    /// The seed pipeline `name` on a topic (`{topic}-{name}`) and table of
    /// its own, generating `rows` users.
    pub fn own_seed_pipeline(&self, name: &str, rows: i64) -> anyhow::Result<Value> {
        let mut sp = self.seed_pipeline(name)?;
        let spec = &mut sp["spec"];
        spec["kafka"]["topic"]["name"] = json!(format!("{}-{name}", self.topic));
        spec["cassandra"]["table"]["name"] = json!(name.replace('-', "_"));
        spec["sources"] = json!([{
            "name": "synthetic",
            "generator": {"profile": "randomuser", "recordsPerSecond": 200, "limit": rows}
        }]);
        Ok(sp)
    }

    /// Deletes the topics (and dead-letter topics) of the pipelines
    /// [`Scenario::own_seed_pipeline`] made: cleanup, so at best effort.
    pub async fn drop_own_topics(&self, names: &[&str]) {
        let Ok(admin) = self
            .world
            .kafka_config()
            .create::<AdminClient<DefaultClientContext>>()
        else {
            return;
        };
        let mut topics = Vec::new();
        for name in names {
            topics.push(format!("{}-{name}", self.topic));
            topics.push(format!("{}-{name}.dlq", self.topic));
        }
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&refs, &AdminOptions::new()).await;
    }

    /// The world's SASL listener; a world without one fails the test.
    pub fn kafka_sasl(&self) -> anyhow::Result<KafkaSasl> {
        let var = |name: &str| self.world_var(name);
        Ok(KafkaSasl {
            bootstrap: var("MILLRACE_KAFKA_SASL_BOOTSTRAP")?,
            username: var("MILLRACE_KAFKA_SASL_USERNAME")?,
            password: var("MILLRACE_KAFKA_SASL_PASSWORD")?,
            mechanism: var("MILLRACE_KAFKA_SASL_MECHANISM")?,
        })
    }

    pub fn pipelines(&self) -> Api<StreamPipeline> {
        self.ns.api()
    }

    /// The push endpoint (`/v1/records`) of an ingest Pod of pipeline
    /// `name` that runs its current spec, once one is Ready.
    pub async fn current_push_url(&self, name: &str) -> anyhow::Result<String> {
        let generation = self
            .pipelines()
            .get(name)
            .await?
            .metadata
            .generation
            .unwrap_or_default();
        let hash = self
            .runner_config_hash(&format!("{name}-ingest"), generation)
            .await?;
        let api = self.ns.api::<Pod>();
        let pod = poll_until(
            "an ingest Pod running the current spec to be Ready",
            Deadline::secs(120),
            || async {
                Ok(millrace_testsupport::kube_helpers::pods(
                    &api,
                    &format!(
                        "app.kubernetes.io/instance={name},app.kubernetes.io/component=ingest"
                    ),
                )
                .await?
                .into_iter()
                .find(|p| millrace_testsupport::kube_helpers::pod_ready_with_config(p, &hash)))
            },
        )
        .await?;
        let ip = millrace_testsupport::kube_helpers::pod_ip(&pod).context("pod IP")?;
        Ok(format!(
            "http://{ip}:{}/v1/records",
            millrace_api::ports::PUSH
        ))
    }

    /// The seed's pipeline (`examples/randomuser.yaml`) pointed at the test
    /// world, with this scenario's topic and keyspace.
    pub fn seed_pipeline(&self, name: &str) -> anyhow::Result<Value> {
        self.example_pipeline("examples/randomuser.yaml", name)
    }

    /// The example pipeline in `file` (relative to the repository) pointed
    /// at the test world, with this scenario's topic and keyspace.
    pub fn example_pipeline(&self, file: &str, name: &str) -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(repo().join(file))?;
        let mut sp: Value = serde_yaml::from_str(&text)?;
        sp["metadata"]["name"] = json!(name);
        let spec = &mut sp["spec"];
        spec["kafka"]["bootstrapServers"] = json!(self.world.kafka_bootstrap);
        spec["kafka"]["topic"]["name"] = json!(self.topic);
        spec["kafka"]["topic"]["config"] = json!({ "retention.ms": "604800000" });
        spec["cassandra"]["contactPoints"] = json!(self.world.cassandra_contact_points);
        spec["cassandra"]["localDatacenter"] = json!(self.world.cassandra_local_dc);
        spec["cassandra"]["keyspace"]["name"] = json!(self.keyspace);
        spec["cassandra"]["credentialsSecretRef"] = json!({ "name": SECRET });
        Ok(sp)
    }

    pub async fn apply(&self, sp: &Value) -> anyhow::Result<StreamPipeline> {
        let name = sp["metadata"]["name"].as_str().context("name")?.to_owned();
        let mut body = sp.clone();
        body["apiVersion"] = json!("millrace.io/v1alpha1");
        body["kind"] = json!("StreamPipeline");
        Ok(self
            .pipelines()
            .patch(
                &name,
                &PatchParams::apply("millrace-e2e").force(),
                &Patch::Apply(&body),
            )
            .await?)
    }

    pub async fn merge(&self, name: &str, patch: Value) -> anyhow::Result<StreamPipeline> {
        Ok(self
            .pipelines()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?)
    }

    /// Waits until condition `type_` has `status` (and `reason`, if given)
    /// for the pipeline's current generation.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        secs: u64,
    ) -> anyhow::Result<(StreamPipeline, Condition)> {
        let api = self.pipelines();
        poll_until(
            &format!("{name}: {type_}={status} {reason:?}"),
            Deadline::secs(secs),
            || async {
                let sp = api.get(name).await?;
                let generation = sp.metadata.generation;
                let found = condition(&sp, type_).filter(|c| {
                    c.status == status
                        && reason.is_none_or(|r| c.reason == r)
                        && c.observed_generation == generation
                });
                match found {
                    Some(c) => Ok(Some((sp, c))),
                    None => bail!(
                        "now: {:?}",
                        condition(&sp, type_).map(|c| (c.status, c.reason, c.message))
                    ),
                }
            },
        )
        .await
    }

    /// The `millrace.io/config-hash` of the runner Deployment `deployment`
    /// once it reflects pipeline generation `generation` or a later one: the
    /// annotation its Pods carry when they run that spec.
    pub async fn runner_config_hash(
        &self,
        deployment: &str,
        generation: i64,
    ) -> anyhow::Result<String> {
        let api = self.ns.api::<Deployment>();
        poll_until(
            &format!("{deployment} to reflect generation {generation}"),
            Deadline::secs(60),
            || async {
                let Some(d) = api.get_opt(deployment).await? else {
                    return Ok(None);
                };
                let reflected = d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("millrace.io/pipeline-generation"))
                    .and_then(|g| g.parse::<i64>().ok())
                    .is_some_and(|g| g >= generation);
                Ok(reflected
                    .then(|| {
                        d.spec
                            .and_then(|s| s.template.metadata)
                            .and_then(|m| m.annotations)
                            .and_then(|mut a| a.remove("millrace.io/config-hash"))
                    })
                    .flatten())
            },
        )
        .await
    }

    /// The pipeline document the operator gives pipeline `name`'s runner
    /// (its ConfigMap's `pipeline.yaml`): the spec as the runner runs it.
    pub async fn runner_document(&self, name: &str) -> anyhow::Result<StreamPipeline> {
        let cm = self
            .ns
            .api::<ConfigMap>()
            .get(&format!("{name}-pipeline"))
            .await?;
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("pipeline.yaml"))
            .with_context(|| format!("{name}-pipeline has no pipeline.yaml"))?;
        Ok(serde_yaml::from_str(text)?)
    }

    /// Whether the pipeline carries the operator's finalizer
    /// (`millrace.io/cleanup`): only a `deletionPolicy: Delete` pipeline
    /// does, from the reconcile after the policy is set, and a pipeline
    /// deleted before that keeps its data.
    pub async fn has_finalizer(&self, name: &str) -> anyhow::Result<bool> {
        let sp = self.pipelines().get(name).await?;
        Ok(sp
            .metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "millrace.io/cleanup"))
    }

    /// Waits until [`Self::has_finalizer`] is `present`.
    pub async fn wait_finalizer(&self, name: &str, present: bool, secs: u64) -> anyhow::Result<()> {
        poll_until(
            &format!(
                "{name} with the finalizer {}",
                if present { "on" } else { "off" }
            ),
            Deadline::secs(secs),
            || async { Ok((self.has_finalizer(name).await? == present).then_some(())) },
        )
        .await
    }

    /// Deletes the pipeline and waits until its finalizer has run.
    pub async fn delete_pipeline(&self, name: &str, secs: u64) -> anyhow::Result<Duration> {
        let api = self.pipelines();
        let start = Instant::now();
        api.delete(name, &Default::default()).await?;
        poll_until(
            &format!("{name} to be gone"),
            Deadline::secs(secs),
            || async { Ok(api.get_opt(name).await?.is_none().then_some(())) },
        )
        .await?;
        Ok(start.elapsed())
    }

    pub async fn kafka_topic(&self, name: &str) -> anyhow::Result<Option<TopicView>> {
        describe_topic(&self.world, name).await
    }

    pub async fn table_columns(&self, table: &str) -> anyhow::Result<Vec<ColumnView>> {
        let session = self.world.cassandra_session().await?;
        let rows = session
            .query_unpaged(
                "SELECT column_name, type, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
                (self.keyspace.as_str(), table),
            )
            .await?
            .into_rows_result()?;
        let mut out = Vec::new();
        for row in rows.rows::<(String, String, String)>()? {
            let (name, cql_type, kind) = row?;
            out.push(ColumnView {
                name,
                cql_type,
                kind,
            });
        }
        Ok(out)
    }

    /// Rows of `table` in the scenario's keyspace.
    pub async fn row_count(&self, table: &str) -> anyhow::Result<i64> {
        let session = self.world.cassandra_session().await?;
        let rows = session
            .query_unpaged(
                format!("SELECT COUNT(*) FROM {}.{table}", self.keyspace),
                &[],
            )
            .await?
            .into_rows_result()?;
        Ok(rows.single_row::<(i64,)>()?.0)
    }

    /// The Secret that variable `var` of Deployment `deployment`'s runner
    /// container comes from by `secretKeyRef`; an error if the variable is
    /// missing or has a literal value.
    pub async fn env_secret(&self, deployment: &str, var: &str) -> anyhow::Result<String> {
        let d = self.ns.api::<Deployment>().get(deployment).await?;
        let env = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.into_iter().next())
            .and_then(|c| c.env)
            .unwrap_or_default();
        let e = env
            .into_iter()
            .find(|e| e.name == var)
            .with_context(|| format!("{deployment} has no {var}"))?;
        if e.value.is_some() {
            bail!("{deployment}: {var} has a literal value");
        }
        e.value_from
            .and_then(|v| v.secret_key_ref)
            .map(|r| r.name)
            .with_context(|| format!("{deployment}: {var} is not from a secretKeyRef"))
    }

    /// Every place a secret value could leak to, as (what, text): the
    /// operator's log, Events, ConfigMaps, StreamPipelines, Deployments and
    /// Pods of the namespace, its containers' logs (the node agent's files,
    /// else through the kubelet), and the node agent's and apiserver's logs.
    pub async fn everything_visible(&self, op: &Operator) -> anyhow::Result<Vec<(String, String)>> {
        let s = self;
        let mut seen = vec![("operator log".to_owned(), op.log_text())];
        let list = ListParams::default();
        seen.push((
            "Events (core/v1)".into(),
            serde_json::to_string(
                &s.ns
                    .api::<k8s_openapi::api::core::v1::Event>()
                    .list(&list)
                    .await?,
            )?,
        ));
        seen.push((
            "Events (events.k8s.io/v1)".into(),
            serde_json::to_string(
                &s.ns
                    .api::<k8s_openapi::api::events::v1::Event>()
                    .list(&list)
                    .await?,
            )?,
        ));
        seen.push((
            "ConfigMaps".into(),
            serde_json::to_string(&s.ns.api::<ConfigMap>().list(&list).await?)?,
        ));
        seen.push((
            "StreamPipelines".into(),
            serde_json::to_string(&s.pipelines().list(&list).await?)?,
        ));
        seen.push((
            "Deployments".into(),
            serde_json::to_string(&s.ns.api::<Deployment>().list(&list).await?)?,
        ));
        seen.push((
            "Pods".into(),
            serde_json::to_string(&s.ns.api::<Pod>().list(&list).await?)?,
        ));
        let node_logs = s.world.var("MILLRACE_NODE_LOGS").map(PathBuf::from);
        let mut container_logs = 0;
        if let Some(dir) = &node_logs {
            for entry in std::fs::read_dir(dir)?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}_", s.ns.name)) {
                    container_logs += 1;
                    seen.push((
                        format!("container log {name}"),
                        std::fs::read_to_string(entry.path()).unwrap_or_default(),
                    ));
                }
            }
            // The world's own logs: the node agent (which starts the
            // containers with their env) and the apiserver.
            if let Some(world_logs) = dir
                .parent()
                .and_then(|d| d.parent())
                .map(|w| w.join("logs"))
            {
                for name in ["node-agent.log", "kube-apiserver.log"] {
                    if let Ok(text) = std::fs::read_to_string(world_logs.join(name)) {
                        seen.push((name.to_owned(), text));
                    }
                }
            }
        } else {
            // A cluster with kubelets: its container logs come through the
            // apiserver.
            for (what, text) in
                millrace_testsupport::kube_helpers::container_logs(&s.ns.api::<Pod>()).await?
            {
                container_logs += 1;
                seen.push((what, text));
            }
        }
        anyhow::ensure!(
            container_logs >= 2,
            "expected the ingest and sink container logs (node agent's files: {node_logs:?})"
        );
        Ok(seen)
    }

    /// Fails if any of `secrets` shows anywhere
    /// [`Scenario::everything_visible`] looks.
    pub async fn assert_secrets_unseen(
        &self,
        op: &Operator,
        secrets: &[&str],
    ) -> anyhow::Result<()> {
        let seen = self.everything_visible(op).await?;
        let mut leaks = Vec::new();
        for secret in secrets {
            assert!(!secret.is_empty(), "an empty secret would match anything");
            for (what, text) in &seen {
                if text.contains(secret) {
                    leaks.push(what.clone());
                }
            }
        }
        let bytes: usize = seen.iter().map(|(_, t)| t.len()).sum();
        println!(
            "searched {} sources ({} KiB) for {} secret values: {} found",
            seen.len(),
            bytes / 1024,
            secrets.len(),
            leaks.len()
        );
        anyhow::ensure!(leaks.is_empty(), "secret values leaked into: {leaks:?}");
        Ok(())
    }

    /// (reason, message) of the Events about the object `name`.
    pub async fn event_reasons(&self, name: &str) -> anyhow::Result<Vec<(String, String)>> {
        let events = self
            .ns
            .api::<k8s_openapi::api::core::v1::Event>()
            .list(&Default::default())
            .await?;
        Ok(events
            .items
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Deletes what the scenario left in Kafka and Cassandra, and the
    /// namespace.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self.world.kafka_config().create()?;
        let dlq = format!("{}.dlq", self.topic);
        let _ = admin
            .delete_topics(&[&self.topic, &dlq], &AdminOptions::new())
            .await;
        if let Ok(session) = self.world.cassandra_session().await {
            let _ = session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), &[])
                .await;
        }
        self.ns.cleanup().await
    }
}

/// The test world's SASL_PLAINTEXT Kafka listener and its user.
pub struct KafkaSasl {
    pub bootstrap: String,
    pub username: String,
    pub password: String,
    pub mechanism: String,
}

impl KafkaSasl {
    /// Points a pipeline's Kafka at this listener, with the credentials in
    /// the Secret `secret`.
    pub fn use_in(&self, sp: &mut Value, secret: &str) {
        sp["spec"]["kafka"]["bootstrapServers"] = json!(self.bootstrap);
        sp["spec"]["kafka"]["credentialsSecretRef"] = json!({
            "name": secret, "mechanism": self.mechanism, "securityProtocol": "SASL_PLAINTEXT",
        });
    }
}

/// A file the world wrote (certificates, keys) under `dir`.
pub fn world_file(dir: &std::path::Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

pub fn condition(sp: &StreamPipeline, type_: &str) -> Option<Condition> {
    sp.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicView {
    pub partitions: usize,
    pub replication_factor: usize,
    /// Configs set on the topic itself.
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnView {
    pub name: String,
    pub cql_type: String,
    pub kind: String,
}

/// `fetch` (a metadata request of the test's own client) again while the
/// broker does not answer in time, for up to a minute: on a loaded machine
/// one request through a NodePort can take longer than its 10 s, and that
/// says nothing about the pipeline a test checks.
fn fetch_metadata_patiently<T>(
    mut fetch: impl FnMut() -> rdkafka::error::KafkaResult<T>,
) -> rdkafka::error::KafkaResult<T> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match fetch() {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut))
                if Instant::now() < deadline =>
            {
                eprintln!("a metadata request timed out; asking again");
            }
            other => return other,
        }
    }
}

/// Each partition's (low, high) watermarks of `topic`.
pub fn watermarks(world: &World, topic: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = world
        .kafka_config()
        .set("group.id", unique_name("watermarks"))
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = fetch_metadata_patiently(|| consumer.fetch_metadata(Some(topic), timeout))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    (0..partitions as i32)
        .map(|p| Ok(consumer.fetch_watermarks(topic, p, timeout)?))
        .collect()
}

/// Records `topic` holds: its partitions' high watermarks less their low
/// ones (all it was ever written while nothing expired).
pub fn topic_records(world: &World, topic: &str) -> anyhow::Result<i64> {
    Ok(watermarks(world, topic)?
        .iter()
        .map(|(low, high)| high - low)
        .sum())
}

pub async fn describe_topic(world: &World, topic: &str) -> anyhow::Result<Option<TopicView>> {
    let admin: AdminClient<DefaultClientContext> = world
        .kafka_config()
        .set("allow.auto.create.topics", "false")
        .create()?;
    let admin = std::sync::Arc::new(admin);
    let (a, t) = (admin.clone(), topic.to_owned());
    let found = tokio::task::spawn_blocking(move || {
        let md = fetch_metadata_patiently(|| {
            a.inner().fetch_metadata(Some(&t), Duration::from_secs(10))
        })?;
        anyhow::Ok(md.topics().iter().find(|x| x.name() == t).and_then(|x| {
            (x.error().is_none() && !x.partitions().is_empty())
                .then(|| (x.partitions().len(), x.partitions()[0].replicas().len()))
        }))
    })
    .await??;
    let Some((partitions, replication_factor)) = found else {
        return Ok(None);
    };
    let mut config = BTreeMap::new();
    for r in admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await?
    {
        let r = r.map_err(|e| anyhow::anyhow!("describe configs: {e}"))?;
        for e in r.entries {
            if e.source == ConfigSource::DynamicTopic
                && let Some(v) = e.value
            {
                config.insert(e.name, v);
            }
        }
    }
    Ok(Some(TopicView {
        partitions,
        replication_factor,
        config,
    }))
}

/// Measures how long `f` took, for the report.
pub async fn timed<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let v = f.await?;
    Ok((v, start.elapsed()))
}

/// A NetworkPolicy's pod selector as a label selector (`k=v,k=v`), to
/// list the Pods it selects.
pub fn policy_selector(policy: &k8s_openapi::api::networking::v1::NetworkPolicy) -> String {
    policy
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .and_then(|s| s.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The Pods' names, sorted.
pub fn pod_names(pods: &[Pod]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}
