//! A small HTTP/1 server for endpoints any client that can reach a Pod may
//! call (`/metrics`, health, the runner's push endpoint), so what a client
//! can hold is bounded: a connection must send its request headers within
//! [`ServeLimits::header_timeout`] (or it is closed), headers and the read
//! buffer are at most [`MAX_HEADER_BUFFER`] bytes, and at most
//! [`ServeLimits::max_connections`] connections are served at once; beyond
//! that a new connection is answered 503 with `Retry-After` and closed,
//! without reading its request.
//!
//! With [`serve_tls`], each connection is a TLS connection first: the
//! handshake must end within the header timeout too, it uses the
//! configuration current when the connection was accepted (so a reloaded
//! certificate applies to new connections), and each request carries a
//! [`TlsPeer`] extension with the client's certificates, if it presented
//! any.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
pub use hyper::StatusCode;
use hyper::body::{Body, Bytes, Incoming};
use hyper::service::Service;
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tracing::{debug, info, warn};

/// The largest request head (request line and headers) and read buffer a
/// connection may use; a larger head is answered 431.
pub const MAX_HEADER_BUFFER: usize = 64 * 1024;

/// How long a refused connection may take to receive its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's bounds against slow or numerous clients.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// A request's line and headers must arrive within this time of the
    /// connection opening (or of the previous response, on a kept-alive
    /// connection); otherwise the connection is closed.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// The 503 a connection over the limit gets.
    pub refusal: Refusal,
}

/// The body of the 503 a connection over the limit gets.
#[derive(Clone, Copy, Debug)]
pub struct Refusal {
    pub content_type: &'static str,
    pub body: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {listen}: {source}")]
    Bind {
        listen: String,
        source: std::io::Error,
    },
    #[error("reading the bound address: {0}")]
    LocalAddr(std::io::Error),
}

/// A whole response with a text body.
pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// A [`Service`] from a function of the request that cannot fail.
pub fn service_fn<F, B>(
    f: F,
) -> impl Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send + 'static>
+ Clone
+ Send
+ 'static
where
    F: Fn(Request<Incoming>) -> Response<B> + Clone + Send + 'static,
    B: Body + Send + 'static,
{
    hyper::service::service_fn(move |request| {
        let response = f(request);
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// The TLS configuration a new connection is served with: called once per
/// accepted connection, so it can change while the server runs.
pub type CurrentTls = Arc<dyn Fn() -> Arc<ServerConfig> + Send + Sync>;

/// In the extensions of each request that came over TLS: the client's
/// certificate chain (its own first), as the handshake verified it; empty
/// when the client presented none.
#[derive(Clone, Debug, Default)]
pub struct TlsPeer {
    pub certificates: Arc<Vec<CertificateDer<'static>>>,
}

/// Puts a connection's [`TlsPeer`] into each of its requests.
#[derive(Clone)]
struct WithPeer<S> {
    inner: S,
    peer: TlsPeer,
}

impl<S> Service<Request<Incoming>> for WithPeer<S>
where
    S: Service<Request<Incoming>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        self.inner.call(request)
    }
}

/// Binds `listen` and serves `service` until `shutdown` resolves; then
/// stops accepting and lets open requests finish. Returns the bound address
/// (useful with port 0) and the server's task.
pub async fn serve<S, B>(
    listen: &str,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), ServeError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_tls(listen, service, shutdown, limits, None).await
}

/// [`serve`], over TLS with the configuration `tls` gives when it is set.
pub async fn serve_tls<S, B>(
    listen: &str,
    service: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
    tls: Option<CurrentTls>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>), ServeError>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind {
            listen: listen.to_owned(),
            source,
        })?;
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    info!(%addr, tls = tls.is_some(), "listening");
    let task =
        tokio::spawn(async move {
            let mut shutdown = std::pin::pin!(shutdown);
            let slots = Arc::new(Semaphore::new(limits.max_connections));
            let graceful = GracefulShutdown::new();
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_HEADER_BUFFER);
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut shutdown => break,
                };
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        warn!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!(%peer, "too many connections: refusing");
                    tokio::spawn(refuse(stream, limits.refusal));
                    continue;
                };
                let Some(tls) = &tls else {
                    let connection = graceful
                        .watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            debug!(%peer, error = %e, "connection ended");
                        }
                        drop(slot);
                    });
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(tls());
                let (builder, service, watcher) =
                    (builder.clone(), service.clone(), graceful.watcher());
                tokio::spawn(async move {
                    // A handshake is bounded like a request's headers: a client
                    // that opens a connection and sends nothing holds a slot
                    // only this long.
                    let stream =
                        match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let certificates = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(<[_]>::to_vec)
                        .unwrap_or_default();
                    let service = WithPeer {
                        inner: service,
                        peer: TlsPeer {
                            certificates: Arc::new(certificates),
                        },
                    };
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = connection.await {
                        debug!(%peer, error = %e, "connection ended");
                    }
                    drop(slot);
                });
            }
            drop(listener);
            graceful.shutdown().await;
            Ok(())
        });
    Ok((addr, task))
}

/// Answers a connection over the limit without reading its request.
async fn refuse(mut stream: tokio::net::TcpStream, refusal: Refusal) {
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
        refusal.content_type,
        refusal.body.len(),
        refusal.body
    );
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
