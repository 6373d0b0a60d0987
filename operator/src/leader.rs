//! Leader election: of several operator processes only the holder of the
//! leader Lease reconciles. The Lease itself is [`millrace_api::lease`]
//! (shared with the runner's pull Leases); this module gives the operator a
//! Kubernetes client that refuses every write while the process does not
//! hold it, so no write can slip out between a missed renew deadline and
//! the moment the controller is dropped (a process stopped or starved past
//! its deadline resumes with its reconciles and its renewal loop ready at
//! once, in no particular order).

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use millrace_api::lease::{Gate, NotLeader};
use tower::BoxError;
use tower::Layer;
use tower::filter::Filter;
use tower::layer::layer_fn;

/// Whether the request changes something (anything but a read or watch).
pub fn writes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A client on `config` whose writes pass only while `gate` is open; reads
/// and watches always do.
pub fn gated_client(config: kube::Config, gate: Gate) -> Result<kube::Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&gate_layer(gate))
        .build())
}

/// Fails a write at once, before it leaves the process, while `gate` is
/// closed.
fn gate_layer<S>(
    gate: Gate,
) -> impl Layer<S, Service = Filter<S, impl Fn(Request<Body>) -> Result<Request<Body>, BoxError> + Clone>>
{
    layer_fn(move |service| {
        let gate = gate.clone();
        Filter::new(service, move |request: Request<Body>| {
            if writes(request.method()) {
                gate.check().map_err(BoxError::from)?;
            }
            Ok::<_, BoxError>(request)
        })
    })
}

/// Whether `e` is a write the gated client refused (it never left the
/// process).
pub fn refused_write(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(source) if source.is::<NotLeader>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A client whose requests reach a stand-in for the apiserver that
    /// counts them and answers `{}`.
    fn stand_in(gate: Gate) -> (kube::Client, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        let apiserver = tower::service_fn(move |_: Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(http::Response::new(Body::from(b"{}".to_vec()))) }
        });
        let client = ClientBuilder::new(apiserver, "default")
            .with_layer(&gate_layer(gate))
            .build();
        (client, seen)
    }

    fn request(method: Method) -> Request<Vec<u8>> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/default/configmaps/x")
            .body(Vec::new())
            .expect("request")
    }

    #[tokio::test]
    async fn a_closed_gate_keeps_writes_in_the_process_and_lets_reads_out() {
        let (client, seen) = stand_in(Gate::closed());
        let refused = client
            .request_text(request(Method::PATCH))
            .await
            .expect_err("refused");
        assert!(refused_write(&refused), "{refused}");
        assert_eq!(seen.load(Ordering::SeqCst), 0, "the write went out");
        client
            .request_text(request(Method::GET))
            .await
            .expect("a read passes");
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        let (client, seen) = stand_in(Gate::always_open());
        client
            .request_text(request(Method::DELETE))
            .await
            .expect("an open gate lets writes out");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_reads_pass_a_closed_gate() {
        assert!(!writes(&Method::GET));
        assert!(!writes(&Method::HEAD));
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(writes(&m), "{m}");
        }
    }
}
