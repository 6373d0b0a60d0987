//! The scheduled pull against a local HTTP server serving recorded
//! randomuser.me pages, with failures injected: the runner retries (honouring
//! Retry-After), never runs two pulls of a source at once, writes every good
//! record and dead-letters the bad one. With a cluster, one replica pulls
//! under the Lease and records each run on it.

mod runner;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use millrace_testsupport::{Deadline, poll_until};
use rdkafka::Message;
use rdkafka::message::Headers;
use runner::{Fixture, Runner, randomuser_table};
use serde_json::{Value, json};

fn page_text(n: u32) -> String {
    std::fs::read_to_string(
        millrace_testsupport::repo_root().join(format!("tests/fixtures/randomuser/page-{n}.json")),
    )
    .expect("fixture page")
}

/// One scripted answer of the fake API.
#[derive(Clone, Debug)]
enum Answer {
    Status(u16, Option<&'static str>),
    Page(u32),
}

/// A fake randomuser.me: answers its script in order, then empty pages.
/// Refuses requests without the expected headers, and remembers the
/// largest number of requests it ever served at once.
#[derive(Default)]
struct FakeApi {
    script: Mutex<Vec<Answer>>,
    served: Mutex<Vec<String>>,
    runners: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl FakeApi {
    async fn answer(self: Arc<Self>, headers: HeaderMap) -> Response {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Slow enough that overlapping runs would be seen.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let response = if header("x-api-key").as_deref() != Some("k3y")
            || header("authorization").as_deref() != Some("Bearer from-a-secret")
        {
            (StatusCode::UNAUTHORIZED, "missing credentials").into_response()
        } else {
            if let Some(r) = header("x-runner") {
                self.runners.lock().expect("lock").push(r);
            }
            let next = {
                let mut script = self.script.lock().expect("lock");
                (!script.is_empty()).then(|| script.remove(0))
            };
            self.served.lock().expect("lock").push(format!("{next:?}"));
            match next {
                Some(Answer::Status(code, retry_after)) => {
                    let mut r =
                        (StatusCode::from_u16(code).expect("status"), "try later").into_response();
                    if let Some(secs) = retry_after {
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, secs.parse().expect("header"));
                    }
                    r
                }
                Some(Answer::Page(n)) => {
                    ([(header::CONTENT_TYPE, "application/json")], page_text(n)).into_response()
                }
                None => (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"results": [], "info": {"results": 0}}"#.to_owned(),
                )
                    .into_response(),
            }
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    async fn serve(self: &Arc<Self>) -> anyhow::Result<SocketAddr> {
        let api = self.clone();
        let app = Router::new().route(
            "/api/",
            get(move |headers: HeaderMap| {
                let api = api.clone();
                async move { api.answer(headers).await }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }
}

fn pull_source(addr: SocketAddr, schedule: &str) -> Value {
    json!([{
        "name": "randomuser",
        "httpPull": {
            "url": format!("http://{addr}/api/?results=10"),
            "schedule": schedule,
            "recordsPath": "/results",
            "headers": {"X-Api-Key": "k3y"},
            "headersFromSecret": {"name": "randomuser-api"},
            "timeoutSeconds": 5,
            "maxRetries": 3,
        }
    }])
}

fn ids_of_pages(pages: &[u32]) -> HashSet<uuid::Uuid> {
    pages
        .iter()
        .flat_map(|n| {
            let doc: Value = serde_json::from_str(&page_text(*n)).expect("JSON");
            doc["results"]
                .as_array()
                .expect("results")
                .iter()
                .filter(|r| {
                    chrono::DateTime::parse_from_rfc3339(
                        r["registered"]["date"].as_str().unwrap_or(""),
                    )
                    .is_ok()
                })
                .map(|r| {
                    r["login"]["uuid"]
                        .as_str()
                        .expect("uuid")
                        .parse()
                        .expect("uuid")
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_retries_through_429_and_500_and_writes_every_record() -> anyhow::Result<()> {
    let api = Arc::new(FakeApi::default());
    *api.script.lock().expect("lock") = vec![
        Answer::Status(429, Some("1")),
        Answer::Page(1),
        Answer::Status(500, None),
        Answer::Status(503, Some("1")),
        Answer::Page(2),
        Answer::Status(500, None),
        Answer::Page(3),
    ];
    let addr = api.serve().await?;
    let fx = Fixture::new("pull", 3, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(pull_source(addr, "1s"));
    let path = fx.write_pipeline("pull.json", &pipeline)?;
    let mut env = fx.runner_env();
    // headersFromSecret, as the operator maps the Secret into the env.
    env.push((
        "MILLRACE_PULL_HEADER_RANDOMUSER_Authorization".into(),
        "Bearer from-a-secret".into(),
    ));
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    let mut sink = Runner::start("sink", &path, &env, &fx.dir.join("sink.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;

    // 30 records on three pages; page 3's fifth is poison.
    let expected = ids_of_pages(&[1, 2, 3]);
    assert_eq!(expected.len(), 29);
    fx.wait_for_rows(29, Deadline::secs(120)).await?;
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    assert_eq!(ids, expected);

    let dead = fx.consume(&fx.dlq, 1, Deadline::secs(60)).await?;
    let headers: Vec<(String, String)> = dead[0]
        .headers()
        .map(|h| {
            h.iter()
                .map(|x| {
                    (
                        x.key.to_owned(),
                        String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("millrace.stage"), Some("ingest"));
    assert_eq!(get("millrace.source.name"), Some("randomuser"));
    assert!(
        get("millrace.error").is_some_and(|e| e.contains("registered_date")),
        "{headers:?}"
    );
    let payload: Value = serde_json::from_slice(dead[0].payload().unwrap_or_default())?;
    assert_eq!(payload["registered"]["date"], "sometime in 2019");

    let served = api.served.lock().expect("lock").clone();
    assert!(served.len() >= 7, "the whole script was served: {served:?}");
    assert_eq!(
        api.max_in_flight.load(Ordering::SeqCst),
        1,
        "never two pulls at once"
    );
    assert!(
        ingest
            .metric("millrace_pull_runs_total{source=\"randomuser\",outcome=\"Succeeded\"}")
            .await?
            >= 3.0
    );
    assert!(
        ingest
            .metric("millrace_pull_last_success_timestamp_seconds{source=\"randomuser\"}")
            .await?
            > 1.6e9
    );
    assert!(
        !ingest.log_text().contains("from-a-secret"),
        "a header from a Secret was logged"
    );
    drop((ingest, sink));
    fx.cleanup().await
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_cluster_one_replica_pulls_under_the_lease_and_records_the_run() -> anyhow::Result<()>
{
    let api = Arc::new(FakeApi::default());
    let addr = api.serve().await?;
    let fx = Fixture::new("lease", 1, randomuser_table("users")).await?;
    let cluster = fx
        .in_cluster(
            "runner-lease",
            "lease.json",
            fx.pipeline(pull_source(addr, "1s")),
        )
        .await?;
    let (ns, path) = (&cluster.ns, &cluster.path);
    let mut runners = Vec::new();
    for pod in ["ingest-a", "ingest-b"] {
        let mut env = cluster.env(pod);
        env.extend([
            (
                "MILLRACE_PULL_HEADER_RANDOMUSER_Authorization".to_owned(),
                "Bearer from-a-secret".to_owned(),
            ),
            (
                "MILLRACE_PULL_HEADER_RANDOMUSER_X-Runner".to_owned(),
                pod.to_owned(),
            ),
        ]);
        let mut r = Runner::start("ingest", path, &env, &fx.dir.join(format!("{pod}.log")))?;
        r.wait_ready(Deadline::secs(60)).await?;
        runners.push(r);
    }
    poll_until("six pulls", Deadline::secs(60), || async {
        Ok((api.runners.lock().expect("lock").len() >= 6).then_some(()))
    })
    .await?;
    let pullers: HashSet<String> = api.runners.lock().expect("lock").iter().cloned().collect();
    assert_eq!(pullers.len(), 1, "only the Lease holder pulls: {pullers:?}");
    let holder = pullers.into_iter().next().expect("one");

    let leases: Api<Lease> = ns.api();
    let lease_name = format!("{}-pull-randomuser", fx.name);
    let last: Value = poll_until("the last run on the Lease", Deadline::secs(30), || async {
        let lease = leases.get(&lease_name).await?;
        let spec = lease.spec.unwrap_or_default();
        anyhow::ensure!(
            spec.holder_identity.as_deref() == Some(holder.as_str()),
            "holder {:?}",
            spec.holder_identity
        );
        Ok(lease
            .metadata
            .annotations
            .unwrap_or_default()
            .get("millrace.io/last-pull")
            .and_then(|a| serde_json::from_str::<Value>(a).ok()))
    })
    .await?;
    assert_eq!(last["outcome"], "Succeeded", "{last}");
    assert_eq!(
        last["records"], 0,
        "the script is empty, so pages are empty: {last}"
    );
    assert!(
        last["time"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{last}"
    );
    drop(runners);
    cluster.ns.cleanup().await?;
    fx.cleanup().await
}

/// Given a pipeline whose topic does not exist yet (the world's Kafka does
/// not create topics on demand): the run's first attempt is not
/// acknowledged, nothing is counted as produced and the run keeps sending;
/// once the topic is created, every fetched record is a row and exactly the
/// fetched records are counted, with no run given up.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_whose_produce_fails_keeps_sending_until_every_record_is_in_the_table()
-> anyhow::Result<()> {
    let api = Arc::new(FakeApi::default());
    *api.script.lock().expect("lock") = vec![Answer::Page(1), Answer::Page(2)];
    let addr = api.serve().await?;
    let fx = Fixture::new("pull-ack", 3, randomuser_table("users")).await?;
    fx.delete_topic().await?;
    let pipeline = fx.pipeline(pull_source(addr, "1s"));
    let path = fx.write_pipeline("pull.json", &pipeline)?;
    let mut env = fx.runner_env();
    env.push((
        "MILLRACE_PULL_HEADER_RANDOMUSER_Authorization".into(),
        "Bearer from-a-secret".into(),
    ));
    // Not ready without its topic: its metrics answer all the same.
    let ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    let retries = "millrace_produce_retries_total{source=\"randomuser\"}";
    let started = std::time::Instant::now();
    poll_until(
        "the first attempt to fail and a second to start",
        Deadline::secs(90),
        || async { Ok((ingest.metric(retries).await.unwrap_or(0.0) >= 10.0).then_some(())) },
    )
    .await?;
    eprintln!("first attempt failed after {:?}", started.elapsed());
    let ingested = "millrace_records_ingested_total{source=\"randomuser\"}";
    assert_eq!(ingest.metric(ingested).await?, 0.0, "nothing counted yet");

    fx.create_topic(3).await?;
    let mut sink = Runner::start("sink", &path, &env, &fx.dir.join("sink.log"))?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let expected = ids_of_pages(&[1, 2]);
    assert_eq!(expected.len(), 20);
    fx.wait_for_rows(20, Deadline::secs(120)).await?;
    eprintln!("every record a row after {:?}", started.elapsed());
    let ids: HashSet<_> = fx.ids().await?.into_iter().collect();
    assert_eq!(ids, expected);
    assert_eq!(
        fx.topic_size(&fx.topic)?,
        20,
        "each record once in the topic"
    );
    poll_until("both pages counted", Deadline::secs(30), || async {
        Ok((ingest.metric(ingested).await? == 20.0).then_some(()))
    })
    .await?;
    assert_eq!(
        ingest
            .metric("millrace_pull_runs_total{source=\"randomuser\",outcome=\"Failed\"}")
            .await?,
        0.0,
        "no run gave up"
    );
    assert!(
        ingest.log_text().contains("sending them again"),
        "the retry is logged"
    );
    drop((ingest, sink));
    fx.cleanup().await
}
