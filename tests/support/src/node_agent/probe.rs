//! httpGet and tcpSocket probes, as the kubelet runs them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs one probe against the Pod's address. `Ok(())` is success; the error
/// says what failed, for the Pod's events.
pub async fn check(probe: &Probe, container: &Container, pod_ip: &str) -> Result<(), String> {
    let timeout = Duration::from_secs(
        probe
            .timeout_seconds
            .unwrap_or(1)
            .max(1)
            .unsigned_abs()
            .into(),
    );
    let attempt = async {
        if let Some(h) = &probe.http_get {
            let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let port = resolve_port(&h.port, container)?;
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            http_get(&host, port, &path).await
        } else if let Some(t) = &probe.tcp_socket {
            let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
            let port = resolve_port(&t.port, container)?;
            TcpStream::connect((host.as_str(), port))
                .await
                .map(|_| ())
                .map_err(|e| format!("tcp {host}:{port}: {e}"))
        } else {
            Err("probe has no supported handler".into())
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {timeout:?}")))
}

fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("bad port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}")),
    }
}

async fn http_get(host: &str, port: u16, path: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("GET http://{host}:{port}{path}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: millrace-node-agent\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
    let status = parse_status(&head[..n]).ok_or("no HTTP status line in the reply")?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET http://{host}:{port}{path}: HTTP {status}"))
    }
}

fn parse_status(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"garbage"), None);
    }
}
