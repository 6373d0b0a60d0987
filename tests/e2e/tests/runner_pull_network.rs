//! What a pull sends where, and what it refuses, against real local servers
//! and the real Kafka and Cassandra:
//!
//! - credential headers go to the configured URL's origin only: a redirect
//!   from 127.0.0.1 to a server on 127.0.0.2 is followed without them, and
//!   the records still arrive;
//! - a response above `maxResponseBytes`, with and without a
//!   `Content-Length`, fails the run with the reason (on the pull Lease, in
//!   the metrics and the log) and none of its records is produced;
//! - a link-local address is refused without a connection unless
//!   `allowedAddresses.linkLocal` is set, and a loopback server is not even
//!   connected to when `allowedAddresses.loopback` is false.

mod runner;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, Runner, randomuser_table};
use serde_json::{Value, json};

const SECRET: &str = "k3y-from-a-secret";

fn page_one() -> String {
    std::fs::read_to_string(
        millrace_testsupport::repo_root().join("tests/fixtures/randomuser/page-1.json"),
    )
    .expect("fixture page")
}

/// Headers a server was sent: (X-Api-Key, Authorization, X-Trace).
type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>, Option<String>)>>>;

fn record(seen: &Seen, headers: &HeaderMap) {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    seen.lock()
        .expect("lock")
        .push((get("x-api-key"), get("authorization"), get("x-trace")));
}

async fn serve(ip: &str, app: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Given an API on 127.0.0.1 that redirects to its records on 127.0.0.2:
/// the first is sent the Secret's `X-Api-Key` and the spec's
/// `Authorization`, the second neither (but the plain `X-Trace`), and every
/// record arrives.
#[tokio::test(flavor = "multi_thread")]
async fn credential_headers_do_not_follow_a_redirect_to_another_origin() -> anyhow::Result<()> {
    let (home_seen, other_seen) = (Seen::default(), Seen::default());
    let seen = other_seen.clone();
    let other = serve(
        "127.0.0.2",
        Router::new().route(
            "/records",
            get(move |headers: HeaderMap| async move {
                record(&seen, &headers);
                ([(header::CONTENT_TYPE, "application/json")], page_one())
            }),
        ),
    )
    .await?;
    let seen = home_seen.clone();
    let home = serve(
        "127.0.0.1",
        Router::new().route(
            "/api/",
            get(move |headers: HeaderMap| async move {
                record(&seen, &headers);
                Redirect::temporary(&format!("http://{other}/records"))
            }),
        ),
    )
    .await?;

    let fx = Fixture::new("pull-origin", 1, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([{
        "name": "api",
        "httpPull": {
            "url": format!("http://{home}/api/"),
            "schedule": "1s",
            "recordsPath": "/results",
            "headers": {"Authorization": "Bearer in-the-spec", "X-Trace": "plain"},
            "headersFromSecret": {"name": "api-credentials"},
            "timeoutSeconds": 5,
            "maxRetries": 0,
        }
    }]));
    let path = fx.write_pipeline("origin.json", &pipeline)?;
    let mut env = fx.runner_env();
    env.push(("MILLRACE_PULL_HEADER_API_X-Api-Key".into(), SECRET.into()));
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    let mut sink = Runner::start("sink", &path, &env, &fx.dir.join("sink.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;

    fx.wait_for_rows(10, Deadline::secs(120)).await?;
    let home_seen = home_seen.lock().expect("lock").clone();
    let other_seen = other_seen.lock().expect("lock").clone();
    eprintln!(
        "{} requests to 127.0.0.1, {} to 127.0.0.2",
        home_seen.len(),
        other_seen.len()
    );
    assert!(!home_seen.is_empty() && !other_seen.is_empty());
    for (key, auth, trace) in &home_seen {
        assert_eq!(
            key.as_deref(),
            Some(SECRET),
            "the origin gets the Secret's header"
        );
        assert_eq!(auth.as_deref(), Some("Bearer in-the-spec"));
        assert_eq!(trace.as_deref(), Some("plain"));
    }
    for (key, auth, trace) in &other_seen {
        assert_eq!(key, &None, "the Secret's header went to another origin");
        assert_eq!(auth, &None, "Authorization went to another origin");
        assert_eq!(
            trace.as_deref(),
            Some("plain"),
            "plain headers go everywhere"
        );
    }
    assert!(
        ingest
            .metric("millrace_pull_runs_total{source=\"api\",outcome=\"Succeeded\"}")
            .await?
            >= 1.0
    );
    assert!(
        !ingest.log_text().contains(SECRET),
        "the Secret's header was logged"
    );
    drop((ingest, sink));
    fx.cleanup().await
}

/// Given two sources whose API answers 13,946 bytes of records, one with a
/// `Content-Length` and one chunked without it, and `maxResponseBytes:
/// 4096`: every run fails, saying so on the pull Lease, in the metrics and
/// in the log, and the topic stays empty.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_response_fails_the_run_and_produces_nothing() -> anyhow::Result<()> {
    let body = page_one();
    let size = body.len();
    let (sized, chunked) = (body.clone(), body);
    let app = Router::new()
        .route("/sized", get(move || async move { sized.clone() }))
        .route(
            "/chunked",
            get(move || {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = chunked
                    .as_bytes()
                    .chunks(1000)
                    .map(|c| Ok(c.to_vec()))
                    .collect();
                async move {
                    axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
                }
            }),
        );
    let addr = serve("127.0.0.1", app).await?;

    let fx = Fixture::new("pull-size", 1, randomuser_table("users")).await?;
    let source = |name: &str, path: &str| {
        json!({
            "name": name,
            "httpPull": {
                "url": format!("http://{addr}/{path}?token=not-shown"),
                "schedule": "1s",
                "recordsPath": "/results",
                "maxResponseBytes": 4096,
                "maxRetries": 0,
            }
        })
    };
    let cluster = fx
        .in_cluster(
            "runner-pull-size",
            "size.json",
            fx.pipeline(json!([
                source("sized", "sized"),
                source("chunked", "chunked")
            ])),
        )
        .await?;
    let mut ingest = Runner::start(
        "ingest",
        &cluster.path,
        &cluster.env("ingest-0"),
        &fx.dir.join("ingest.log"),
    )?;
    ingest.wait_ready(Deadline::secs(60)).await?;

    let leases: Api<Lease> = cluster.ns.api();
    for (source, seen) in [
        ("sized", format!("its Content-Length is {size} bytes")),
        ("chunked", "stopped reading at".to_owned()),
    ] {
        let lease = format!("{}-pull-{source}", fx.name);
        let last: Value = poll_until(
            &format!("a failed run of {source} on its Lease"),
            Deadline::secs(60),
            || async {
                let Ok(lease) = leases.get(&lease).await else {
                    return Ok(None);
                };
                Ok(lease
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get("millrace.io/last-pull")
                    .and_then(|a| serde_json::from_str::<Value>(a).ok()))
            },
        )
        .await?;
        let message = last["message"].as_str().unwrap_or_default();
        eprintln!("{source}: {message}");
        assert_eq!(last["outcome"], "Failed", "{last}");
        assert_eq!(last["records"], 0, "{last}");
        let expected = format!(
            "the response from http://{addr}/{source}?... is larger than maxResponseBytes (4096 bytes): {seen}"
        );
        assert!(message.contains(&expected), "{message}");
        assert!(!message.contains("not-shown"), "the query is left out");
        assert!(
            ingest
                .metric(&format!(
                    "millrace_pull_runs_total{{source=\"{source}\",outcome=\"Failed\"}}"
                ))
                .await?
                >= 1.0
        );
        assert!(ingest.log_text().contains(&expected), "the log says why");
    }
    assert_eq!(
        ingest
            .metric("millrace_records_ingested_total{source=\"sized\"}")
            .await?
            + ingest
                .metric("millrace_records_ingested_total{source=\"chunked\"}")
                .await?,
        0.0
    );
    assert_eq!(fx.topic_size(&fx.topic)?, 0, "nothing of it was produced");
    assert_eq!(fx.topic_size(&fx.dlq)?, 0, "nor dead-lettered");
    drop(ingest);
    cluster.ns.cleanup().await?;
    fx.cleanup().await
}

/// Given a source pulling 169.254.169.254 with the defaults, one allowed
/// link-local addresses, and one pulling a local listener with loopback
/// refused: the first fails without connecting and says why, the second
/// makes the request, the third never opens a connection.
#[tokio::test(flavor = "multi_thread")]
async fn link_local_is_refused_unless_allowed_and_refusals_never_connect() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(connection);
        }
    });

    let fx = Fixture::new("pull-address", 1, randomuser_table("users")).await?;
    let metadata = "http://169.254.169.254/latest/meta-data/";
    let pipeline = fx.pipeline(json!([
        {"name": "metadata", "httpPull": {
            "url": metadata, "schedule": "2s", "timeoutSeconds": 1, "maxRetries": 0}},
        {"name": "allowed", "httpPull": {
            "url": metadata, "schedule": "2s", "timeoutSeconds": 1, "maxRetries": 0,
            "allowedAddresses": {"linkLocal": true}}},
        {"name": "closed", "httpPull": {
            "url": format!("http://{local}/"), "schedule": "1s", "maxRetries": 0,
            "allowedAddresses": {"loopback": false}}},
    ]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    ingest.wait_ready(Deadline::secs(60)).await?;

    for source in ["metadata", "allowed", "closed"] {
        let failed = format!("millrace_pull_runs_total{{source=\"{source}\",outcome=\"Failed\"}}");
        poll_until(
            &format!("a failed run of {source}"),
            Deadline::secs(60),
            || async { Ok((ingest.metric(&failed).await? >= 2.0).then_some(())) },
        )
        .await?;
    }
    let log = ingest.log_text();
    let refused = format!(
        "not connecting to {metadata}: 169.254.169.254 is a link-local address (cloud metadata endpoints live there), \
         which this source may not connect to (allowedAddresses.linkLocal: true would allow it)"
    );
    assert!(log.contains(&refused), "{log}");
    // Allowed, the request is made: what comes back depends on the network
    // (a connect error or a timeout where nothing listens, an answer where
    // something does), but it is not the refusal.
    let attempts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pull failed") && l.contains("source=allowed"))
        .collect();
    assert!(!attempts.is_empty(), "{log}");
    for attempt in &attempts {
        assert!(!attempt.contains("not connecting to"), "{attempt}");
    }
    eprintln!("with linkLocal: {}", attempts[0]);
    let closed = format!(
        "not connecting to http://{local}/: 127.0.0.1 is a loopback address, \
         which this source may not connect to (allowedAddresses.loopback: true would allow it)"
    );
    assert!(log.contains(&closed), "{log}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused address was connected to"
    );
    drop(ingest);
    fx.cleanup().await
}
