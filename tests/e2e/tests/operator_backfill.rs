//! A backfill asked for with an annotation (`backfill.millrace.io/SOURCE`)
//! rather than in the spec, through the operator: the runner it makes
//! pulls the past range window by window, reports the progress in the
//! pipeline's status, and a bad annotation is a condition that names it.

mod operator_common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration as Span, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use millrace_testsupport::{Deadline, poll_until, randomuser_page};
use operator_common::{Operator, Scenario, condition};
use reqwest::Url;
use serde_json::{Value, json};

/// The past hour the annotation asks for, in three 20-minute windows.
const FROM: &str = "2026-01-01T00:00:00Z";
const TO: &str = "2026-01-01T01:00:00Z";

/// An API that serves its users by time: `?since=&until=` (RFC 3339)
/// answers those stamped in `[since, until)`, and remembers each window
/// asked for.
#[derive(Default)]
struct TimeApi {
    users: Vec<(DateTime<Utc>, Value)>,
    asked: Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>,
}

fn time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("{text:?}"))?
        .with_timezone(&Utc))
}

async fn users(State(api): State<Arc<TimeApi>>, uri: Uri) -> Response {
    let query: HashMap<String, String> = Url::parse(&format!("http://api{uri}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    let bound = |name: &str| query.get(name).and_then(|t| time(t).ok());
    let (Some(since), Some(until)) = (bound("since"), bound("until")) else {
        return (StatusCode::BAD_REQUEST, "since and until").into_response();
    };
    api.asked.lock().expect("lock").push((since, until));
    let results: Vec<&Value> = api
        .users
        .iter()
        .filter(|(at, _)| since <= *at && *at < until)
        .map(|(_, u)| u)
        .collect();
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "results": results }).to_string(),
    )
        .into_response()
}

/// Serves the API where the pipeline's Pods can call it.
async fn serve(host: &str, api: Arc<TimeApi>) -> anyhow::Result<SocketAddr> {
    let app = Router::new().route("/users", get(users)).with_state(api);
    let listener = tokio::net::TcpListener::bind((host, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The ingest Deployment's Pod template digest: what its Pods run.
async fn ingest_hash(s: &Scenario, name: &str) -> anyhow::Result<Option<String>> {
    let d =
        s.ns.api::<Deployment>()
            .get(&format!("{name}-ingest"))
            .await?;
    Ok(d.spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get("millrace.io/config-hash").cloned()))
}

#[tokio::test]
async fn an_annotated_backfill_pulls_its_range_and_a_bad_one_is_named() -> anyhow::Result<()> {
    let s = Scenario::new("op-backfill").await?;
    // Twelve users, one every ten minutes from FROM: six inside the range
    // asked for, six after it.
    let start = time(FROM)?;
    let api = Arc::new(TimeApi {
        users: randomuser_page(1)
            .into_iter()
            .take(12)
            .enumerate()
            .map(|(i, mut user)| {
                user["login"]["uuid"] = json!(uuid::Uuid::new_v4().to_string());
                (start + Span::minutes(10 * i as i64), user)
            })
            .collect(),
        asked: Mutex::default(),
    });
    let addr = serve(s.world.host_from_pods(), api.clone()).await?;
    let op = Operator::start(&s.world, &s.ns.name, &["--flow-refresh-seconds", "2"]).await?;

    let name = "backfilled";
    let mut sp = s.seed_pipeline(name)?;
    // Live windows start now: the API has nothing there.
    sp["spec"]["sources"] = json!([{
        "name": "api",
        "httpPull": {
            "url": format!("http://{addr}/users?since={{{{window.start}}}}&until={{{{window.end}}}}"),
            "schedule": "2s",
            "recordsPath": "/results",
            "timeoutSeconds": 5,
            "maxRetries": 1,
            "window": {"initialStart": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)},
        }
    }]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    let table = "created_users";
    assert_eq!(s.row_count(table).await?, 0);

    // Ask for the past hour.
    let key = "backfill.millrace.io/api";
    let asked = json!({"from": FROM, "to": TO, "windowSize": "20m"}).to_string();
    s.merge(name, json!({"metadata": {"annotations": {key: asked}}}))
        .await?;
    let done = format!("backfill from {FROM} to {TO} done: 3 windows, 6 records");
    let pulls = poll_until(
        "the backfill's progress in status.flow.lastPulls",
        Deadline::secs(240),
        || async {
            let sp = s.pipelines().get(name).await?;
            let pulls = sp
                .status
                .and_then(|st| st.flow)
                .map(|f| f.last_pulls)
                .unwrap_or_default();
            let finished = pulls
                .iter()
                .any(|p| p.message.as_deref().is_some_and(|m| m.contains(&done)));
            Ok(finished.then_some(pulls))
        },
    )
    .await?;
    println!("status.flow.lastPulls: {pulls:?}");
    poll_until(
        "the range's six users as rows",
        Deadline::secs(60),
        || async { Ok((s.row_count(table).await? == 6).then_some(())) },
    )
    .await?;
    // Exactly the range, in the windows asked for.
    let past: BTreeSet<_> = api
        .asked
        .lock()
        .expect("lock")
        .iter()
        .filter(|(_, until)| *until <= time(TO).expect("time"))
        .copied()
        .collect();
    let expected: BTreeSet<_> = (0..3)
        .map(|i| {
            (
                start + Span::minutes(20 * i),
                start + Span::minutes(20 * (i + 1)),
            )
        })
        .collect();
    assert_eq!(past, expected);
    let session = s.world.cassandra_session().await?;
    let ids: BTreeSet<uuid::Uuid> = session
        .query_unpaged(format!("SELECT id FROM {}.{table}", s.keyspace), &[])
        .await?
        .into_rows_result()?
        .rows::<(uuid::Uuid,)>()?
        .map(|r| r.map(|(id,)| id))
        .collect::<Result<_, _>>()?;
    let in_range: BTreeSet<uuid::Uuid> = api.users[..6]
        .iter()
        .map(|(_, u)| u["login"]["uuid"].as_str().expect("uuid").parse())
        .collect::<Result<_, _>>()?;
    assert_eq!(ids, in_range);

    // A bad annotation is named, and the runner is left as it was.
    let running = ingest_hash(&s, name).await?;
    s.merge(
        name,
        json!({"metadata": {"annotations": {"backfill.millrace.io/nosuch": asked}}}),
    )
    .await?;
    let (_, cond) = s
        .wait_condition(name, "Ready", "False", Some("InvalidSpec"), 60)
        .await?;
    assert!(
        cond.message
            .contains("metadata.annotations[backfill.millrace.io/nosuch]")
            && cond
                .message
                .contains("no httpPull source is named \"nosuch\""),
        "{}",
        cond.message
    );
    s.merge(
        name,
        json!({"metadata": {"annotations": {"backfill.millrace.io/nosuch": null, key: "yesterday"}}}),
    )
    .await?;
    let cond = poll_until(
        "the second bad annotation named",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(condition(&sp, "Ready").filter(|c| c.message.contains("not a backfill")))
        },
    )
    .await?;
    assert!(
        cond.message
            .contains(&format!("metadata.annotations[{key}]")),
        "{}",
        cond.message
    );
    assert_eq!(
        ingest_hash(&s, name).await?,
        running,
        "the runner was changed"
    );

    // Without the annotation the pipeline is Ready again, and the finished
    // range is not pulled again.
    s.merge(name, json!({"metadata": {"annotations": {key: null}}}))
        .await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    assert_eq!(s.row_count(table).await?, 6);

    op.stop().await?;
    s.cleanup().await
}
