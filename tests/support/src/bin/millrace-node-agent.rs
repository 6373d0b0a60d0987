//! The test world's node agent: runs the Pods bound to one Node as local
//! processes. See `millrace_testsupport::node_agent`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use millrace_testsupport::node_agent::{self, AgentConfig, ImageMap};

#[derive(Parser, Debug)]
#[command(
    name = "millrace-node-agent",
    version,
    about = "Runs the Pods bound to a Node as local processes"
)]
struct Args {
    /// Kubeconfig with the node's credentials.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The Node to register and serve.
    #[arg(long, env = "MILLRACE_NODE_NAME", default_value = "millrace-node")]
    node_name: String,
    /// Where Pods' files, pids and container logs are kept.
    #[arg(long, env = "MILLRACE_NODE_STATE")]
    state_dir: PathBuf,
    /// IMAGE=BINARY: containers whose image's last path segment is IMAGE run
    /// BINARY. Repeatable, or comma-separated in the env var.
    #[arg(long = "image", env = "MILLRACE_NODE_IMAGES", value_delimiter = ',')]
    images: Vec<String>,
    /// The apiserver address Pods are given as KUBERNETES_SERVICE_HOST/PORT.
    #[arg(long, default_value = "127.0.0.1")]
    apiserver_host: String,
    #[arg(long, env = "MILLRACE_APISERVER_PORT", default_value_t = 16443)]
    apiserver_port: u16,
    /// N in the Pods' loopback addresses 127.N.x.y; a second test world on
    /// the same machine takes another N so the two never share an address.
    #[arg(long, env = "MILLRACE_POD_IP_OCTET", default_value_t = node_agent::DEFAULT_POD_IP_OCTET,
          value_parser = clap::value_parser!(u8).range(1..=254))]
    pod_ip_octet: u8,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let images =
        ImageMap::parse(args.images.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
    let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let cfg = AgentConfig {
        node_name: args.node_name,
        images,
        state_dir: args.state_dir,
        apiserver_host: args.apiserver_host,
        apiserver_port: args.apiserver_port,
        pod_ip_octet: args.pod_ip_octet,
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    node_agent::run(client, cfg, shutdown).await
}
