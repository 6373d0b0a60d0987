//! A minimal HTTP/1.1 client for POSTing to the runner's push endpoint: one
//! keep-alive connection, `Content-Length` bodies, nothing else.
//!
//! Written by hand on a tokio `TcpStream` so the load generator costs as
//! little CPU as possible on the same 2-core machine as the runner it
//! measures, and adds no dependency.

use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An `http://host:port/path` URL, split.
#[derive(Clone, Debug)]
pub struct Url {
    pub authority: String,
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .context("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// One keep-alive connection.
pub struct Client {
    url: Url,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Client {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            stream: None,
            buf: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body`; returns the status code. Reconnects once if the server
    /// closed the kept-alive connection. After an error the connection is
    /// dropped, so the caller's next `post` starts on a fresh one (a server
    /// that refuses a request early closes the connection mid-body).
    pub async fn post(&mut self, content_type: &str, body: &[u8]) -> anyhow::Result<u16> {
        for attempt in 0..2 {
            match self.try_post(content_type, body).await {
                Ok(status) => return Ok(status),
                Err(e) => {
                    self.stream = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        bail!("unreachable")
    }

    async fn try_post(&mut self, content_type: &str, body: &[u8]) -> anyhow::Result<u16> {
        if self.stream.is_none() {
            let s = tokio::time::timeout(
                Duration::from_secs(5),
                TcpStream::connect(&self.url.authority),
            )
            .await
            .context("connect timed out")??;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no connection");
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            self.url.path,
            self.url.authority,
            content_type,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        // The response: headers up to the blank line, then Content-Length
        // bytes of body (the runner always sends one).
        self.buf.clear();
        let header_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed before the response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).context("response head")?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status code")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut have = self.buf.len() - header_end;
        while have < length {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed in the response body");
            }
            have += n;
        }
        if head.to_ascii_lowercase().contains("connection: close") {
            self.stream = None;
        }
        Ok(status)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
