//! The tools tests drive as users would: helm against the world's
//! apiserver, podman with the flags our machines need, and a bare HTTP GET
//! for a Pod's metrics and health endpoints.

use std::process::Command;

use anyhow::Context;

use crate::node_agent::process::podman_global;
use crate::world::{World, repo_root};

/// Runs `helm ARGS` against the world's cluster from the repository root (so
/// chart paths such as `charts/millrace` resolve) and returns its combined
/// output; a failure carries that output, which is where helm explains itself.
pub fn helm(world: &World, args: &[&str]) -> anyhow::Result<String> {
    let kubeconfig = world.kubeconfig.clone().context("KUBECONFIG")?;
    let out = Command::new(world.tool("helm"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(repo_root())
        .output()
        .context("running helm")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "helm {args:?}: {text}");
    Ok(text)
}

/// `podman` with the global flags the node agent uses, so tests see the same
/// container store.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(podman_global());
    cmd
}

/// One line per running container, formatted by a Go template such as
/// `{{.Names}} {{.Image}}`.
pub fn podman_ps(format: &str) -> anyhow::Result<Vec<String>> {
    let out = podman()
        .args(["ps", "--format", format])
        .output()
        .context("running podman ps")?;
    anyhow::ensure!(
        out.status.success(),
        "podman ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// How long [`http_get`] waits for a whole answer.
const HTTP_GET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET path` on `addr` (host:port) over plain HTTP/1.1; the body of a 200,
/// an error with the status line otherwise. Enough for metrics and health
/// endpoints without pulling an HTTP client into every test.
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An address whose Pod is gone drops the SYN on a real network, and the
    // kernel's own connect timeout (about two minutes) would use up the
    // caller's whole polling deadline on one attempt.
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(HTTP_GET_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET http://{addr}{path}: no answer in {HTTP_GET_TIMEOUT:?}"))??;
    let text = String::from_utf8(buf)?;
    let (head, body) = text.split_once("\r\n\r\n").context("HTTP reply")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    Ok(body.to_string())
}
