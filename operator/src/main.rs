// The watch caches hold thousands of objects, replaced one by one as their
// events arrive, on tokio's threads: with the system allocator its
// per-thread arenas kept the freed pages. At 300 pipelines heaptrack saw a
// 34 MiB peak heap and a 77 MiB peak RSS (heaptrack attached); with
// mimalloc, as the runner uses for the same reason, 62 MiB
// (bench/OPERATOR-SCALE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use millrace_api::lease::{self, Gate, LeaseLock, Timing};
use millrace_operator::context::{Config, Context};
use millrace_operator::controller;
use millrace_operator::desired::deployment::RunnerDefaults;
use millrace_operator::desired::network_policy::NetworkPolicyDefaults;
use millrace_operator::leader;
use millrace_operator::metrics::Metrics;
use millrace_operator::serve;
use tracing::{error, info};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// millrace operator: reconciles StreamPipelines into Kafka topics,
/// Cassandra tables and runner Deployments.
#[derive(Parser, Debug)]
#[command(name = "millrace-operator", version, about)]
struct Args {
    /// The runner image for pipelines that do not set spec.runner.image.
    #[arg(long, env = "MILLRACE_RUNNER_IMAGE", default_value = concat!("ghcr.io/millrace-io/millrace-runner:", env!("CARGO_PKG_VERSION")))]
    runner_image: String,

    /// An annotation for every runner Pod, as KEY=VALUE (repeatable, or
    /// comma-separated in the environment variable).
    #[arg(long = "runner-pod-annotation", env = "MILLRACE_RUNNER_POD_ANNOTATIONS", value_delimiter = ',', value_parser = key_value)]
    runner_pod_annotations: Vec<(String, String)>,

    /// Watch Secrets so a pipeline reacts at once when its credentials
    /// Secret appears or changes (needs list/watch on Secrets).
    #[arg(long, env = "MILLRACE_WATCH_SECRETS", default_value_t = false)]
    watch_secrets: bool,

    /// Make a NetworkPolicy for each pipeline's runner Pods (a pipeline
    /// can opt out with spec.runner.networkPolicy.enabled: false).
    #[arg(long, env = "MILLRACE_NETWORK_POLICIES", default_value_t = true, action = clap::ArgAction::Set)]
    network_policies: bool,

    /// The namespace Prometheus scrapes the runners from: their
    /// NetworkPolicies let it alone reach the metrics port. Unset: any
    /// namespace.
    #[arg(long, env = "MILLRACE_MONITORING_NAMESPACE")]
    monitoring_namespace: Option<String>,

    /// The apiserver's ports a pulling runner's NetworkPolicy lets it
    /// reach (for its Lease): the `kubernetes` Service's and its
    /// endpoints'.
    #[arg(
        long,
        env = "MILLRACE_APISERVER_PORTS",
        value_delimiter = ',',
        default_value = "443,6443"
    )]
    apiserver_ports: Vec<u16>,

    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, env = "MILLRACE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,

    /// Only one operator process reconciles at a time (a Lease decides).
    #[arg(long, env = "MILLRACE_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,

    /// The namespace of the leader Lease (default: the watched namespace,
    /// else POD_NAMESPACE, else "default").
    #[arg(long, env = "MILLRACE_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,

    /// Where the records of which pipeline owns each Kafka topic are kept
    /// (ConfigMaps). Every operator that shares a Kafka cluster must use the
    /// same one (default: the leader Lease's namespace).
    #[arg(long, env = "MILLRACE_CLAIMS_NAMESPACE")]
    claims_namespace: Option<String>,

    /// The name of the leader Lease.
    #[arg(long, env = "MILLRACE_LEASE_NAME", default_value = "millrace-operator")]
    lease_name: String,

    /// With --leader-election: how long another process must see the
    /// leader Lease unchanged before it takes it, in seconds.
    #[arg(long, env = "MILLRACE_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,

    /// With --leader-election: the leader stops reconciling when it has not
    /// renewed the Lease for this long, in seconds; shorter than the lease
    /// duration, the difference being the margin for clocks and latency.
    #[arg(long, env = "MILLRACE_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    renew_deadline_seconds: u64,

    /// With --leader-election: how often the leader renews and the others
    /// look at the Lease, in seconds.
    #[arg(long, env = "MILLRACE_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    retry_period_seconds: u64,

    /// Watch StreamPipelines in this namespace only (default: all).
    #[arg(long, env = "MILLRACE_NAMESPACE")]
    namespace: Option<String>,

    /// How often reconciled pipelines are compared again with Kafka and
    /// Cassandra, in seconds.
    #[arg(long, env = "MILLRACE_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,

    /// How often each pipeline's sink lag and flow figures are read again,
    /// in seconds. The autoscaler decides from them, so it sees a backlog
    /// no sooner; each refresh is a Kafka round trip per pipeline and, when
    /// the figures changed, a status write.
    #[arg(long, env = "MILLRACE_FLOW_REFRESH_SECONDS", default_value_t = 30)]
    flow_refresh_seconds: u64,

    /// Reconciles that may run at once (0: no limit). Each makes about a
    /// dozen apiserver requests and a few Kafka and Cassandra round trips;
    /// without a limit, hundreds of pipelines created together become
    /// hundreds of simultaneous apiserver connections, and the apiserver
    /// times out (504) instead of getting through them.
    #[arg(long, env = "MILLRACE_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,

    /// Log format.
    #[arg(long, env = "MILLRACE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let timing = Timing::new(
        Duration::from_secs(args.lease_duration_seconds),
        Duration::from_secs(args.renew_deadline_seconds),
        Duration::from_secs(args.retry_period_seconds),
    )
    .context("the leader election flags")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,rdkafka=warn,scylla=warn")
    });
    match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }

    let metrics = Arc::new(Metrics::default());
    let addr = serve::serve(args.metrics_listen, metrics.clone())
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    info!(%addr, "serving /metrics, /healthz, /readyz");

    let config = kube::Config::infer()
        .await
        .context("configuring the Kubernetes client")?;
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "operator".into()),
            std::process::id()
        )
    });
    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let claims_namespace = args
        .claims_namespace
        .clone()
        .unwrap_or_else(|| lease_namespace.clone());
    // The Lease is renewed on a client of its own: the reconciles' client
    // refuses writes while the Lease is not held, the renewal among them.
    let election = if args.leader_election {
        let lease_client =
            kube::Client::try_from(config.clone()).context("connecting to the Kubernetes API")?;
        Some(LeaseLock::new(
            kube::Api::namespaced(lease_client, &lease_namespace),
            &args.lease_name,
            &identity,
            timing,
        ))
    } else {
        None
    };
    let gate = election
        .as_ref()
        .map_or_else(Gate::always_open, LeaseLock::gate);
    let client =
        leader::gated_client(config, gate.clone()).context("connecting to the Kubernetes API")?;
    metrics.set_ready(true);

    // Stops the controller on SIGTERM/SIGINT.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };

    let ctx = Arc::new(Context::new(
        client,
        Config {
            runner: RunnerDefaults {
                image: args.runner_image,
                pod_annotations: args.runner_pod_annotations.into_iter().collect(),
                network_policy: NetworkPolicyDefaults {
                    enabled: args.network_policies,
                    monitoring_namespace: args.monitoring_namespace,
                    apiserver_ports: args.apiserver_ports,
                },
            },
            watch_secrets: args.watch_secrets,
            resync: Duration::from_secs(args.resync_seconds.max(1)),
            flow_refresh: Duration::from_secs(args.flow_refresh_seconds.max(1)),
            namespace: args.namespace,
            claims_namespace,
            concurrency: args.concurrency,
        },
        metrics.clone(),
        identity.clone(),
        gate,
    ));
    let Some(lock) = election else {
        metrics.set_leader(true);
        info!(namespace = ?ctx.config.namespace, image = %ctx.config.runner.image, concurrency = ctx.config.concurrency, "starting the StreamPipeline controller");
        controller::run(ctx, stopped()).await;
        info!("stopped");
        return Ok(());
    };

    // A leader that misses its renew deadline drops its controller (the
    // reconciles in flight with it; the gated client has refused their
    // writes from the deadline on) and waits as a standby with everything
    // observed afresh, rather than exiting: the process keeps serving its
    // health and metrics, and needs no restart to lead again.
    loop {
        info!(lease = %lock.name(), namespace = %lease_namespace, %identity, ?timing, "waiting to become the leader");
        tokio::select! {
            _ = lease::acquire(&lock) => {}
            _ = stopped() => break,
        }
        info!(%identity, "became the leader");
        metrics.set_leader(true);
        info!(namespace = ?ctx.config.namespace, image = %ctx.config.runner.image, concurrency = ctx.config.concurrency, "starting the StreamPipeline controller");
        tokio::select! {
            _ = controller::run(ctx.clone(), stopped()) => {
                metrics.set_leader(false);
                // Gives the Lease up, so a standby takes over at once.
                if let Err(e) = lock.release().await {
                    error!(error = %e, "releasing the leader Lease");
                }
                break;
            }
            lost = lease::hold(&lock) => {
                metrics.set_leader(false);
                error!(reason = %lost, "lost leadership: stopped the controller; no writes until the Lease is held again");
            }
        }
    }
    info!("stopped");
    Ok(())
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
