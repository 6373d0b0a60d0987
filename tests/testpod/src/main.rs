//! A tiny program for the test world's own tests: serves `/healthz` on
//! `$POD_IP:$PORT` and reports, on `/env/NAME`, one variable of its
//! environment and, on `/file?path=P`, the contents of a file it can read,
//! so tests can see what the node agent gave a Pod. `/connect?to=IP:PORT`
//! opens a TCP connection from the Pod (2 s at most) and says `connected`
//! or why not, so tests can see what a NetworkPolicy lets through.
//! `/exit/CODE` ends it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let ip = std::env::var("POD_IP").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = TcpListener::bind(format!("{ip}:{port}"))?;
    println!("millrace-testpod listening on {ip}:{port} as uid {}", uid());
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (code, body) = if path == "/healthz" {
            (200, "ok".to_string())
        } else if let Some(name) = path.strip_prefix("/env/") {
            match std::env::var(name) {
                Ok(v) => (200, v),
                Err(_) => (404, format!("{name} is not set")),
            }
        } else if let Some(p) = path.strip_prefix("/file?path=") {
            match std::fs::read_to_string(p) {
                Ok(v) => (200, v),
                Err(e) => (404, e.to_string()),
            }
        } else if let Some(to) = path.strip_prefix("/connect?to=") {
            (200, connect(to))
        } else if path == "/uid" {
            (200, uid())
        } else if let Some(code) = path.strip_prefix("/exit/") {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye");
            std::process::exit(code.parse().unwrap_or(1));
        } else {
            (404, "not found".to_string())
        };
        let reply = format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
    }
    Ok(())
}

/// A NetworkPolicy that drops a connection shows as a timeout; one with
/// no listener behind it as a refusal.
fn connect(to: &str) -> String {
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;
    match to.parse::<SocketAddr>() {
        Ok(addr) => match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => "connected".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timed out".to_string(),
            Err(e) => format!("error: {e}"),
        },
        Err(e) => format!("error: {to} is not IP:PORT: {e}"),
    }
}

fn uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default()
}
