//! A TCP forwarder a test can close and open again, to cut one client off
//! from a shared service without stopping the service for the tests that run
//! beside it.
//!
//! Closed, the gate stops listening (new connections are refused, as with a
//! stopped server) and cuts the connections it carries. Open again, it listens
//! on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpGate {
    listen: SocketAddr,
    target: String,
    state: Arc<Mutex<Option<Open>>>,
}

struct Open {
    acceptor: JoinHandle<()>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Open {
    fn cut(self) {
        self.acceptor.abort();
        for link in self.links.lock().expect("links lock").drain(..) {
            link.abort();
        }
    }
}

impl TcpGate {
    /// Opens a gate on a free local port forwarding to `target` (`host:port`).
    pub async fn open_to(target: impl Into<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let gate = Self {
            listen: listener.local_addr()?,
            target: target.into(),
            state: Arc::new(Mutex::new(None)),
        };
        gate.serve(listener);
        Ok(gate)
    }

    /// Where clients connect instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Refuses new connections and cuts the open ones.
    pub fn close(&self) {
        if let Some(open) = self.state.lock().expect("gate lock").take() {
            open.cut();
        }
    }

    /// Listens again on the same port.
    pub async fn reopen(&self) -> std::io::Result<()> {
        if self.state.lock().expect("gate lock").is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.listen).await?;
        self.serve(listener);
        Ok(())
    }

    fn serve(&self, listener: TcpListener) {
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let target = self.target.clone();
        let acceptor = {
            let links = links.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let target = target.clone();
                    let link = tokio::spawn(async move {
                        // A target that refuses is passed on as a closed
                        // connection, which is what the client would see.
                        if let Ok(mut upstream) = TcpStream::connect(&target).await {
                            let _ = copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                    let mut links = links.lock().expect("links lock");
                    links.retain(|l| !l.is_finished());
                    links.push(link);
                }
            })
        };
        *self.state.lock().expect("gate lock") = Some(Open { acceptor, links });
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_refuses_when_closed_and_forwards_again() {
        let gate = TcpGate::open_to(echo_server().await.to_string())
            .await
            .unwrap();
        assert_eq!(round_trip(gate.addr()).await.unwrap(), b"ping");

        let mut held = TcpStream::connect(gate.addr()).await.unwrap();
        held.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).await.unwrap();

        gate.close();
        assert!(
            round_trip(gate.addr()).await.is_err(),
            "closed gate let a connection through"
        );
        let mut rest = Vec::new();
        let cut = held.read_to_end(&mut rest).await;
        assert!(
            matches!(cut, Ok(0)) || cut.is_err(),
            "a connection open through the gate was not cut"
        );

        gate.reopen().await.unwrap();
        assert_eq!(round_trip(gate.addr()).await.unwrap(), b"ping");
    }
}
