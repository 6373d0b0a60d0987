//! Paged, incremental pulls against a local API that pages (next link in
//! the body, `Link` header, cursor, page number, offset) and filters by a
//! time window, while records keep arriving. The ingest runner holds the
//! pull Leases in a real cluster, is killed with SIGKILL in the middle of a
//! window's pages and started again, then killed for good and replaced by a
//! Pod of another name, which takes the Leases over once they expire and
//! resumes where the state on them says: every record of every window is a
//! row (no gap), each source's windows are contiguous, the window cut by the
//! kill is pulled again, and a backfill of a past range lands its records.

mod runner;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use millrace_testsupport::{Deadline, poll_until};
use reqwest::Url;
use runner::{Fixture, Runner};
use serde_json::{Value, json};

const MODES: [&str; 5] = ["nextlink", "linkheader", "cursor", "page", "offset"];
/// Records per page the API serves.
const PAGE: usize = 3;

#[derive(Clone, Debug)]
struct Item {
    id: uuid::Uuid,
    at: DateTime<Utc>,
}

/// One request the API answered.
#[derive(Clone, Debug)]
struct Served {
    mode: &'static str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    /// Index of the page's first record in the window.
    first: usize,
}

#[derive(Default)]
struct TimeApi {
    items: Mutex<BTreeMap<&'static str, Vec<Item>>>,
    served: Mutex<Vec<Served>>,
    /// Set while the API holds the `offset` source's third page (once), so
    /// the runner is surely in the middle of a window when it is killed.
    holding: Mutex<Option<Served>>,
    held: AtomicBool,
}

/// The source whose run is cut by the kill.
const CUT: &str = "offset";

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return DateTime::from_timestamp_millis(text.parse().ok()?);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn record(mode: &str, item: &Item) -> Value {
    json!({
        "id": item.id,
        "at": item.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "source": mode,
    })
}

impl TimeApi {
    fn add(&self, mode: &'static str, at: DateTime<Utc>) {
        self.items
            .lock()
            .expect("lock")
            .entry(mode)
            .or_default()
            .push(Item {
                id: uuid::Uuid::new_v4(),
                at,
            });
    }

    /// Adds one record to each mode stamped now, under the lock a query
    /// takes, so a window's records are all there once its end has passed.
    fn add_now(&self) {
        let mut items = self.items.lock().expect("lock");
        for mode in MODES {
            items.entry(mode).or_default().push(Item {
                id: uuid::Uuid::new_v4(),
                at: Utc::now(),
            });
        }
    }

    fn all_ids(&self) -> HashSet<uuid::Uuid> {
        self.items
            .lock()
            .expect("lock")
            .values()
            .flatten()
            .map(|i| i.id)
            .collect()
    }

    async fn answer(self: Arc<Self>, mode: &'static str, uri: Uri, addr: SocketAddr) -> Response {
        // Slow enough for a window's pages to take a while.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let url = Url::parse(&format!("http://{addr}{uri}")).expect("url");
        let q: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        let (Some(since), Some(until)) = (
            q.get("since").and_then(|s| parse_time(s)),
            q.get("until").and_then(|s| parse_time(s)),
        ) else {
            return (StatusCode::BAD_REQUEST, format!("since and until: {uri}")).into_response();
        };
        let number = |name: &str| q.get(name).and_then(|v| v.parse::<usize>().ok());
        let first = match mode {
            "nextlink" | "linkheader" | "page" => (number("page").unwrap_or(1) - 1) * PAGE,
            "cursor" => q
                .get("after")
                .and_then(|c| c.strip_prefix('c'))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
            _ => number("offset").unwrap_or(0),
        };
        let size = match mode {
            "page" => number("per_page").unwrap_or(PAGE),
            "offset" => number("limit").unwrap_or(PAGE),
            _ => PAGE,
        };
        if mode == CUT && first == 2 * PAGE && !self.held.swap(true, Ordering::SeqCst) {
            *self.holding.lock().expect("lock") = Some(Served {
                mode,
                since,
                until,
                first,
            });
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let (page, more) = {
            let items = self.items.lock().expect("lock");
            let window: Vec<&Item> = items
                .get(mode)
                .into_iter()
                .flatten()
                .filter(|i| i.at >= since && i.at < until)
                .collect();
            let page: Vec<Value> = window
                .iter()
                .skip(first)
                .take(size)
                .map(|i| record(mode, i))
                .collect();
            (page, first + size < window.len())
        };
        self.served.lock().expect("lock").push(Served {
            mode,
            since,
            until,
            first,
        });
        let next_query = |page: usize| {
            let mut next = url.clone();
            next.query_pairs_mut()
                .clear()
                .append_pair("since", &q["since"])
                .append_pair("until", &q["until"])
                .append_pair("page", &page.to_string());
            next
        };
        let this_page = first / PAGE + 1;
        let mut body = json!({"results": page});
        let mut response_headers = Vec::new();
        match mode {
            "nextlink" if more => {
                // Relative, as many APIs write it.
                body["info"] = json!({"next": format!("?{}", next_query(this_page + 1).query().unwrap_or(""))});
            }
            "nextlink" => body["info"] = json!({"next": null}),
            "linkheader" if more => response_headers.push((
                header::LINK,
                format!(
                    "<{}>; rel=\"next\", <{}>; rel=\"first\"",
                    next_query(this_page + 1),
                    next_query(1)
                ),
            )),
            "cursor" => {
                body["meta"] = json!({"next": more.then(|| format!("c{}", first + PAGE))});
            }
            _ => {}
        }
        let mut response = (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (name, value) in response_headers {
            response
                .headers_mut()
                .insert(name, value.parse().expect("header"));
        }
        response
    }

    async fn serve(self: &Arc<Self>) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut app = Router::new();
        for mode in MODES {
            let api = self.clone();
            app = app.route(
                &format!("/{mode}"),
                get(move |uri: Uri| {
                    let api = api.clone();
                    async move { api.answer(mode, uri, addr).await }
                }),
            );
        }
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }
}

fn table() -> Value {
    json!({
        "name": "items",
        "columns": [
            {"name": "id", "type": "uuid", "from": "/id"},
            {"name": "at", "type": "timestamp", "from": "/at"},
            {"name": "source", "type": "text", "from": "/source"},
        ],
        "partitionKey": ["id"],
    })
}

const BACKFILL_FROM: &str = "2026-01-01T00:00:00Z";
const BACKFILL_TO: &str = "2026-01-01T01:00:00Z";

fn sources(addr: SocketAddr, initial_start: &str) -> Value {
    let source = |mode: &str, pagination: Value| {
        json!({
            "name": mode,
            "httpPull": {
                "url": format!("http://{addr}/{mode}?since={{{{window.start}}}}&until={{{{window.end}}}}"),
                "schedule": "1s",
                "recordsPath": "/results",
                "timeoutSeconds": 5,
                "maxRetries": 1,
                "pagination": pagination,
                "window": {"initialStart": initial_start},
            }
        })
    };
    let mut all = vec![
        source("nextlink", json!({"nextLink": "/info/next"})),
        source("linkheader", json!({"linkHeader": true})),
        // Three pages a run: the first window's later pages are pulled by
        // the next runs.
        source(
            "cursor",
            json!({"cursor": {"path": "/meta/next", "param": "after"}, "maxPages": 3}),
        ),
        source(
            "page",
            json!({"page": {"param": "page", "size": PAGE, "sizeParam": "per_page"}}),
        ),
        source(
            "offset",
            json!({"offset": {"param": "offset", "size": PAGE, "sizeParam": "limit"}}),
        ),
    ];
    // Times in milliseconds, and a past hour in six windows.
    all[3]["httpPull"]["window"]["format"] = json!("unixMillis");
    all[3]["httpPull"]["backfill"] =
        json!({"from": BACKFILL_FROM, "to": BACKFILL_TO, "windowSize": "10m"});
    Value::Array(all)
}

/// The pull state each source's Lease holds.
async fn states(leases: &Api<Lease>, pipeline: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for mode in MODES {
        let Some(lease) = leases.get_opt(&format!("{pipeline}-pull-{mode}")).await? else {
            continue;
        };
        let annotations = lease.metadata.annotations.unwrap_or_default();
        let state = annotations
            .get("millrace.io/pull-state")
            .map(|s| serde_json::from_str(s))
            .transpose()?
            .unwrap_or(Value::Null);
        let last = annotations
            .get("millrace.io/last-pull")
            .map(|s| serde_json::from_str(s))
            .transpose()?
            .unwrap_or(Value::Null);
        out.insert(mode.to_owned(), json!({"state": state, "last": last}));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn paged_windows_survive_a_kill_mid_run_without_a_gap_and_a_backfill_lands()
-> anyhow::Result<()> {
    let api = Arc::new(TimeApi::default());
    // The backfill's past records: 25 across the hour, and two outside it.
    let from = parse_time(BACKFILL_FROM).expect("time");
    for i in 0..25 {
        api.add("page", from + chrono::Duration::seconds(i * 143));
    }
    let addr = api.serve().await?;
    let start = Utc::now();
    let initial_start = start.to_rfc3339_opts(SecondsFormat::Millis, true);
    let generating = Arc::new(AtomicBool::new(true));
    // Milliseconds between records. Five a second makes the first windows
    // many pages long; while no Pod holds the Leases (a minute at least)
    // the pace drops, so the backlog the new Pod meets stays one that the
    // cursor source, at three pages a run, works off in a few runs even on
    // a loaded machine.
    let pace = Arc::new(AtomicU64::new(200));
    let generator = {
        let (api, generating, pace) = (api.clone(), generating.clone(), pace.clone());
        tokio::spawn(async move {
            while generating.load(Ordering::SeqCst) {
                api.add_now();
                tokio::time::sleep(Duration::from_millis(pace.load(Ordering::SeqCst))).await;
            }
        })
    };

    let fx = Fixture::new("pull-paging", 3, table()).await?;
    let cluster = fx
        .in_cluster(
            "pull-paging",
            "paging.json",
            fx.pipeline(sources(addr, &initial_start)),
        )
        .await?;
    let (ns, path) = (&cluster.ns, &cluster.path);
    // The same Pod name after the kill, as when a Pod's container is
    // restarted: it takes its Lease back at once.
    let env = cluster.env("ingest-0");
    let mut sink = Runner::start("sink", path, &env, &fx.dir.join("sink.log"))?;
    let mut ingest = Runner::start("ingest", path, &env, &fx.dir.join("ingest-1.log"))?;
    sink.wait_ready(Deadline::secs(60)).await?;
    ingest.wait_ready(Deadline::secs(60)).await?;

    // Kill in the middle of a window's pages: while the API holds the
    // third page of the first window (started early, it has many pages).
    let killed_in: Served = poll_until("a window's third page", Deadline::secs(90), || async {
        Ok(api.holding.lock().expect("lock").clone())
    })
    .await?;
    ingest.kill9()?;
    eprintln!("killed in {killed_in:?}");
    let served_before_kill = api.served.lock().expect("lock").len();

    let mut ingest = Runner::start("ingest", path, &env, &fx.dir.join("ingest-2.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    poll_until("pulls after the restart", Deadline::secs(60), || async {
        Ok((api.served.lock().expect("lock").len() > served_before_kill + 20).then_some(()))
    })
    .await?;

    // Then the Pod is gone for good and a Pod of another name replaces it,
    // as when a node is lost: the new Pod waits until it has seen each
    // Lease unchanged for the Lease's whole duration, takes it, and goes
    // on from the watermark and unfinished window the old Pod left there.
    let leases: Api<Lease> = ns.api();
    pace.store(2000, Ordering::SeqCst);
    ingest.kill9()?;
    let killed_at = Instant::now();
    let served_at_kill = api.served.lock().expect("lock").len();
    let left = states(&leases, &fx.name).await?;
    let mut ingest = Runner::start(
        "ingest",
        path,
        &cluster.env("ingest-1"),
        &fx.dir.join("ingest-3.log"),
    )?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    poll_until(
        "the new Pod to hold every pull Lease",
        Deadline::secs(180),
        || async {
            let mut held = 0;
            for mode in MODES {
                let lease = leases.get(&format!("{}-pull-{mode}", fx.name)).await?;
                let holder = lease.spec.and_then(|s| s.holder_identity);
                held += usize::from(holder.as_deref() == Some("ingest-1"));
            }
            Ok((held == MODES.len()).then_some(()))
        },
    )
    .await?;
    eprintln!(
        "the Pod ingest-1 held every pull Lease {:?} after ingest-0 was killed",
        killed_at.elapsed()
    );
    pace.store(200, Ordering::SeqCst);
    // Each source's windows go on where the old Pod's ended.
    let served_at_takeover = api.served.lock().expect("lock").len();
    poll_until("pulls by the new Pod", Deadline::secs(60), || async {
        Ok((api.served.lock().expect("lock").len() > served_at_takeover + 20).then_some(()))
    })
    .await?;
    // Nobody pulls between the kill and the takeover: what the API served
    // since is the new Pod's, and its first live window of each source
    // starts where the old Pod's state says.
    let served = api.served.lock().expect("lock").clone();
    let start_ms = parse_time(&initial_start).expect("time");
    for mode in MODES {
        let state = &left[mode]["state"];
        let resume_at = state["partial"]["window"]["start"]
            .as_str()
            .or(state["watermark"].as_str())
            .and_then(parse_time)
            .unwrap_or(start_ms);
        let first = served[served_at_kill..]
            .iter()
            .find(|s| s.mode == mode && s.until > start_ms)
            .with_context(|| format!("{mode}: no live window pulled by the new Pod"))?;
        // At the URL's precision: the `page` source writes milliseconds.
        assert_eq!(
            first.since.timestamp_millis(),
            resume_at.timestamp_millis(),
            "{mode}: {state}"
        );
    }
    generating.store(false, Ordering::SeqCst);
    generator.await?;
    let stopped = Utc::now();
    let final_states = poll_until(
        "every source's watermark past the last record, and the backfill done",
        Deadline::secs(120),
        || async {
            let states = states(&leases, &fx.name).await?;
            let behind: Vec<String> = MODES
                .iter()
                .filter(|mode| {
                    states
                        .get(**mode)
                        .and_then(|s| s["state"]["watermark"].as_str())
                        .and_then(parse_time)
                        .is_none_or(|w| w <= stopped)
                })
                .map(|mode| format!("{mode}: {}", states.get(*mode).unwrap_or(&Value::Null)))
                .collect();
            let backfilled = states.get("page").is_some_and(|s| {
                s["state"]["backfill"]["doneUntil"] == BACKFILL_TO
                    && s["state"]["backfill"]["partial"].is_null()
            });
            // What is still behind goes into the timeout's message.
            anyhow::ensure!(
                behind.is_empty() && backfilled,
                "the last record was added at {stopped}; behind it: {behind:?}; backfill done: {backfilled}"
            );
            Ok(Some(states))
        },
    )
    .await?;

    // Every record, live and backfilled, is a row; nothing else is.
    let expected = api.all_ids();
    assert!(expected.len() > 100, "{} records", expected.len());
    fx.wait_for_rows(expected.len(), Deadline::secs(120))
        .await?;
    let rows: HashSet<uuid::Uuid> = fx.ids().await?.into_iter().collect();
    assert_eq!(rows.len(), expected.len());
    assert!(rows == expected, "the rows are not the API's records");

    // Each source's windows: the first starts at initialStart, and each
    // later one where an earlier one ended, so none is skipped.
    let served = api.served.lock().expect("lock").clone();
    for mode in MODES {
        let mut windows: Vec<(DateTime<Utc>, DateTime<Utc>)> = served
            .iter()
            .filter(|s| s.mode == mode && s.until > start_ms)
            .map(|s| (s.since, s.until))
            .collect();
        windows.sort();
        windows.dedup();
        assert_eq!(
            windows.first().map(|w| w.0),
            Some(start_ms),
            "{mode}: {windows:?}"
        );
        let ends: HashSet<_> = windows.iter().map(|w| w.1).collect();
        for (since, until) in &windows[1..] {
            assert!(
                *since == start_ms || ends.contains(since),
                "{mode}: the window {since}..{until} does not start where another ended"
            );
        }
        let last_end = windows.iter().map(|w| w.1).max().expect("windows");
        assert!(
            last_end > stopped,
            "{mode}: the windows reach past the last record"
        );
    }
    // The window the kill cut short was asked for again from its start.
    assert!(
        served.iter().any(|s| s.mode == killed_in.mode
            && s.since == killed_in.since
            && s.first == 0
            && s.until > killed_in.until),
        "the cut window of {} was pulled again",
        killed_in.mode
    );
    // The cursor source stopped at two pages a run and went on next run.
    let cursor_last = &final_states["cursor"]["last"];
    assert_eq!(cursor_last["outcome"], "Succeeded", "{cursor_last}");
    let first_log = std::fs::read_to_string(fx.dir.join("ingest-1.log")).unwrap_or_default();
    assert!(
        (first_log + &ingest.log_text()).contains("pull run stopped at maxPages"),
        "a run stopped at maxPages"
    );
    let page = &final_states["page"];
    assert_eq!(page["state"]["backfill"]["windowsDone"], 6, "{page}");
    assert!(
        page["last"]["message"].as_str().is_some_and(|m| m.contains(
            "backfill from 2026-01-01T00:00:00Z to 2026-01-01T01:00:00Z done: 6 windows"
        )),
        "{page}"
    );
    // Backfill windows asked in milliseconds, ten minutes each.
    let backfill_windows: HashSet<_> = served
        .iter()
        .filter(|s| s.mode == "page" && s.until <= parse_time(BACKFILL_TO).expect("time"))
        .map(|s| (s.since, s.until))
        .collect();
    assert_eq!(backfill_windows.len(), 6, "{backfill_windows:?}");

    drop((ingest, sink));
    cluster.ns.cleanup().await?;
    fx.cleanup().await
}
